"""Sidecars users already have (Civitai Helper, A1111 "Edit metadata") come in; export writes them out."""

from __future__ import annotations

import hashlib
import json
import os

from catalog_homes import civitai_version
from sdhub.catalog import Catalog

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_civitai_helper_and_a1111_sidecars_are_read(catalog: Catalog, stocked) -> None:
    lora = stocked.paths["lora"]
    base = lora.with_suffix("")
    base.with_name(base.name + ".civitai.info").write_text(json.dumps(civitai_version(_sha256(lora)), indent=4))
    base.with_name(base.name + ".json").write_text(json.dumps({
        "description": "Bold ink outlines, my notes", "sd version": "SD1", "activation text": "inkstyle, bold lines",
        "preferred weight": 0.8, "notes": "use at 0.8", "negative text": ""}))
    base.with_name(base.name + ".preview.png").write_bytes(PNG)
    report = catalog.scan()
    assert report.sidecars_read == 1
    details = catalog.show("inkstyle")
    asset = details.asset
    assert asset.name == "Ink Style"  # Civitai's name for it
    assert asset.trigger_words == ["inkstyle", "bold lines"]  # the user's A1111 edit wins
    assert asset.description == "Bold ink outlines, my notes"
    assert asset.preferred_weight == 0.8 and asset.notes == "use at 0.8"
    assert asset.base_model  # filled from inspect or Civitai
    civitai = [r for r in details.remote if r["source"] == "civitai"][0]
    assert (civitai["model_id"], civitai["version_id"]) == ("4201", "130072")
    assert civitai["url"] == "https://civitai.com/models/4201?modelVersionId=130072"
    assert civitai["json"]["air"] == "urn:air:sd1:lora:civitai:4201@130072"
    assert str(base) + ".preview.png" in [p["path"] for p in details.previews]
    assert [a.id for a in catalog.search("Ink Style")] == [asset.id]


def test_an_edited_sidecar_is_read_again_without_reading_the_model(catalog: Catalog, stocked) -> None:
    lora = stocked.paths["lora"]
    user = lora.with_name("inkstyle.json")
    user.write_text(json.dumps({"activation text": "first"}))
    catalog.scan()
    user.write_text(json.dumps({"activation text": "second, third"}))
    os.utime(user, ns=(1, 2_000_000_000_000_000_000))
    report = catalog.scan()
    assert report.files_read == 0 and report.sidecars_read == 1
    assert catalog.find("inkstyle").trigger_words == ["second", "third"]


def test_civitai_empty_info_and_broken_json_do_not_stop_a_scan(catalog: Catalog, stocked) -> None:
    lora = stocked.paths["lora"]
    lora.with_name("inkstyle.civitai.info").write_text("{}")
    lora.with_name("inkstyle.json").write_text("{not json")
    report = catalog.scan()
    assert report.errors == []
    details = catalog.show("inkstyle")
    assert details.remote == []
    assert any("inkstyle.json" in problem for problem in details.asset.problems)


def test_export_writes_sidecars_atomically_and_keeps_foreign_keys(catalog: Catalog, stocked) -> None:
    catalog.scan()
    lora = stocked.paths["lora"]
    sha256 = _sha256(lora)
    catalog.set_remote(sha256, "civitai", civitai_version(sha256))
    existing = lora.with_name("inkstyle.json")
    existing.write_text(json.dumps({"modelId": 4201, "sha256": sha256, "notes": ""}))
    report = catalog.export_sidecars()
    info = lora.with_name("inkstyle.civitai.info")
    assert str(info) in report.written and str(existing) in report.written
    assert json.loads(info.read_text())["modelId"] == 4201
    user = json.loads(existing.read_text())
    assert user["activation text"] == "inkstyle, sketch lines"
    assert user["sd version"] == "SD1"
    assert user["modelId"] == 4201 and user["sha256"] == sha256  # another tool's keys survive
    assert user["description"] == "About this version (v1.0): Bold ink outlines."  # the version's notes, labelled
    leftovers = [n for n in os.listdir(lora.parent) if n.startswith(".sdhub-tmp")]
    assert leftovers == []
    # Nothing changed since: a second export writes nothing.
    assert catalog.export_sidecars().written == []


def test_exported_sidecars_round_trip_into_a_fresh_catalog(tmp_path, stocked) -> None:
    with stocked.catalog() as catalog:
        catalog.scan()
        sha256 = _sha256(stocked.paths["lora"])
        catalog.set_remote(sha256, "civitai", civitai_version(sha256, model_name="Round Trip"))
        catalog.export_sidecars()
    stocked.home.database_path.unlink()
    for suffix in ("-wal", "-shm"):
        (stocked.home.database_path.parent / (stocked.home.database_path.name + suffix)).unlink(missing_ok=True)
    with stocked.catalog() as fresh:
        fresh.scan()
        asset = fresh.get(sha256)
        assert asset.name == "Round Trip" and asset.trigger_words == ["inkstyle", "sketch lines"]


def test_a_deleted_preview_is_forgotten(catalog: Catalog, stocked) -> None:
    preview = stocked.paths["lora"].with_name("inkstyle.preview.png")
    preview.write_bytes(PNG)
    catalog.scan()
    assert [p["path"] for p in catalog.show("inkstyle").previews] == [str(preview)]
    preview.unlink()
    catalog.scan()
    assert catalog.show("inkstyle").previews == []


def test_a_renamed_model_takes_its_sidecars_along(catalog: Catalog, stocked) -> None:
    lora = stocked.paths["lora"]
    base = lora.with_suffix("")
    base.with_name(base.name + ".civitai.info").write_text(json.dumps(civitai_version(_sha256(lora)), indent=4))
    base.with_name(base.name + ".preview.png").write_bytes(PNG)
    catalog.scan()
    renamed = lora.with_name("inkstyle-v2.safetensors")
    os.rename(lora, renamed)
    report = catalog.scan()
    assert report.files_moved == 1
    names = sorted(p.name for p in lora.parent.iterdir() if p.name.startswith("inkstyle"))
    assert names == ["inkstyle-v2.civitai.info", "inkstyle-v2.preview.png", "inkstyle-v2.safetensors"]
    details = catalog.show("inkstyle-v2")
    assert [p["path"] for p in details.previews if (p["path"] or "").endswith(".preview.png")] == [
        str(renamed.with_suffix("")) + ".preview.png"]
    assert catalog.scan().sidecars_read == 0  # nothing changed since
