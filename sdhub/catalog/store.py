"""Writing to the catalog tables: assets, files, folder contents, hashes, remote data, sidecars, lineage.

These functions do not open transactions; callers wrap a group of them in
``db.write_transaction`` so each group lands whole or not at all.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import sqlite_utils

from sdhub.catalog.aliases import civitai_aliases, file_aliases, merge_aliases
from sdhub.catalog.analysis import FOLDER_FORMAT, FileAnalysis, FileIdentity, FolderMember, model_stem
from sdhub.catalog.kind_choice import settle_kind
from sdhub.catalog.records import json_dict, json_list
from sdhub.catalog.remote import RemoteFields
from sdhub.catalog.sidecars import SidecarData
from sdhub.models.base_labels import label_family, metadata_label
from sdhub.models.kinds import OTHER, family_of

#: Who set an asset's display name; a source may replace a name set by one ranked at or below it.
#: A derived file (convert, prune, cast) keeps its own file's name: lineage links it to its origin
#: but never renames it ("lineage" names are only found in catalogs written before that rule).
NAME_SOURCES = ("file", "lineage", "sidecar", "civitai", "huggingface", "user")
_NAME_RANK = {"file": 0, "lineage": 1, "sidecar": 2, "huggingface": 2, "civitai": 3, "user": 4}


def now() -> str:
    """The current UTC time as the catalog stores it (ISO 8601, sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def asset_row(db: sqlite_utils.Database, *, asset_id: int | None = None,
              sha256: str | None = None) -> dict[str, Any] | None:
    column, value = ("id", asset_id) if asset_id is not None else ("sha256", sha256)
    rows = list(db.query(f"SELECT * FROM assets WHERE {column} = ?", [value]))
    return rows[0] if rows else None


def base_fields(detected: str | None, label: str | None, label_from: str | None) -> dict[str, str | None]:
    """The asset's base columns: the family its tensors prove (``detected``) or, when they prove none,
    the family its label names (marked as coming from the label); the label kept as given."""
    family = family_of(detected)
    source = "detection" if family else None
    if family is None:
        family = label_family(label)
        source = "label" if family else None
    label = label.strip() if label and label.strip() else None
    return {"base_model": family, "base_model_from": source, "base_label": label,
            "base_label_from": label_from if label else None}


def kind_of(report_kind: str | None) -> str:
    """The kind stored for a detection's kind: "other" for none, and for the old name "unknown"."""
    return OTHER if not report_kind or report_kind == "unknown" else report_kind


def split_old_base(old_base: str | None, inspect: str | None, civitai_json: str | None, sha256: str,
                   done: tuple[str | None, str | None, str | None] = (None, None, None),
                   ) -> tuple[str | None, str | None, str | None]:
    """(detected family, label, label source) of an asset written by sdhub before migration 5, whose one
    ``base_model`` column held either the detected family ("sd1") or, failing that, Civitai's "SD 1.5".
    ``done``: its ``base_model_from``, ``base_label``, ``base_label_from`` where the split was made already."""
    from sdhub.catalog.remote import civitai_fields

    report = json_dict(inspect)
    old_from, label, label_from = done
    proved = None if old_from == "label" else family_of(old_base)
    detected = family_of(report.get("base_model")) or proved or family_of(report.get("architecture"))
    if label:
        return detected, label, label_from
    if old_base and family_of(old_base) is None:
        label, label_from = old_base, "civitai"  # only a Civitai record (or a copy of one) wrote a label there
    elif civitai_json:
        try:
            label = civitai_fields(json.loads(civitai_json), sha256).base_label
        except Exception:  # a record of a shape we cannot read costs the label, not the migration
            label = None
        label_from = "civitai" if label else None
    if label is None and (label := metadata_label(report.get("metadata"))):
        label_from = "metadata"
    return detected, label, label_from


def _report_base(report: dict[str, Any], row: dict[str, Any] | None) -> dict[str, str | None]:
    """The base columns from a fresh inspection; a label from Civitai already recorded is kept."""
    detected = report.get("base_model")
    label, label_from = metadata_label(report.get("metadata")), "metadata"
    if detected and family_of(detected) is None:  # a detector naming a label, not a family
        label, label_from = str(detected), "detection"
    # An architecture proves its family even where the detection left the family out.
    detected = family_of(detected) or family_of(report.get("architecture"))
    if row is not None and row.get("base_label") and row.get("base_label_from") == "civitai":
        label, label_from = row["base_label"], "civitai"
    return base_fields(detected, label, label_from if label else None)


def upsert_asset(db: sqlite_utils.Database, analysis: FileAnalysis) -> tuple[int, bool]:
    """The asset for this content, created or refreshed from the analysis; (id, created)."""
    report = analysis.inspect
    existing = asset_row(db, sha256=analysis.sha256)
    # A kind the user chose (or a source gave where the tensors could not tell) outlives a rescan.
    kind, report = settle_kind(kind_of(report.get("kind")), report, existing["inspect"] if existing else None)
    fields = {
        # The folder a file sits in is where the user put it, not evidence of what it is: what the
        # tensors do not show is "other" (with the detector's evidence in the report).
        "kind": kind,
        "architecture": report.get("architecture"),
        **_report_base(report, existing),
        "format": report.get("format") or (FOLDER_FORMAT if analysis.is_folder else None),
        "dtype": _text(report.get("dtype")),
        "size": analysis.identity.size,
        "problems": _dumps(analysis.problems),
        "defect": analysis.defect,
        "inspect": _dumps(report),
        "updated_at": now(),
    }
    if existing:
        assignments = ", ".join(f"{column} = ?" for column in fields)
        db.execute(f"UPDATE assets SET {assignments} WHERE id = ?", [*fields.values(), existing["id"]])
        asset_id, created = existing["id"], False
    else:
        name = file_name_of(analysis.path, FOLDER_FORMAT if analysis.is_folder else None)
        row = {"sha256": analysis.sha256, "name": name, "name_source": "file",
               "added_at": fields["updated_at"], **fields}
        columns = ", ".join(row)
        cursor = db.execute(f"INSERT INTO assets ({columns}) VALUES ({', '.join('?' * len(row))})",
                            list(row.values()))
        asset_id, created = cursor.lastrowid, True
    put_hashes(db, asset_id, analysis.hashes)
    source = analysis.source_sha256
    if source and source != analysis.sha256:
        link_lineage(db, analysis.sha256, source, analysis.relation)
    return asset_id, created


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict)):
        return _dumps(value)
    return str(value)


