"""Sidecars of A1111, Civitai Helper, StabilityMatrix and LoRA Manager: read in, exported, never clobbered.

Each peer's file is written here with the fields that project writes (learnt from its published
source): A1111's "Edit metadata" ``.json`` and ``.txt``, StabilityMatrix's ConnectedModelInfo
(PascalCase, ``Source`` as a number), LoRA Manager's ``.metadata.json`` (snake_case record, usage
tips as a JSON string)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from packaging.version import Version

from catalog_homes import civitai_version
from sdhub.catalog import Catalog

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32

A1111 = {"description": "My ink LoRA", "sd version": "SD1", "activation text": "inkstyle, bold lines",
         "preferred weight": 0.7, "negative text": "blurry", "notes": "works best at 0.7"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stability_matrix(sha256: str) -> dict:
    return {"ModelId": 4201, "ModelName": "Ink Style", "ModelDescription": "<p>Bold ink</p>", "Nsfw": False,
            "Tags": ["style"], "ModelType": "LORA", "VersionId": 130072, "VersionName": "v1.0",
            "VersionDescription": None, "BaseModel": "SD 1.5",
            "FileMetadata": {"fp": "fp16", "size": "pruned", "format": "SafeTensor"},
            "ImportedAt": "2024-05-01T10:00:00+00:00", "Hashes": {"SHA256": sha256.upper(), "CRC32": None, "BLAKE3": None},
            "TrainedWords": ["inkstyle"], "Stats": None, "UserTitle": "My Ink", "ThumbnailImageUrl": None,
            "InferenceDefaults": None, "Source": 0}


def _lora_manager(path: Path, sha256: str) -> dict:
    return {"file_name": path.stem, "model_name": "Ink Style", "file_path": str(path), "size": path.stat().st_size,
            "modified": 1714557600.0, "sha256": sha256, "base_model": "SD 1.5",
            "preview_url": str(path.with_name(path.stem + ".webp")), "preview_nsfw_level": 1,
            "notes": "LoRA Manager note", "from_civitai": True, "civitai": {}, "tags": ["ink"],
            "modelDescription": "", "civitai_deleted": False, "favorite": True, "exclude": False,
            "db_checked": False, "metadata_source": None, "last_checked_at": 0,
            "usage_tips": json.dumps({"strength": 0.65, "clipStrength": 1.0}), "trainedWords": []}


def _peer_home(stocked) -> tuple[Path, str]:
    lora = stocked.paths["lora"]
    sha256 = _sha256(lora)
    base = lora.with_suffix("")
    Path(f"{base}.json").write_text(json.dumps(A1111, indent=4))
    Path(f"{base}.txt").write_text("a description A1111 reads from a text file\n")
    Path(f"{base}.cm-info.json").write_text(json.dumps(_stability_matrix(sha256)))
    Path(f"{base}.metadata.json").write_text(json.dumps(_lora_manager(lora, sha256), indent=2))
    Path(f"{base}.webp").write_bytes(b"RIFF\0\0\0\0WEBPVP8 ")
    return lora, sha256


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("inkstyle.")}


def test_every_peer_format_is_read_and_the_users_fields_are_theirs(catalog: Catalog, stocked) -> None:
    lora, sha256 = _peer_home(stocked)
    catalog.scan()
    details = catalog.show(sha256)
    asset = details.asset
    assert asset.name == "My Ink"  # StabilityMatrix's user title
    assert asset.description == "My ink LoRA"  # A1111's .json wins over its .txt
    assert asset.trigger_words == ["inkstyle", "bold lines"]
    assert asset.preferred_weight == 0.7  # A1111's, over LoRA Manager's 0.65
    assert asset.negative_text == "blurry" and asset.sd_version == "SD1"
    assert asset.notes == "works best at 0.7"
    assert set(asset.user_fields) >= {"description", "trigger_words", "preferred_weight", "negative_text", "notes",
                                      "sd_version", "name"}
    assert "ink" in asset.tags  # LoRA Manager's tags fill in
    civitai = [r for r in details.remote if r["source"] == "civitai"]
    assert (civitai[0]["model_id"], civitai[0]["version_id"]) == ("4201", "130072")  # from StabilityMatrix
    previews = [p for p in details.previews if p["path"]]
    assert previews[0]["path"].endswith("inkstyle.webp") and previews[0]["nsfw_level"] == 1


def test_lora_manager_and_text_descriptions_fill_in_without_a1111(catalog: Catalog, stocked) -> None:
    lora = stocked.paths["lora"]
    sha256 = _sha256(lora)
    lora.with_name("inkstyle.metadata.json").write_text(json.dumps(_lora_manager(lora, sha256)))
    lora.with_name("inkstyle.description.txt").write_text("from the description file")
    lora.with_name("inkstyle.preview.gif").write_bytes(b"GIF89a")
    catalog.scan()
    asset = catalog.get(sha256)
    assert asset.notes == "LoRA Manager note" and asset.preferred_weight == 0.65
    assert asset.description == "from the description file"
    assert [p["path"] for p in catalog.show(sha256).previews] == [str(lora.with_name("inkstyle.preview.gif"))]


def test_export_changes_nothing_the_user_set(catalog: Catalog, stocked) -> None:
    lora, sha256 = _peer_home(stocked)
    catalog.scan()
    # Civitai gives another base and other words: derived values, which must lose.
    record = civitai_version(sha256)
    record["baseModel"] = "Other"
    record["trainedWords"] = ["something else"]
    catalog.set_remote(sha256, "civitai", record)
    before = _contents(lora.parent)
    catalog.export_sidecars()
    after = _contents(lora.parent)
    a1111 = json.loads(after["inkstyle.json"])
    assert {k: a1111[k] for k in A1111} == A1111  # "sd version" stays SD1, activation text the user's
    assert after["inkstyle.json"] == before["inkstyle.json"]  # every key set already: not rewritten
    matrix = json.loads(after["inkstyle.cm-info.json"])
    assert matrix == {**_stability_matrix(sha256), **{k: v for k, v in matrix.items()
                                                      if _stability_matrix(sha256).get(k) is None}}
    assert matrix["UserTitle"] == "My Ink" and matrix["TrainedWords"] == ["inkstyle"]
    for name in ("inkstyle.metadata.json", "inkstyle.txt", "inkstyle.webp"):
        assert after[name] == before[name]  # read-only formats are never written
    assert "inkstyle.preview.png" not in after  # the model has a preview already
    # Nothing changed since: the next export writes nothing, not even the same bytes again.
    stamps = {name: os.stat(lora.with_name(name)).st_mtime_ns for name in after}
    assert catalog.export_sidecars().written == []
    assert {name: os.stat(lora.with_name(name)).st_mtime_ns for name in after} == stamps


def test_the_reported_sd_version_loss_does_not_happen(catalog: Catalog, stocked) -> None:
    lora = stocked.paths["lora"]
    sha256 = _sha256(lora)
    catalog.scan()
    catalog.set_remote(sha256, "civitai", {**civitai_version(sha256), "baseModel": "Other"})
    user = lora.with_name("inkstyle.json")
    user.write_text(json.dumps({"description": "", "sd version": "SD1", "activation text": "", "preferred weight": 0,
                                "negative text": "", "notes": ""}))
    catalog.scan()
    catalog.export_sidecars()
    written = json.loads(user.read_text())
    assert written["sd version"] == "SD1"
    assert written["activation text"] == "inkstyle, sketch lines"  # an empty key is filled


def test_dry_run_shows_the_diff_and_writes_nothing(catalog: Catalog, stocked, run_cli) -> None:
    lora, sha256 = _peer_home(stocked)
    Path(f"{lora.with_suffix('')}.json").write_text(json.dumps({"notes": "mine", "description": ""}))
    catalog.scan()
    catalog.set_remote(sha256, "civitai", civitai_version(sha256))
    before = _contents(lora.parent)
    result = run_cli("--home", stocked.home.root, "export-sidecars", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert _contents(lora.parent) == before
    assert "+++ " in result.stdout and "inkstyle.civitai.info (exported)" in result.stdout
    assert '+    "activation text": "inkstyle",' in result.stdout  # an empty key filled (StabilityMatrix's word)
    assert '+    "VersionDescription": "<p>Bold <b>ink</b> outlines.</p>",' in result.stdout  # only filled keys show
    assert '+    "UserTitle"' not in result.stdout
    assert '"notes": "mine"' not in "".join(l for l in result.stdout.splitlines(True) if l.startswith(("+", "-")))
    data = json.loads(run_cli("--home", stocked.home.root, "export-sidecars", "--dry-run", "--json").stdout)
    assert data["dry_run"] and data["written"] == [] and {Path(c["path"]).name for c in data["changes"]} >= {
        "inkstyle.civitai.info", "inkstyle.json"}


def _civitai_helper_needs_refetch(path: Path, compat: str) -> bool:
    """Civitai Helper's "refetch old" check, reimplemented from its documented behaviour: a file whose
    ``extensions.sd_civitai_helper.version`` is missing, or older than the oldest format it accepts,
    is fetched again and overwritten."""
    if not path.is_file():
        return True
    data = json.loads(path.read_text())
    try:
        version = data["extensions"]["sd_civitai_helper"]["version"]
    except KeyError:
        return True
    if not version:
        return True
    return Version(compat) > Version(version)


def test_civitai_helper_takes_our_civitai_info_as_current(catalog: Catalog, stocked, tmp_path: Path) -> None:
    lora = stocked.paths["lora"]
    sha256 = _sha256(lora)
    catalog.scan()
    catalog.set_remote(sha256, "civitai", civitai_version(sha256))
    catalog.export_sidecars()
    info = lora.with_name("inkstyle.civitai.info")
    assert not _civitai_helper_needs_refetch(info, "1.7.2")
    assert json.loads(info.read_text())["id"] == 130072
    # The check can fail: the file as sdhub wrote it before (the bare Civitai answer) is stale to it.
    bare = tmp_path / "bare.civitai.info"
    bare.write_text(json.dumps(civitai_version(sha256)))
    assert _civitai_helper_needs_refetch(bare, "1.7.2")
    # A record read from an old Civitai Helper file is marked current only once, then left alone.
    assert catalog.export_sidecars().written == []


def test_a_user_field_emptied_in_a1111_is_emptied_in_the_catalog(catalog: Catalog, stocked) -> None:
    lora = stocked.paths["lora"]
    user = lora.with_name("inkstyle.json")
    user.write_text(json.dumps({"notes": "old note"}))
    catalog.scan()
    assert catalog.find("inkstyle").notes == "old note"
    user.write_text(json.dumps({"notes": ""}))
    os.utime(user, ns=(1, 2_000_000_000_000_000_000))
    catalog.scan()
    asset = catalog.find("inkstyle")
    assert asset.notes is None and "notes" not in asset.user_fields
