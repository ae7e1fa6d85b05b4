"""The calls other parts make on the catalog: remote data, previews, test results, tags, removal, and
files added with the hashes their source already computed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from catalog_homes import civitai_version
from sdhub.catalog import Catalog
from sdhub.errors import NotFoundError, UsageError, VerificationError
from sdhub.progress import RecordingProgress


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_set_remote_records_civitai_and_hugging_face(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sha = _sha(stocked.paths["sd1"])
    catalog.set_remote(sha, "civitai", civitai_version(sha, model_name="Dreamy", words=()))
    catalog.set_remote(sha, "huggingface", {"repo": "someone/dreamy", "revision": "abc123",
                                            "filename": "dreamy.safetensors"})
    details = catalog.show(sha)
    by_source = {r["source"]: r for r in details.remote}
    assert by_source["huggingface"]["url"] == "https://huggingface.co/someone/dreamy/blob/abc123/dreamy.safetensors"
    assert by_source["civitai"]["model_id"] == "4201"
    assert details.asset.name == "Dreamy"
    assert details.previews[0]["url"] == "https://image.civitai.com/x/preview.jpeg"
    with pytest.raises(NotFoundError):
        catalog.set_remote("0" * 64, "civitai", civitai_version("0" * 64))
    with pytest.raises(UsageError):
        catalog.set_remote(sha, "myspace", {})


def test_civitai_model_answer_picks_the_version_holding_the_file(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sha = _sha(stocked.paths["lora"])
    other = civitai_version("f" * 64, version_id=1)
    mine = civitai_version(sha, version_id=2)
    model = {"id": 4201, "name": "Ink Style", "tags": ["ink", "style"], "nsfw": False,
             "modelVersions": [other, mine]}
    asset = catalog.set_remote(sha, "civitai", model)
    assert catalog.show(sha).remote[0]["version_id"] == "2"
    assert asset.tags == ["ink", "style"] and asset.nsfw is False


def test_record_test_sets_the_status(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sha = _sha(stocked.paths["sd1"])
    catalog.record_test(sha, {"kind": "asuka", "verdict": "black image", "seconds": 3.5,
                              "image_path": "/tmp/x.png", "mean": 0.0})
    asset = catalog.record_test(sha, {"kind": "asuka", "verdict": "fine", "seconds": 3.1})
    assert asset.status == "fine"
    tests = catalog.show(sha).tests
    assert [t["verdict"] for t in tests] == ["fine", "black image"]
    assert tests[1]["details"] == {"mean": 0.0} and tests[1]["image_path"] == "/tmp/x.png"
    with pytest.raises(UsageError):
        catalog.record_test(sha, {"kind": "asuka"})


def test_tags_add_and_remove(catalog: Catalog) -> None:
    catalog.scan()
    assert catalog.tag("inkstyle", ["ink", "Fav", "ink"]).tags == ["ink", "Fav"]
    assert catalog.tag("inkstyle", ["-fav", "bw"]).tags == ["ink", "bw"]


def test_remove_forgets_and_optionally_deletes(catalog: Catalog, stocked) -> None:
    catalog.scan()
    report = catalog.remove("badhands")
    assert report.files_deleted == [] and stocked.paths["embedding"].exists()
    with pytest.raises(NotFoundError):
        catalog.find("badhands")
    catalog.scan()
    report = catalog.remove("badhands", files=True)
    assert report.files_deleted == [str(stocked.paths["embedding"])]
    assert not stocked.paths["embedding"].exists()
    catalog.scan()
    with pytest.raises(NotFoundError):
        catalog.find("badhands")


def test_roots_refuse_a_missing_folder(catalog: Catalog, tmp_path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        catalog.add_root(tmp_path / "nope")
    with pytest.raises(NotFoundError):
        catalog.remove_root(tmp_path)


def test_local_copy_finds_the_content_or_a_file_made_from_it(catalog: Catalog, stocked, tmp_path) -> None:
    catalog.scan()
    sha = _sha(stocked.paths["sd1-ckpt"])
    assert catalog.local_copy(sha) == stocked.paths["sd1-ckpt"]
    converted = stocked.paths["sd1"]  # stands in for the .safetensors made from the pickle
    catalog.record_lineage(_sha(converted), sha, "convert")
    stocked.paths["sd1-ckpt"].unlink()
    catalog.scan()
    assert catalog.local_copy(sha) == converted
    converted.write_bytes(b"edited since the scan")  # a stale row is no proof the bytes are there
    assert catalog.local_copy(sha) is None
    assert catalog.local_copy("0" * 64) is None


def test_without_remote_lists_what_no_source_describes_yet(catalog: Catalog, stocked) -> None:
    catalog.scan()
    lora = _sha(stocked.paths["lora"])
    assert len(catalog.without_remote("civitai")) == len(stocked.paths)
    catalog.set_remote(lora, "civitai", civitai_version(lora))
    catalog.set_remote(_sha(stocked.paths["vae"]), "huggingface", {"repo": "someone/vae"})
    missing = [a.sha256 for a in catalog.without_remote("civitai")]
    assert lora not in missing and len(missing) == len(stocked.paths) - 1
    assert missing == sorted(missing, key=lambda sha: catalog.get(sha).id)
    with pytest.raises(UsageError):
        catalog.without_remote("myspace")


def test_add_preview_remembers_a_local_image_and_its_url(catalog: Catalog, stocked, tmp_path) -> None:
    catalog.scan()
    sha = _sha(stocked.paths["lora"])
    image = tmp_path / "preview.png"
    image.write_bytes(b"png")
    catalog.add_preview(sha, source="civitai", path=image, url="https://image.civitai.com/x/1.jpeg")
    catalog.add_preview(sha, source="civitai", path=image, url="https://image.civitai.com/x/1.jpeg")  # once only
    previews = catalog.show(sha).previews
    assert [(p["path"], p["url"], p["source"]) for p in previews] == [
        (str(image), "https://image.civitai.com/x/1.jpeg", "civitai")]
    with pytest.raises(UsageError):
        catalog.add_preview(sha, source="civitai")
    with pytest.raises(NotFoundError):
        catalog.add_preview("0" * 64, source="civitai", path=image)


def _big_lora(path) -> Path:
    """A LoRA over 4 MiB: big enough that reading it for hashes shows a progress bar."""
    import torch
    from safetensors.torch import save_file

    save_file({"lora_unet_down.lora_down.weight": torch.arange(1_200_000, dtype=torch.float32).reshape(1200, 1000),
               "lora_unet_down.lora_up.weight": torch.ones(1000, 4)}, str(path))
    return path


def test_add_file_stores_hashes_computed_on_the_way_in_without_reading(tmp_path) -> None:
    from sdhub.config import init_home
    from sdhub.ops.hashing import hash_file

    homes = [init_home(tmp_path / name, "sdhub") for name in ("fetched", "scanned")]
    fetched = _big_lora(homes[0].folder("lora") / "big.safetensors")
    _big_lora(homes[1].folder("lora") / "big.safetensors")
    hashes = hash_file(fetched)  # what a copy from the Hugging Face cache computes while reading it
    progress = RecordingProgress()
    with Catalog(homes[0]) as catalog:
        sha = catalog.add_file(fetched, progress, hashes=hashes).sha256
        from_known = catalog.show(sha).to_dict()
    assert [t for t in progress.tasks if t.unit == "bytes"] == []
    with Catalog(homes[1]) as catalog:
        catalog.scan()
        from_scan = catalog.show(sha).to_dict()
    assert set(from_scan["hashes"]) >= {"sha256", "autov2", "legacy_model_hash", "autov1", "addnet_hash", "autov3",
                                        "crc32", "crc32_zlib", "blake3"}
    for key in ("sha256", "kind", "architecture", "format", "dtype", "size", "name", "problems", "hashes", "inspect"):
        assert from_known[key] == (from_scan[key] if key != "inspect" else {**from_scan[key], "path": str(fetched)})


def test_add_file_checks_the_sha256_it_was_verified_with(catalog: Catalog, stocked) -> None:
    from sdhub.ops.hashing import hash_file

    path = stocked.paths["lora"]
    with pytest.raises(VerificationError, match="it changed since"):
        catalog.add_file(path, expected_sha256="ab" * 32)
    assert catalog.list_assets() == []
    progress = RecordingProgress()
    big = _big_lora(stocked.home.folder("lora") / "big.safetensors")
    asset = catalog.add_file(big, progress, expected_sha256=_sha(big).upper())
    assert asset.sha256 == _sha(big)
    # Read once, for the schemes a download does not compute; every one is stored.
    assert [t.completed for t in progress.tasks if t.unit == "bytes"] == [big.stat().st_size]
    every = {scheme: value for scheme, value in hash_file(big).to_dict().items() if isinstance(value, str)
             and scheme != "path"}
    assert catalog.show(asset.sha256).hashes == every