def put_hashes(db: sqlite_utils.Database, asset_id: int, hashes: dict[str, str]) -> None:
    db.conn.executemany(
        "INSERT INTO hashes (asset_id, scheme, value) VALUES (?, ?, ?) "
        "ON CONFLICT(asset_id, scheme) DO UPDATE SET value = excluded.value",
        [(asset_id, scheme, value.lower()) for scheme, value in hashes.items()],
    )


def put_file(db: sqlite_utils.Database, asset_id: int, path: str, identity: FileIdentity,
             folder_kind: str | None, sidecar_sig: str = "") -> None:
    """Record that ``path`` holds the asset's content now (a new path, or a changed file)."""
    stamp = now()
    db.execute(
        "INSERT INTO files (asset_id, path, size, mtime_ns, inode, device, folder_kind, missing, seen_at, "
        "added_at, sidecar_sig) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) "
        "ON CONFLICT(path) DO UPDATE SET asset_id = excluded.asset_id, size = excluded.size, "
        "mtime_ns = excluded.mtime_ns, inode = excluded.inode, device = excluded.device, "
        "folder_kind = excluded.folder_kind, missing = 0, seen_at = excluded.seen_at, "
        "sidecar_sig = excluded.sidecar_sig",
        [asset_id, path, identity.size, identity.mtime_ns, identity.inode, identity.device, folder_kind,
         stamp, stamp, sidecar_sig],
    )
    add_aliases(db, asset_id, file_aliases(path))


def row_sha256(db: sqlite_utils.Database, asset_id: int) -> str | None:
    row = db.execute("SELECT sha256 FROM assets WHERE id = ?", [asset_id]).fetchone()
    return row[0] if row else None


