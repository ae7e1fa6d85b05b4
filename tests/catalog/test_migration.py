"""A catalog written by an older sdhub is upgraded when it is opened: in one transaction, once.

The old catalog is a real SQLite file made with the statements sdhub wrote up to schema 4 (commit
78e2860: ``sdhub/catalog/schema.py``, tables as sqlite-utils created them), holding rows as that
version's ``store.upsert_asset`` and ``put_remote`` wrote them: one ``base_model`` column mixing the
family the tensors proved ("sdxl") with Civitai's label where they proved none ("SD 1.5", "Pony"),
and the kind "unknown".
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from catalog_homes import civitai_version
from sdhub.catalog import Catalog
from sdhub.catalog import schema
from sdhub.catalog.db import connect, write_transaction
from sdhub.config import Home

#: The catalog schema as sdhub 78e2860 created it (``sqlite_master`` of a fresh catalog, in order).
SCHEMA_4 = (
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)",
    'CREATE TABLE "assets" (\n   "id" INTEGER PRIMARY KEY,\n   "sha256" TEXT NOT NULL,\n'
    '   "kind" TEXT NOT NULL DEFAULT \'unknown\',\n   "architecture" TEXT,\n   "base_model" TEXT,\n'
    '   "format" TEXT,\n   "dtype" TEXT,\n   "size" INTEGER NOT NULL,\n   "name" TEXT NOT NULL,\n'
    '   "name_source" TEXT DEFAULT \'file\',\n   "description" TEXT,\n'
    '   "trigger_words" TEXT NOT NULL DEFAULT \'[]\',\n   "tags" TEXT NOT NULL DEFAULT \'[]\',\n'
    '   "nsfw" INTEGER,\n   "notes" TEXT,\n   "preferred_weight" REAL,\n   "status" TEXT,\n   "status_at" TEXT,\n'
    '   "problems" TEXT DEFAULT \'[]\',\n   "inspect" TEXT,\n   "source_sha256" TEXT,\n'
    '   "added_at" TEXT NOT NULL,\n   "updated_at" TEXT NOT NULL\n, defect TEXT)',
    'CREATE UNIQUE INDEX "idx_assets_sha256"\n    ON "assets" ("sha256")',
    'CREATE INDEX "idx_assets_kind"\n    ON "assets" ("kind")',
    'CREATE INDEX "idx_assets_source_sha256"\n    ON "assets" ("source_sha256")',
    'CREATE TABLE "files" (\n   "id" INTEGER PRIMARY KEY,\n   "asset_id" INTEGER NOT NULL REFERENCES "assets"("id"),\n'
    '   "path" TEXT NOT NULL,\n   "size" INTEGER NOT NULL,\n   "mtime_ns" INTEGER NOT NULL,\n'
    '   "inode" INTEGER NOT NULL,\n   "device" INTEGER NOT NULL,\n   "folder_kind" TEXT,\n'
    '   "missing" INTEGER NOT NULL DEFAULT 0,\n   "seen_at" TEXT,\n   "added_at" TEXT NOT NULL,\n'
    '   "sidecar_sig" TEXT DEFAULT \'\'\n)',
    'CREATE UNIQUE INDEX "idx_files_path"\n    ON "files" ("path")',
    'CREATE INDEX "idx_files_asset_id"\n    ON "files" ("asset_id")',
    'CREATE INDEX "idx_files_device_inode"\n    ON "files" ("device", "inode")',
    'CREATE TABLE "hashes" (\n   "asset_id" INTEGER REFERENCES "assets"("id"),\n   "scheme" TEXT,\n'
    '   "value" TEXT NOT NULL,\n   PRIMARY KEY ("asset_id", "scheme")\n)',
    'CREATE INDEX "idx_hashes_value"\n    ON "hashes" ("value")',
    'CREATE TABLE "remote" (\n   "id" INTEGER PRIMARY KEY,\n   "asset_id" INTEGER NOT NULL REFERENCES "assets"("id"),\n'
    '   "source" TEXT NOT NULL,\n   "model_id" TEXT,\n   "version_id" TEXT,\n   "repo" TEXT,\n   "revision" TEXT,\n'
    '   "url" TEXT,\n   "name" TEXT,\n   "json" TEXT NOT NULL,\n   "inherited_from" TEXT,\n'
    '   "fetched_at" TEXT NOT NULL\n)',
    'CREATE UNIQUE INDEX "idx_remote_asset_id_source"\n    ON "remote" ("asset_id", "source")',
    'CREATE INDEX "idx_remote_source_version_id"\n    ON "remote" ("source", "version_id")',
    'CREATE TABLE "previews" (\n   "id" INTEGER PRIMARY KEY,\n   "asset_id" INTEGER NOT NULL REFERENCES "assets"("id"),\n'
    '   "path" TEXT,\n   "url" TEXT,\n   "source" TEXT NOT NULL,\n   "nsfw_level" INTEGER,\n   "width" INTEGER,\n'
    '   "height" INTEGER,\n   "added_at" TEXT NOT NULL\n)',
    'CREATE INDEX "idx_previews_asset_id"\n    ON "previews" ("asset_id")',
    'CREATE TABLE "tests" (\n   "id" INTEGER PRIMARY KEY,\n   "asset_id" INTEGER NOT NULL REFERENCES "assets"("id"),\n'
    '   "kind" TEXT,\n   "verdict" TEXT NOT NULL,\n   "details" TEXT NOT NULL DEFAULT \'{}\',\n'
    '   "image_path" TEXT,\n   "seconds" REAL,\n   "at" TEXT NOT NULL\n)',
    'CREATE INDEX "idx_tests_asset_id_at"\n    ON "tests" ("asset_id", "at")',
    'CREATE TABLE "roots" (\n   "id" INTEGER PRIMARY KEY,\n   "path" TEXT NOT NULL,\n   "kind" TEXT,\n'
    '   "added_at" TEXT NOT NULL\n)',
    'CREATE UNIQUE INDEX "idx_roots_path"\n    ON "roots" ("path")',
    'CREATE TABLE "lineage" (\n   "child_sha256" TEXT,\n   "parent_sha256" TEXT,\n   "relation" TEXT,\n'
    '   "recorded_at" TEXT NOT NULL,\n   PRIMARY KEY ("child_sha256", "parent_sha256")\n)',
    'CREATE INDEX "idx_lineage_parent_sha256"\n    ON "lineage" ("parent_sha256")',
    'CREATE VIRTUAL TABLE "assets_fts" USING FTS5 (\n    "name", "description", "tags", "trigger_words", "notes",\n'
    "    tokenize='unicode61 remove_diacritics 2',\n    content=\"assets\"\n)",
    'CREATE TRIGGER "assets_ai" AFTER INSERT ON "assets" BEGIN\n  INSERT INTO "assets_fts" (rowid, "name", '
    '"description", "tags", "trigger_words", "notes") VALUES (new.rowid, new."name", new."description", '
    'new."tags", new."trigger_words", new."notes");\nEND',
    'CREATE TRIGGER "assets_ad" AFTER DELETE ON "assets" BEGIN\n  INSERT INTO "assets_fts" ("assets_fts", rowid, '
    '"name", "description", "tags", "trigger_words", "notes") VALUES(\'delete\', old.rowid, old."name", '
    'old."description", old."tags", old."trigger_words", old."notes");\nEND',
    'CREATE TRIGGER "assets_au" AFTER UPDATE ON "assets" BEGIN\n  INSERT INTO "assets_fts" ("assets_fts", rowid, '
    '"name", "description", "tags", "trigger_words", "notes") VALUES(\'delete\', old.rowid, old."name", '
    'old."description", old."tags", old."trigger_words", old."notes");\n  INSERT INTO "assets_fts" (rowid, '
    '"name", "description", "tags", "trigger_words", "notes") VALUES (new.rowid, new."name", new."description", '
    'new."tags", new."trigger_words", new."notes");\nEND',
    "CREATE TABLE folder_files ( file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, path TEXT NOT NULL,"
    " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (file_id, path))",
)

THEN = "2026-06-01T10:00:00.000+00:00"

#: (name, kind, architecture, old base_model, the detection's report, Civitai's baseModel or None).
OLD_ROWS = (
    # The tensors proved sdxl; Civitai's "Pony" only went into the remote record.
    ("pony-style", "lora", None, "sdxl",
     {"kind": "lora", "base_model": "sdxl", "metadata": {"ss_base_model_version": "sdxl_base_v1-0"}}, "Pony"),
    # The tensors proved nothing: Civitai's label filled the column.
    ("ink-sd1", "lora", None, "SD 1.5", {"kind": "lora", "base_model": None, "metadata": {}}, "SD 1.5"),
    ("illustrious-mix", "checkpoint", "sdxl", "sdxl",
     {"kind": "checkpoint", "architecture": "sdxl", "base_model": "sdxl", "metadata": {}}, "Illustrious"),
    # A derived copy that took its origin's label (the old inherit copied base_model as it was).
    ("pony-style-fp16", "embedding", None, "Pony", {"kind": "embedding", "base_model": None}, None),
    ("mystery", "unknown", None, None, {"kind": "unknown", "base_model": None, "metadata": {}}, None),
    ("tinymix", "checkpoint", "sd1", "sd1",
     {"kind": "checkpoint", "architecture": "sd1", "base_model": "sd1", "metadata": {}}, None),
)


def _sha(name: str) -> str:
    return (name.encode().hex() * 64)[:64]


def write_schema_4_catalog(home: Home) -> Path:
    """A catalog file as sdhub wrote it at schema 4, with the rows above."""
    home.database_path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(home.database_path)
    with connection:
        for statement in SCHEMA_4:
            connection.execute(statement)
        connection.execute("INSERT INTO settings (key, value) VALUES ('schema_version', '4')")
        for number, (name, kind, architecture, base, report, label) in enumerate(OLD_ROWS, 1):
            sha = _sha(name)
            connection.execute(
                "INSERT INTO assets (sha256, name, name_source, added_at, kind, architecture, base_model, format, "
                "dtype, size, problems, defect, inspect, updated_at) VALUES (?, ?, 'file', ?, ?, ?, ?, "
                "'safetensors', 'float16', ?, '[]', NULL, ?, ?)",
                [sha, name, THEN, kind, architecture, base, 1000 + number, json.dumps(report), THEN])
            folder = home.folder(kind if kind != "unknown" else "checkpoint")
            connection.execute(
                "INSERT INTO files (asset_id, path, size, mtime_ns, inode, device, folder_kind, missing, seen_at, "
                "added_at, sidecar_sig) VALUES (?, ?, ?, ?, ?, 1, ?, 0, ?, ?, '')",
                [number, str(folder / f"{name}.safetensors"), 1000 + number, number, 500 + number, kind, THEN, THEN])
            connection.execute("INSERT INTO hashes (asset_id, scheme, value) VALUES (?, 'sha256', ?)", [number, sha])
            if label:
                connection.execute(
                    "INSERT INTO remote (asset_id, source, model_id, version_id, url, name, json, fetched_at) "
                    "VALUES (?, 'civitai', ?, ?, NULL, ?, ?, ?)",
                    [number, str(4200 + number), str(130000 + number), name,
                     json.dumps(civitai_version(sha, model_name=name, version_id=130000 + number, base_model=label)),
                     THEN])
    connection.close()
    return home.database_path


def _rows(path: Path) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT name, kind, base_model, base_model_from, base_label, base_label_from "
                                  "FROM assets ORDER BY id").fetchall()
    finally:
        connection.close()


def _columns(path: Path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        return {row[1] for row in connection.execute("PRAGMA table_info(assets)")}
    finally:
        connection.close()


MIGRATED = [
    ("pony-style", "lora", "sdxl", "detection", "Pony", "civitai"),
    ("ink-sd1", "lora", "sd1", "label", "SD 1.5", "civitai"),
    ("illustrious-mix", "checkpoint", "sdxl", "detection", "Illustrious", "civitai"),
    ("pony-style-fp16", "embedding", "sdxl", "label", "Pony", "civitai"),
    ("mystery", "other", None, None, None, None),
    ("tinymix", "checkpoint", "sd1", "detection", None, None),
]


def test_an_old_catalog_splits_family_and_label_when_opened(tmp_home: Home) -> None:
    path = write_schema_4_catalog(tmp_home)
    with Catalog(tmp_home) as catalog:
        assert schema.schema_version(catalog.db) == len(schema.MIGRATIONS) == 9
        names = lambda assets: sorted(a.name for a in assets)  # noqa: E731
        assert names(catalog.list_assets(base="sdxl")) == ["illustrious-mix", "pony-style", "pony-style-fp16"]
        assert names(catalog.list_assets(base="pony")) == ["pony-style", "pony-style-fp16"]
        assert names(catalog.list_assets(base="sd1")) == names(catalog.list_assets(base="SD 1.5")) == [
            "ink-sd1", "tinymix"]
        assert names(catalog.list_assets(kind="other")) == ["mystery"]
        # The search index was rebuilt over the new columns: labels are found, and names as before.
        assert names(catalog.search("pony")) == ["pony-style", "pony-style-fp16"]
        assert names(catalog.search("tinymix")) == ["tinymix"]
    assert _rows(path) == MIGRATED


def test_the_upgrade_runs_once_and_running_it_again_changes_nothing(tmp_home: Home) -> None:
    path = write_schema_4_catalog(tmp_home)
    Catalog(tmp_home).close()
    first = _rows(path)
    Catalog(tmp_home).close()
    assert _rows(path) == first == MIGRATED
    db = connect(path)
    with write_transaction(db):
        schema.MIGRATIONS[4](db)  # by hand, on the upgraded file: the same result
    db.close()
    assert _rows(path) == MIGRATED


def test_an_upgrade_that_fails_leaves_the_old_catalog_as_it_was(tmp_home: Home,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_schema_4_catalog(tmp_home)

    def a_later_step_fails(db) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, a_later_step_fails])
    with pytest.raises(RuntimeError, match="disk full"):
        Catalog(tmp_home)
    assert "base_label" not in _columns(path)
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT value FROM settings WHERE key = 'schema_version'").fetchone() == ("4",)
        assert connection.execute("SELECT base_model, kind FROM assets WHERE name = 'ink-sd1'").fetchone() == (
            "SD 1.5", "lora")
        assert connection.execute("SELECT count(*) FROM assets WHERE kind = 'unknown'").fetchone() == (1,)
        hits = connection.execute("SELECT a.name FROM assets_fts JOIN assets a ON a.id = assets_fts.rowid "
                                  "WHERE assets_fts MATCH 'ink*'").fetchall()
        assert hits == [("ink-sd1",)]
    finally:
        connection.close()
    monkeypatch.undo()
    Catalog(tmp_home).close()
    assert _rows(path) == MIGRATED


def test_a_catalog_from_a_newer_sdhub_is_refused_in_one_line(tmp_home: Home, run_cli) -> None:
    path = write_schema_4_catalog(tmp_home)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("UPDATE settings SET value = '99' WHERE key = 'schema_version'")
    connection.close()
    result = run_cli("--home", tmp_home.root, "ls")
    assert result.exit_code == 2
    assert "written by a newer sdhub (schema 99, this one knows 9); upgrade sdhub" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "base_label" not in _columns(path)


def test_ls_on_an_upgraded_catalog_shows_both_vocabularies(tmp_home: Home, run_cli) -> None:
    write_schema_4_catalog(tmp_home)
    result = run_cli("--home", tmp_home.root, "ls", "--base", "SDXL", "--json")
    assert result.exit_code == 0, result.stderr
    listed = {item["name"]: (item["base_model"], item["base_label"]) for item in json.loads(result.stdout)}
    assert listed == {"illustrious-mix": ("sdxl", "Illustrious"), "pony-style": ("sdxl", "Pony"),
                      "pony-style-fp16": ("sdxl", "Pony")}
    table = run_cli("--home", tmp_home.root, "ls", "--base", "pony", "--format", "tsv")
    assert table.exit_code == 0, table.stderr
    rows = [line.split("\t") for line in table.stdout.splitlines()]
    assert [(row[1], row[4]) for row in rows[1:]] == [("pony-style", "sdxl (Pony)"), ("pony-style-fp16", "sdxl (Pony)")]
