"""The catalog's tables, created and upgraded by numbered migrations.

``settings.schema_version`` records how many migrations a database has had; ``migrate`` applies
the missing ones in order, each inside one write transaction, so two processes opening a fresh
catalog at the same moment cannot both apply it. docs/catalog.md documents every column.
"""

from __future__ import annotations

import os
from typing import Callable

import sqlite_utils

from sdhub.catalog.analysis import FOLDER_FORMAT, model_stem
from sdhub.catalog.db import write_transaction
from sdhub.errors import HomeError
from sdhub.models.kinds import OTHER

SCHEMA_VERSION_KEY = "schema_version"

#: Columns of ``assets`` indexed for full-text search (``assets_fts``, kept in step by triggers).
SEARCH_COLUMNS = ("name", "description", "tags", "trigger_words", "notes", "base_model", "base_label", "aliases")
#: What the first schema indexed; migration 5 added the base model's family and label, migration 7 the aliases.
_FIRST_SEARCH_COLUMNS = ("name", "description", "tags", "trigger_words", "notes")
_FIFTH_SEARCH_COLUMNS = (*_FIRST_SEARCH_COLUMNS, "base_model", "base_label")


def _initial_tables(db: sqlite_utils.Database) -> None:
    db["assets"].create(
        {
            "id": int, "sha256": str, "kind": str, "architecture": str, "base_model": str,
            "format": str, "dtype": str, "size": int, "name": str, "name_source": str,
            "description": str, "trigger_words": str, "tags": str, "nsfw": int, "notes": str,
            "preferred_weight": float, "status": str, "status_at": str, "problems": str,
            "inspect": str, "source_sha256": str, "added_at": str, "updated_at": str,
        },
        pk="id",
        not_null=["sha256", "kind", "size", "name", "trigger_words", "tags", "added_at", "updated_at"],
        # Catalogs made before migration 5 keep "unknown" as this default; no writer relies on it.
        defaults={"kind": OTHER, "name_source": "file", "trigger_words": "[]", "tags": "[]",
                  "problems": "[]"},
    )
    db["assets"].create_index(["sha256"], unique=True)
    db["assets"].create_index(["kind"])
    db["assets"].create_index(["source_sha256"])

    db["files"].create(
        {
            "id": int, "asset_id": int, "path": str, "size": int, "mtime_ns": int, "inode": int,
            "device": int, "folder_kind": str, "missing": int, "seen_at": str, "added_at": str,
            "sidecar_sig": str,
        },
        pk="id",
        foreign_keys=[("asset_id", "assets", "id")],
        not_null=["asset_id", "path", "size", "mtime_ns", "inode", "device", "missing", "added_at"],
        defaults={"missing": 0, "sidecar_sig": ""},
    )
    db["files"].create_index(["path"], unique=True)
    db["files"].create_index(["asset_id"])
    db["files"].create_index(["device", "inode"])

    db["hashes"].create(
        {"asset_id": int, "scheme": str, "value": str},
        pk=("asset_id", "scheme"),
        foreign_keys=[("asset_id", "assets", "id")],
        not_null=["value"],
    )
    # Exact and prefix lookups (``value >= ? AND value < ?``) both use this index.
    db["hashes"].create_index(["value"])

    db["remote"].create(
        {
            "id": int, "asset_id": int, "source": str, "model_id": str, "version_id": str,
            "repo": str, "revision": str, "url": str, "name": str, "json": str,
            "inherited_from": str, "fetched_at": str,
        },
        pk="id",
        foreign_keys=[("asset_id", "assets", "id")],
        not_null=["asset_id", "source", "json", "fetched_at"],
    )
    db["remote"].create_index(["asset_id", "source"], unique=True)
    db["remote"].create_index(["source", "version_id"])

    db["previews"].create(
        {"id": int, "asset_id": int, "path": str, "url": str, "source": str, "nsfw_level": int,
         "width": int, "height": int, "added_at": str},
        pk="id",
        foreign_keys=[("asset_id", "assets", "id")],
        not_null=["asset_id", "source", "added_at"],
    )
    db["previews"].create_index(["asset_id"])

    db["tests"].create(
        {"id": int, "asset_id": int, "kind": str, "verdict": str, "details": str,
         "image_path": str, "seconds": float, "at": str},
        pk="id",
        foreign_keys=[("asset_id", "assets", "id")],
        not_null=["asset_id", "verdict", "details", "at"],
        defaults={"details": "{}"},
    )
    db["tests"].create_index(["asset_id", "at"])

    db["roots"].create({"id": int, "path": str, "kind": str, "added_at": str}, pk="id",
                       not_null=["path", "added_at"])
    db["roots"].create_index(["path"], unique=True)

    db["lineage"].create(
        {"child_sha256": str, "parent_sha256": str, "relation": str, "recorded_at": str},
        pk=("child_sha256", "parent_sha256"),
        not_null=["recorded_at"],
    )
    db["lineage"].create_index(["parent_sha256"])

    db["assets"].enable_fts(_FIRST_SEARCH_COLUMNS, create_triggers=True, tokenize="unicode61 remove_diacritics 2")