def add_aliases(db: sqlite_utils.Database, asset_id: int, names: list[str]) -> None:
    """Remember more names the asset is known by (``assets.aliases``), each once; old ones stay."""
    row = db.execute("SELECT aliases FROM assets WHERE id = ?", [asset_id]).fetchone()
    if row is None:
        return
    merged = merge_aliases(row[0], names)
    if merged != (row[0] or ""):
        db.execute("UPDATE assets SET aliases = ? WHERE id = ?", [merged, asset_id])


def move_file(db: sqlite_utils.Database, file_id: int, asset_id: int, path: str, identity: FileIdentity,
              folder_kind: str | None, sidecar_sig: str = "") -> str:
    """Give an existing file row (whose old path is gone) its new path: the same content moved.

    If another process removed or moved that row meanwhile, ``path`` gets a row of its own
    instead. Returns "moved" or "added". An asset named after the file's old name takes the new one.
    """
    old_path = db.execute("SELECT path FROM files WHERE id = ?", [file_id]).fetchone()
    db.execute("DELETE FROM files WHERE path = ? AND id != ?", [path, file_id])
    cursor = db.execute(
        "UPDATE files SET path = ?, size = ?, mtime_ns = ?, inode = ?, device = ?, folder_kind = ?, "
        "missing = 0, seen_at = ?, sidecar_sig = ? WHERE id = ? AND asset_id = ?",
        [path, identity.size, identity.mtime_ns, identity.inode, identity.device, folder_kind, now(),
         sidecar_sig, file_id, asset_id],
    )
    if cursor.rowcount == 1:
        if old_path is not None:
            _name_follows_file(db, asset_id, old_path[0], path)
        add_aliases(db, asset_id, file_aliases(path))
        return "moved"
    put_file(db, asset_id, path, identity, folder_kind, sidecar_sig)
    return "added"


def file_name_of(path: str, fmt: str | None) -> str:
    """The name an asset takes from its file: the file name without its model extension (a folder: its name)."""
    return os.path.basename(path) if fmt == FOLDER_FORMAT else model_stem(path)


def _name_follows_file(db: sqlite_utils.Database, asset_id: int, old_path: str, new_path: str) -> None:
    """A file renamed by the user renames the asset named after it; a name from a source or a user stays."""
    row = db.execute("SELECT name, name_source, format FROM assets WHERE id = ?", [asset_id]).fetchone()
    if row is None or (row[1] or "file") != "file" or row[0] != file_name_of(old_path, row[2]):
        return
    new_name = file_name_of(new_path, row[2])
    if new_name != row[0]:
        update_asset(db, asset_id, {"name": new_name})


def put_folder_files(db: sqlite_utils.Database, path: str, members: list[FolderMember]) -> None:
    """Record the files inside the catalogued folder at ``path`` (replacing what was recorded)."""
    file_id = db.execute("SELECT id FROM files WHERE path = ?", [path]).fetchone()[0]
    db.execute("DELETE FROM folder_files WHERE file_id = ?", [file_id])
    db.conn.executemany("INSERT INTO folder_files (file_id, path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?, ?)",
                        [(file_id, m.path, m.size, m.mtime_ns, m.sha256) for m in members])


def folder_files(db: sqlite_utils.Database, path: str) -> list[FolderMember]:
    """The files recorded inside the catalogued folder at ``path`` (none if it is not one)."""
    rows = db.execute("SELECT ff.path, ff.size, ff.mtime_ns, ff.sha256 FROM folder_files ff "
                      "JOIN files f ON f.id = ff.file_id WHERE f.path = ? ORDER BY ff.path", [path]).fetchall()
    return [FolderMember(*row) for row in rows]


def broken_files(db: sqlite_utils.Database) -> list[dict[str, str]]:
    """Every present file whose content is not a usable model: its path, defect and the reason."""
    rows = db.execute("SELECT f.path, a.defect, a.problems FROM files f JOIN assets a ON a.id = f.asset_id "
                      "WHERE a.defect IS NOT NULL AND f.missing = 0 ORDER BY f.path").fetchall()
    return [{"path": path, "defect": defect, "reason": next(iter(json_list(problems)), "")}
            for path, defect, problems in rows]


