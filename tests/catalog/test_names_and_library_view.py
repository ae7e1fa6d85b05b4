"""Every name a user knows an asset by finds it, and the ``library`` view gives one flat row per asset."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from catalog_homes import civitai_version
from sdhub.catalog import Catalog
from sdhub.catalog import schema
from sdhub.catalog.db import connect, write_transaction
from sdhub.config import Home
from sdhub.testing import factory


def _lora(home: Home, name: str, seed: int = 0) -> Path:
    return factory.lora(home.folder("lora") / name, seed=seed)


def test_an_old_file_name_still_finds_the_asset_after_a_rename(tmp_home: Home) -> None:
    old = _lora(tmp_home, "inkStyle_v10.safetensors")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
        old.rename(old.with_name("ink-style-renamed.safetensors"))
        catalog.scan()
        asset = catalog.find("ink-style-renamed")
        assert asset.name == "ink-style-renamed"
        # What the user still types in prompts, <lora:OLDNAME:0.8>, and the old file name itself.
        for ref in ("inkStyle_v10", "inkStyle_v10.safetensors", "<lora:inkStyle_v10:0.8>"):
            assert catalog.find(ref).id == asset.id, ref
        assert [a.id for a in catalog.search("inkStyle_v10")] == [asset.id]
        assert [a.id for a in catalog.search("<lora:inkStyle_v10:0.8>")] == [asset.id]
        assert "inkStyle_v10.safetensors" in asset.aliases


def test_civitai_names_and_the_air_find_the_asset(tmp_home: Home) -> None:
    path = _lora(tmp_home, "local-name.safetensors")
    _lora(tmp_home, "another.safetensors", seed=3)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
        sha = catalog.find("local-name").sha256
        data = civitai_version(sha, model_name="Aesthetic Poses", version_id=1050496, model_id=706978)
        data["name"] = "V.3 Flux"
        data["files"][0]["name"] = "aeshteticv5.safetensors"
        data["air"] = "urn:air:flux1:lora:civitai:706978@1050496"
        catalog.set_remote(sha, "civitai", data)
        for words in ("Aesthetic Poses", "aeshteticv5", "V.3 Flux", "urn:air:flux1:lora:civitai:706978@1050496"):
            assert [a.sha256 for a in catalog.search(words)] == [sha], words
        # Any spelling of the AIR names the version: the ecosystem and type are optional, urn: too.
        for ref in ("urn:air:flux1:lora:civitai:706978@1050496", "civitai:706978@1050496",
                    "urn:air:sdxl:lora:civitai:706978@1050496", "aeshteticv5.safetensors", "urn:air:flux1:lora:civitai:706978"):
            assert catalog.find(ref).sha256 == sha, ref
        assert catalog.search("urn:air:flux1:lora:civitai:706978@999") == []
    assert path.is_file()


def _schema_6_catalog(home: Home, lora: Path) -> Path:
    """A catalog as sdhub wrote it at schema 6 (its six migrations applied), holding one LoRA with its
    hashes and a Civitai record."""
    db = connect(home.database_path)
    with write_transaction(db):
        for migration in schema.MIGRATIONS[:6]:
            migration(db)
        db.execute("INSERT INTO settings (key, value) VALUES ('schema_version', '6')")
        sha = "ab" * 32
        db.execute("INSERT INTO assets (sha256, kind, size, name, added_at, updated_at, base_model, base_label, "
                   "format, dtype) VALUES (?, 'lora', 10, 'Ink Style', 't', 't', 'sd1', 'SD 1.5', 'safetensors', 'F16')",
                   [sha])
        db.execute("INSERT INTO files (asset_id, path, size, mtime_ns, inode, device, missing, added_at) "
                   "VALUES (1, ?, 10, 1, 1, 1, 0, 't')", [str(lora)])
        for scheme, value in (("sha256", sha), ("autov2", sha[:10]), ("autov3", sha[:12]), ("crc32", "29bef2f8")):
            db.execute("INSERT INTO hashes (asset_id, scheme, value) VALUES (1, ?, ?)", [scheme, value])
        db.execute("INSERT INTO remote (asset_id, source, model_id, version_id, name, json, fetched_at) "
                   "VALUES (1, 'civitai', '4201', '130072', 'Ink Style', ?, 't')",
                   [__import__("json").dumps(civitai_version(sha))])
    db.close()
    return home.database_path


def test_a_schema_6_catalog_gains_aliases_and_the_library_view(tmp_home: Home) -> None:
    lora = tmp_home.folder("lora") / "ink_v1.safetensors"
    path = _schema_6_catalog(tmp_home, lora)
    with Catalog(tmp_home) as catalog:
        assert schema.schema_version(catalog.db) == len(schema.MIGRATIONS)
        asset = catalog.find("inkstyle.safetensors")  # Civitai's file name, from the stored record
        assert catalog.find("ink_v1").id == asset.id
        assert [a.id for a in catalog.search("urn:air:sd1:lora:civitai:4201@130072")] == [asset.id]
        assert [a.id for a in catalog.search("ink_v1")] == [asset.id]
    connection = sqlite3.connect(path)  # what a sqlite3 user sees
    connection.row_factory = sqlite3.Row
    rows = [dict(row) for row in connection.execute("SELECT * FROM library")]
    connection.close()
    assert rows == [{
        "id": 1, "name": "Ink Style", "kind": "lora", "path": str(lora), "copies": 1, "base_family": "sd1",
        "base_label": "SD 1.5", "architecture": None, "format": "safetensors", "dtype": "F16", "size": 10,
        "sha256": "ab" * 32, "autov2": "ab" * 5, "autov3": "ab" * 6, "autov1": None, "legacy_model_hash": None,
        "crc32": "29bef2f8", "blake3": None, "civitai_model_id": "4201", "civitai_version_id": "130072",
        "civitai_name": "Ink Style", "civitai_url": None, "newer_civitai_version_id": None, "defect": None,
        "status": None, "added_at": "t"}]


def test_the_library_view_has_one_row_per_asset_of_a_scanned_home(tmp_home: Home) -> None:
    first = _lora(tmp_home, "a.safetensors")
    (tmp_home.folder("lora") / "copy").mkdir()
    copy = tmp_home.folder("lora") / "copy" / "a-again.safetensors"
    copy.write_bytes(first.read_bytes())
    _lora(tmp_home, "b.safetensors", seed=2)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
        hashes = {a.name: dict(catalog.db.execute("SELECT scheme, value FROM hashes WHERE asset_id = ?", [a.id])
                               .fetchall()) for a in catalog.list_assets()}
    connection = sqlite3.connect(tmp_home.database_path)
    rows = connection.execute("SELECT name, copies, dtype, sha256, autov2, autov3, crc32 FROM library "
                              "ORDER BY name").fetchall()
    connection.close()
    assert len(rows) == 2
    for name, copies, dtype, sha256, autov2, autov3, crc32 in rows:
        assert dtype == "F32"  # the safetensors spelling docs/catalog.md documents
        assert (sha256, autov2, autov3, crc32) == (hashes[name]["sha256"], hashes[name]["autov2"],
                                                   hashes[name]["autov3"], hashes[name]["crc32"])
    assert [r[1] for r in rows] == [2, 1]