def _folder_files(db: sqlite_utils.Database) -> None:
    """The files inside each catalogued diffusers folder, so a rescan reads only the ones that changed."""
    # Written by hand for ON DELETE CASCADE: forgetting a folder's ``files`` row forgets its contents.
    db.execute(
        "CREATE TABLE folder_files ("
        " file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,"
        " path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,"
        " PRIMARY KEY (file_id, path))")


def _defects(db: sqlite_utils.Database) -> None:
    """``assets.defect``: files that cannot be used at all (broken, unsafe), shown as such."""
    db.execute("ALTER TABLE assets ADD COLUMN defect TEXT")
    # Before this column a file inspection could not read was stored with an empty report.
    db.execute("UPDATE assets SET defect = 'broken' WHERE (inspect IS NULL OR inspect = '{}') "
               "AND format IS NOT ?", [FOLDER_FORMAT])


def _own_names_for_derived_files(db: sqlite_utils.Database) -> None:
    """Derived files no longer take their origin's name: give them back their own file's name."""
    rows = db.execute(
        "SELECT a.id, a.format, (SELECT f.path FROM files f WHERE f.asset_id = a.id "
        "ORDER BY f.missing, f.id LIMIT 1) FROM assets a WHERE a.name_source = 'lineage'").fetchall()
    for asset_id, fmt, path in rows:
        if path:
            name = os.path.basename(path) if fmt == FOLDER_FORMAT else model_stem(path)
            db.execute("UPDATE assets SET name = ?, name_source = 'file' WHERE id = ?", [name, asset_id])


def _base_family_and_label(db: sqlite_utils.Database) -> None:
    """``assets.base_model`` keeps only the family (sd1, sdxl...); what Civitai or the file's metadata
    calls the model ("SD 1.5", "Pony") moves to ``base_label``; the kind "unknown" becomes "other"."""
    from sdhub.catalog.store import base_fields, split_old_base

    _drop_search_index(db)  # rebuilt once at the end, not row by row by its triggers
    columns = db["assets"].columns_dict
    for column in ("base_model_from", "base_label", "base_label_from"):
        if column not in columns:  # the migration may be re-run by hand on a half-copied file
            db.execute(f"ALTER TABLE assets ADD COLUMN {column} TEXT")
    rows = db.execute(
        "SELECT a.id, a.sha256, a.base_model, a.inspect, r.json, a.base_model_from, a.base_label, a.base_label_from "
        "FROM assets a LEFT JOIN remote r ON r.asset_id = a.id AND r.source = 'civitai'").fetchall()
    for asset_id, sha256, old_base, inspect, civitai, *done in rows:
        detected, label, label_from = split_old_base(old_base, inspect, civitai, sha256, tuple(done))
        fields = base_fields(detected, label, label_from)
        db.execute("UPDATE assets SET base_model = ?, base_model_from = ?, base_label = ?, base_label_from = ? "
                   "WHERE id = ?", [*fields.values(), asset_id])
    db.execute("UPDATE assets SET kind = ? WHERE kind = 'unknown'", [OTHER])
    db.execute("CREATE INDEX IF NOT EXISTS idx_assets_base_model ON assets (base_model)")
    _index_for_search(db, _FIFTH_SEARCH_COLUMNS)