def set_missing(db: sqlite_utils.Database, file_ids: list[int], missing: bool) -> None:
    db.conn.executemany("UPDATE files SET missing = ? WHERE id = ?", [(int(missing), i) for i in file_ids])


def mark_seen(db: sqlite_utils.Database, file_ids: list[int]) -> None:
    stamp = now()
    db.conn.executemany("UPDATE files SET seen_at = ?, missing = 0 WHERE id = ?", [(stamp, i) for i in file_ids])


#: The asset columns a remote library carries both ways, newest change winning per field (docs/remote.md);
#: ``assets.field_times`` records when each last changed.
SYNCED_FIELDS = ("name", "tags", "notes", "description", "trigger_words", "preferred_weight", "negative_text",
                 "sd_version", "nsfw", "preferred_vae", "generation_defaults")


def update_asset(db: sqlite_utils.Database, asset_id: int, fields: dict[str, Any],
                 *, changed_at: dict[str, str] | None = None) -> None:
    """Set some asset columns (lists are stored as JSON) and bump ``updated_at``; a synced field's change time
    is now, or the time ``changed_at`` gives (a change another machine made, arriving by pull)."""
    if not fields:
        return
    values = {k: (_dumps(v) if isinstance(v, (list, dict)) else v) for k, v in fields.items()}
    values["updated_at"] = now()
    synced = [k for k in fields if k in SYNCED_FIELDS]
    if synced:
        row = db.execute("SELECT field_times FROM assets WHERE id = ?", [asset_id]).fetchone()
        times = json_dict(row[0]) if row else {}
        times.update({k: (changed_at or {}).get(k, values["updated_at"]) for k in synced})
        values["field_times"] = _dumps(times)
    assignments = ", ".join(f"{column} = ?" for column in values)
    db.execute(f"UPDATE assets SET {assignments} WHERE id = ?", [*values.values(), asset_id])


def _name_update(row: dict[str, Any], name: str | None, source: str) -> dict[str, Any]:
    if not name:
        return {}
    if _NAME_RANK.get(source, 0) >= _NAME_RANK.get(row["name_source"] or "file", 0):
        return {"name": name, "name_source": source}
    return {}


_REMOTE_COLUMNS = ("model_id", "version_id", "repo", "revision", "url", "name", "json", "inherited_from",
                   "fetched_at")


def _write_remote_row(db: sqlite_utils.Database, asset_id: int, source: str, values: dict[str, Any]) -> bool:
    """Insert or replace the asset's record from ``source``; an inherited one never replaces its own."""
    if values["inherited_from"] is not None:
        own = db.execute("SELECT inherited_from FROM remote WHERE asset_id = ? AND source = ?",
                         [asset_id, source]).fetchone()
        if own is not None and own[0] is None:
            return False
    columns = ", ".join(_REMOTE_COLUMNS)
    updates = ", ".join(f"{column} = excluded.{column}" for column in _REMOTE_COLUMNS)
    db.execute(
        f"INSERT INTO remote (asset_id, source, {columns}) VALUES ({', '.join('?' * (len(_REMOTE_COLUMNS) + 2))}) "
        f"ON CONFLICT(asset_id, source) DO UPDATE SET {updates}",
        [asset_id, source, *(values[column] for column in _REMOTE_COLUMNS)],
    )
    return True