def _drop_search_index(db: sqlite_utils.Database) -> None:
    for trigger in ("assets_ai", "assets_ad", "assets_au"):
        db.execute(f'DROP TRIGGER IF EXISTS "{trigger}"')
    db.execute('DROP TABLE IF EXISTS "assets_fts"')


def _index_for_search(db: sqlite_utils.Database, columns: tuple[str, ...]) -> None:
    """(Re)create ``assets_fts`` over ``columns`` with its triggers, and fill it.

    Statement by statement, inside the migration's transaction (sqlite-utils' ``enable_fts`` runs a
    script, which commits the transaction first).
    """
    _drop_search_index(db)
    names = ", ".join(f'"{column}"' for column in columns)
    old = ", ".join(f'old."{column}"' for column in columns)
    new = ", ".join(f'new."{column}"' for column in columns)
    db.execute(f"CREATE VIRTUAL TABLE \"assets_fts\" USING FTS5 ({names}, "
               "tokenize='unicode61 remove_diacritics 2', content=\"assets\")")
    db.execute(f'CREATE TRIGGER "assets_ai" AFTER INSERT ON "assets" BEGIN '
               f'INSERT INTO "assets_fts" (rowid, {names}) VALUES (new.rowid, {new}); END')
    db.execute(f'CREATE TRIGGER "assets_ad" AFTER DELETE ON "assets" BEGIN '
               f'INSERT INTO "assets_fts" ("assets_fts", rowid, {names}) VALUES (\'delete\', old.rowid, {old}); END')
    db.execute(f'CREATE TRIGGER "assets_au" AFTER UPDATE ON "assets" BEGIN '
               f'INSERT INTO "assets_fts" ("assets_fts", rowid, {names}) VALUES (\'delete\', old.rowid, {old}); '
               f'INSERT INTO "assets_fts" (rowid, {names}) VALUES (new.rowid, {new}); END')
    db.execute("INSERT INTO \"assets_fts\" (\"assets_fts\") VALUES ('rebuild')")


def _user_fields(db: sqlite_utils.Database) -> None:
    """A1111's ``negative text`` and ``sd version`` get columns, and ``user_fields`` lists the fields the
    user set (in a peer's sidecar or in sdhub), which nothing sdhub derives may replace."""
    columns = db["assets"].columns_dict
    for column, definition in (("negative_text", "TEXT"), ("sd_version", "TEXT"),
                               ("user_fields", "TEXT NOT NULL DEFAULT '[]'")):
        if column not in columns:
            db.execute(f"ALTER TABLE assets ADD COLUMN {column} {definition}")


def _aliases_updates_and_library_view(db: sqlite_utils.Database) -> None:
    """``assets.aliases``: every name a user may know an asset by (its file names old and new, Civitai's
    model, version and file names, its AIR), searchable; ``assets.newer_version``: the newer Civitai
    version ``sdhub outdated`` last found; the ``library`` view: one flat row per asset."""
    from sdhub.catalog.aliases import civitai_aliases, file_aliases, merge_aliases

    _drop_search_index(db)  # rebuilt once at the end, not row by row by its triggers
    columns = db["assets"].columns_dict
    for column, definition in (("aliases", "TEXT NOT NULL DEFAULT ''"), ("newer_version", "TEXT")):
        if column not in columns:
            db.execute(f"ALTER TABLE assets ADD COLUMN {column} {definition}")
    names: dict[int, list[str]] = {}
    for asset_id, path in db.execute("SELECT asset_id, path FROM files ORDER BY id").fetchall():
        names.setdefault(asset_id, []).extend(file_aliases(path))
    for asset_id, sha256, data in db.execute("SELECT r.asset_id, a.sha256, r.json FROM remote r JOIN assets a "
                                             "ON a.id = r.asset_id WHERE r.source = 'civitai'").fetchall():
        names.setdefault(asset_id, []).extend(civitai_aliases(data, sha256))
    for asset_id, found in names.items():
        db.execute("UPDATE assets SET aliases = ? WHERE id = ?", [merge_aliases("", found), asset_id])
    db.execute("DROP VIEW IF EXISTS library")
    db.execute(LIBRARY_VIEW)
    _index_for_search(db, SEARCH_COLUMNS)