def put_remote(db: sqlite_utils.Database, asset_id: int, fields: RemoteFields, data: dict[str, Any],
               *, inherited_from: str | None = None, names_this_file: bool = True) -> None:
    """Store a source's record of the asset and fill in the asset fields it knows and the asset lacks;
    ``names_this_file=False`` when the record is about another file (its origin): the name is left."""
    values = {"model_id": fields.model_id, "version_id": fields.version_id, "repo": fields.repo,
              "revision": fields.revision, "url": fields.url, "name": fields.name,
              "json": json.dumps(data, ensure_ascii=False), "inherited_from": inherited_from, "fetched_at": now()}
    if not _write_remote_row(db, asset_id, fields.source, values):
        return
    if fields.source == "civitai":
        add_aliases(db, asset_id, civitai_aliases(data, row_sha256(db, asset_id)))
    row = asset_row(db, asset_id=asset_id)
    assert row is not None
    # A record inherited from the file this one was made from does not name this file.
    update = _name_update(row, fields.name, fields.source) if names_this_file and not inherited_from else {}
    if fields.trigger_words and not json_list(row["trigger_words"]):
        update["trigger_words"] = fields.trigger_words
    if fields.base_label:
        # The source's label replaces the file's own (or an older record's); the family stays the
        # tensors' when they prove one.
        detected = row["base_model"] if row.get("base_model_from") == "detection" else None
        update.update(base_fields(detected, fields.base_label, fields.source))
    if fields.description and not row["description"]:
        update["description"] = fields.description
    if fields.nsfw is not None and row["nsfw"] is None:
        update["nsfw"] = int(fields.nsfw)
    tags = json_list(row["tags"])
    new_tags = [t for t in fields.tags if t not in tags]
    if new_tags:
        update["tags"] = tags + new_tags
    update_asset(db, asset_id, update)
    for image in fields.images:
        add_preview(db, asset_id, url=image["url"], source=fields.source, nsfw_level=image.get("nsfw_level"),
                    width=image.get("width"), height=image.get("height"))


def add_preview(db: sqlite_utils.Database, asset_id: int, *, source: str, path: str | None = None,
                url: str | None = None, nsfw_level: int | None = None, width: int | None = None,
                height: int | None = None) -> None:
    """Remember a preview image (a local file, a remote URL or both) unless already known."""
    known = db.execute("SELECT 1 FROM previews WHERE asset_id = ? AND path IS ? AND url IS ?",
                       [asset_id, path, url]).fetchone()
    if known is None:
        db.execute("INSERT INTO previews (asset_id, path, url, source, nsfw_level, width, height, added_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [asset_id, path, url, source, nsfw_level, width, height, now()])


def drop_vanished_previews(db: sqlite_utils.Database, asset_id: int) -> None:
    """Forget preview sidecars that were deleted from disk."""
    gone = [(row_id,) for row_id, path in db.execute(
        "SELECT id, path FROM previews WHERE asset_id = ? AND source = 'sidecar'", [asset_id]).fetchall()
        if not os.path.exists(path)]
    db.conn.executemany("DELETE FROM previews WHERE id = ?", gone)


def apply_sidecars(db: sqlite_utils.Database, asset_id: int, sidecars: SidecarData, sha256: str) -> None:
    """Take what the sidecars say: what the user set in them wins (and is marked as theirs), Civitai data
    and what peers took from it fill what is empty."""
    from sdhub.catalog.remote import civitai_fields, civitai_lists_other_files

    record = sidecars.civitai
    if record is None and sidecars.peer_civitai and db.execute(
            "SELECT 1 FROM remote WHERE asset_id = ? AND source = 'civitai'", [asset_id]).fetchone() is None:
        record = sidecars.peer_civitai  # StabilityMatrix's or LoRA Manager's copy, when nothing better is known
    if record:
        try:
            fields = civitai_fields(record, sha256)
            about_this_file = not civitai_lists_other_files(record, sha256)
        except Exception:  # a sidecar of a shape we do not know is not worth failing a scan for
            fields = None
        if fields is not None:
            put_remote(db, asset_id, fields, record, names_this_file=about_this_file)
            propagate_to_derived(db, sha256)
    _apply_user_fields(db, asset_id, sidecars)
    if sidecars.preview:
        add_preview(db, asset_id, path=sidecars.preview, source="sidecar", nsfw_level=sidecars.preview_nsfw_level)
    if sidecars.problems:
        row = asset_row(db, asset_id=asset_id)
        assert row is not None
        problems = json_list(row["problems"])
        update_asset(db, asset_id, {"problems": problems + [p for p in sidecars.problems if p not in problems]})


def _apply_user_fields(db: sqlite_utils.Database, asset_id: int, sidecars: SidecarData) -> None:
    """The user's values from the sidecars, recorded in ``user_fields``; a user field emptied in its sidecar
    is emptied here; derived values fill only empty fields that are not the user's."""
    row = asset_row(db, asset_id=asset_id)
    assert row is not None
    mine = json_list(row.get("user_fields"))
    update: dict[str, Any] = {}
    for column, value in sidecars.user.items():
        if column == "name":
            update.update(_name_update(row, value, "user"))
        else:
            update[column] = value
        mine = mine if column in mine else [*mine, column]
    for column in sidecars.cleared:
        if column in mine and column != "name":
            update[column] = [] if column == "trigger_words" else None
            mine = [c for c in mine if c != column]
    for column, value in sidecars.derived.items():
        if column in mine or column in update:
            continue
        if column == "tags":
            tags = json_list(row["tags"])
            if [t for t in value if t not in tags]:
                update["tags"] = tags + [t for t in value if t not in tags]
        elif not (json_list(row[column]) if column == "trigger_words" else row[column]):
            update[column] = value
    if mine != json_list(row.get("user_fields")):
        update["user_fields"] = mine
    update_asset(db, asset_id, update)


def link_lineage(db: sqlite_utils.Database, child_sha256: str, parent_sha256: str,
                 relation: str | None = None) -> None:
    """Record that ``child`` was made from ``parent`` and let it inherit what it lacks."""
    db.execute("INSERT INTO lineage (child_sha256, parent_sha256, relation, recorded_at) VALUES (?, ?, ?, ?) "
               "ON CONFLICT(child_sha256, parent_sha256) DO UPDATE SET "
               "relation = coalesce(excluded.relation, lineage.relation)",
               [child_sha256, parent_sha256, relation, now()])
    db.execute("UPDATE assets SET source_sha256 = ? WHERE sha256 = ? AND source_sha256 IS NULL",
               [parent_sha256, child_sha256])
    inherit(db, child_sha256, parent_sha256)
    propagate_to_derived(db, child_sha256)


def inherit(db: sqlite_utils.Database, child_sha256: str, parent_sha256: str) -> None:
    """Copy the parent's trigger words, description and remote records where the child has none.

    The name is not inherited: ``tinymix_v1-pruned`` stays that, so each file can be told apart.
    """
    child = asset_row(db, sha256=child_sha256)
    parent = asset_row(db, sha256=parent_sha256)
    if child is None or parent is None:
        return  # recorded now, applied when both are in the catalog
    update: dict[str, Any] = {}
    for column in ("description", "notes", "preferred_weight"):
        if child[column] is None and parent[column] is not None:
            update[column] = parent[column]
    update.update(_inherited_base(child, parent))
    for column in ("trigger_words", "tags"):
        if not json_list(child[column]) and json_list(parent[column]):
            update[column] = json_list(parent[column])
    if child["nsfw"] is None and parent["nsfw"] is not None:
        update["nsfw"] = parent["nsfw"]
    update_asset(db, child["id"], update)
    for remote in db.query("SELECT * FROM remote WHERE asset_id = ?", [parent["id"]]):
        values = {column: remote[column] for column in _REMOTE_COLUMNS}
        values["inherited_from"] = remote["inherited_from"] or parent_sha256
        _write_remote_row(db, child["id"], remote["source"], values)


def _inherited_base(child: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """The base columns a derived file takes from its origin: the origin's family when its own tensors
    prove none, and the origin's label when it has none or only its metadata's (a source's wins)."""
    detected = child["base_model"] if child.get("base_model_from") == "detection" else None
    if detected is None and parent.get("base_model_from") == "detection":
        detected = parent["base_model"]
    label, label_from = child.get("base_label"), child.get("base_label_from")
    parent_label = parent.get("base_label")
    if parent_label and (not label or (label_from == "metadata" and parent.get("base_label_from") != "metadata")):
        label, label_from = parent_label, parent.get("base_label_from")
    fields = base_fields(detected, label, label_from)
    return {column: value for column, value in fields.items() if child.get(column) != value}


def propagate_to_derived(db: sqlite_utils.Database, sha256: str) -> None:
    """Re-apply inheritance to every file made (directly or not) from ``sha256``."""
    seen = {sha256}
    pending = [sha256]
    while pending:
        parent = pending.pop()
        for (child,) in db.execute("SELECT child_sha256 FROM lineage WHERE parent_sha256 = ?", [parent]).fetchall():
            if child not in seen:
                seen.add(child)
                inherit(db, child, parent)
                pending.append(child)