#: One flat row per asset for ``sqlite3`` and datasette users (docs/catalog.md, "The library view").
LIBRARY_VIEW = """CREATE VIEW library AS
SELECT a.id, a.name, a.kind,
  (SELECT f.path FROM files f WHERE f.asset_id = a.id ORDER BY f.missing, f.id LIMIT 1) AS path,
  (SELECT count(*) FROM files f WHERE f.asset_id = a.id AND f.missing = 0) AS copies,
  a.base_model AS base_family, a.base_label, a.architecture, a.format, a.dtype, a.size,
  a.sha256,
  (SELECT h.value FROM hashes h WHERE h.asset_id = a.id AND h.scheme = 'autov2') AS autov2,
  (SELECT h.value FROM hashes h WHERE h.asset_id = a.id AND h.scheme = 'autov3') AS autov3,
  (SELECT h.value FROM hashes h WHERE h.asset_id = a.id AND h.scheme = 'autov1') AS autov1,
  (SELECT h.value FROM hashes h WHERE h.asset_id = a.id AND h.scheme = 'legacy_model_hash') AS legacy_model_hash,
  (SELECT h.value FROM hashes h WHERE h.asset_id = a.id AND h.scheme = 'crc32') AS crc32,
  (SELECT h.value FROM hashes h WHERE h.asset_id = a.id AND h.scheme = 'blake3') AS blake3,
  r.model_id AS civitai_model_id, r.version_id AS civitai_version_id, r.name AS civitai_name, r.url AS civitai_url,
  json_extract(a.newer_version, '$.version_id') AS newer_civitai_version_id,
  a.defect, a.status, a.added_at
FROM assets a LEFT JOIN remote r ON r.asset_id = a.id AND r.source = 'civitai'"""


def _field_times(db: sqlite_utils.Database) -> None:
    """``assets.field_times``: when each field a remote library syncs (tags, notes, user fields) last changed,
    as a JSON object {field: ISO time}, so the newest change wins per field across machines (docs/remote.md)."""
    if "field_times" not in db["assets"].columns_dict:
        db.execute("ALTER TABLE assets ADD COLUMN field_times TEXT NOT NULL DEFAULT '{}'")


def _generation_defaults(db: sqlite_utils.Database) -> None:
    """A checkpoint's generation defaults (``sdhub set``): ``preferred_vae``, A1111's ``vae`` user-metadata key
    (a VAE file name, or "None" for the baked-in one), and ``generation_defaults``, a JSON object of what
    A1111 keeps nowhere per model (``clip_skip``, ``sampler``, ``schedule``, ``cfg_scale``)."""
    columns = db["assets"].columns_dict
    for column, definition in (("preferred_vae", "TEXT"), ("generation_defaults", "TEXT NOT NULL DEFAULT '{}'")):
        if column not in columns:
            db.execute(f"ALTER TABLE assets ADD COLUMN {column} {definition}")


#: Applied in order; the database's schema_version is the number applied so far. Append only.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _initial_tables,
    _folder_files,
    _defects,
    _own_names_for_derived_files,
    _base_family_and_label,
    _user_fields,
    _aliases_updates_and_library_view,
    _field_times,
    _generation_defaults,
]


def schema_version(db: sqlite_utils.Database) -> int:
    """How many migrations this database has had (0 for a fresh one)."""
    row = db.execute("SELECT value FROM settings WHERE key = ?", [SCHEMA_VERSION_KEY]).fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the catalog schema up to date; returns the version it is now at."""
    target = len(MIGRATIONS)
    if schema_version(db) == target:
        return target
    with write_transaction(db):
        # Re-read under the write lock: another process may have migrated meanwhile.
        current = schema_version(db)
        if current > target:
            raise HomeError(
                f"the catalog {db.conn.execute('PRAGMA database_list').fetchone()[2]} was written by a newer "
                f"sdhub (schema {current}, this one knows {target}); upgrade sdhub")
        for migration in MIGRATIONS[current:]:
            migration(db)
        db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [SCHEMA_VERSION_KEY, str(target)])
    return target
