"""An asset's manifest: what the catalog knows about one file, as the small JSON object stored beside its blob,
and the way back: a manifest's fields applied to a catalog (docs/remote.md, "Manifest")."""

from __future__ import annotations

import json
import socket
from typing import Any

import sqlite_utils

from sdhub.catalog import store
from sdhub.catalog.db import write_transaction
from sdhub.catalog.records import Asset, json_dict, json_list
from sdhub.remote.layout import MANIFEST_FORMAT, blob_key
from sdhub.remote.merge import USER_FIELDS, newer


def _user_values(row: dict[str, Any]) -> dict[str, Any]:
    values = {field: row[field] for field in USER_FIELDS}
    values["tags"], values["trigger_words"] = json_list(row["tags"]), json_list(row["trigger_words"])
    values["nsfw"] = None if row["nsfw"] is None else bool(row["nsfw"])
    values["generation_defaults"] = json_dict(row["generation_defaults"])
    return values


def build_manifest(db: sqlite_utils.Database, asset: Asset) -> dict[str, Any]:
    """The manifest of a catalogued asset (its Civitai/Hugging Face records in full)."""
    row = store.asset_row(db, asset_id=asset.id)
    assert row is not None
    hashes = dict(db.execute("SELECT scheme, value FROM hashes WHERE asset_id = ? ORDER BY scheme",
                             [asset.id]).fetchall())
    tests = [{"kind": kind, "verdict": verdict, "details": json_dict(details), "seconds": seconds, "at": at}
             for kind, verdict, details, seconds, at in db.execute(
                 "SELECT kind, verdict, details, seconds, at FROM tests WHERE asset_id = ? ORDER BY at, id", [asset.id])]
    lineage = [{"parent": parent, "relation": relation} for parent, relation in db.execute(
        "SELECT parent_sha256, relation FROM lineage WHERE child_sha256 = ? ORDER BY parent_sha256", [asset.sha256])]
    sources = {source: {"model_id": model_id, "version_id": version_id, "repo": repo, "revision": revision,
                        "url": url, "name": name, "record": json.loads(data or "{}")}
               for source, model_id, version_id, repo, revision, url, name, data in db.execute(
                   "SELECT source, model_id, version_id, repo, revision, url, name, json FROM remote "
                   "WHERE asset_id = ? AND inherited_from IS NULL ORDER BY source", [asset.id])}
    preview = db.execute("SELECT url FROM previews WHERE asset_id = ? AND url IS NOT NULL ORDER BY id LIMIT 1",
                         [asset.id]).fetchone()
    return {
        "format": MANIFEST_FORMAT, "sha256": asset.sha256, "size": asset.size, "blob": blob_key(asset.sha256),
        "file_name": asset.file_name, "names": sorted(set(asset.aliases) | {asset.name}),
        "kind": asset.kind, "architecture": asset.architecture, "base_model": asset.base_model,
        "base_label": asset.base_label, "file_format": asset.format, "dtype": asset.dtype, "hashes": hashes,
        "name_source": asset.name_source, "user": _user_values(row), "modified": json_dict(row.get("field_times")),
        "user_fields": json_list(row.get("user_fields")), "status": asset.status, "tests": tests,
        "lineage": lineage, "sources": sources, "preview": {"url": preview[0]} if preview else None,
        "pushed_at": store.now(), "pushed_by": socket.gethostname(),
    }


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the index holds it: source records cut down to their ids, names and URLs."""
    entry = dict(manifest)
    entry["sources"] = {source: {k: v for k, v in record.items() if k != "record"}
                        for source, record in (manifest.get("sources") or {}).items()}
    return entry


def apply_manifest(db: sqlite_utils.Database, asset_id: int, manifest: dict[str, Any]) -> list[str]:
    """Take from a manifest what is newer than the catalog's (per field), the test verdicts, lineage and source
    records it lacks; returns the names of the fields that changed."""
    from sdhub.catalog.remote import remote_fields

    changed: list[str] = []
    with write_transaction(db):
        row = store.asset_row(db, asset_id=asset_id)
        assert row is not None
        local, times = _user_values(row), json_dict(row.get("field_times"))
        mine = json_list(row.get("user_fields"))
        theirs = set(manifest.get("user_fields") or [])
        update: dict[str, Any] = {}
        stamps: dict[str, str] = {}
        for field, value in (manifest.get("user") or {}).items():
            if field not in USER_FIELDS:
                continue
            time = str((manifest.get("modified") or {}).get(field, ""))
            if value != local[field] and newer(str(times.get(field, "")), local[field], time, value):
                update[field] = int(value) if field == "nsfw" and value is not None else value
                stamps[field] = time
                mine = [f for f in mine if f != field] + ([field] if field in theirs else [])
        if "name" in update:
            update["name_source"] = manifest.get("name_source") or "user"
        if mine != json_list(row.get("user_fields")):
            update["user_fields"] = mine
        store.update_asset(db, asset_id, update, changed_at=stamps)
        changed = [f for f in update if f in USER_FIELDS]
        known = {(k, a, v) for k, a, v in db.execute("SELECT kind, at, verdict FROM tests WHERE asset_id = ?",
                                                     [asset_id]).fetchall()}
        for test in manifest.get("tests") or []:
            if (test.get("kind"), test.get("at"), test.get("verdict")) in known or not test.get("verdict"):
                continue
            db.execute("INSERT INTO tests (asset_id, kind, verdict, details, seconds, at) VALUES (?, ?, ?, ?, ?, ?)",
                       [asset_id, test.get("kind") or "reference", str(test["verdict"]),
                        json.dumps(test.get("details") or {}, ensure_ascii=False), test.get("seconds"), test.get("at")])
            changed.append("tests")
        latest = db.execute("SELECT verdict, at FROM tests WHERE asset_id = ? ORDER BY at DESC, id DESC LIMIT 1",
                            [asset_id]).fetchone()
        if latest and (row["status"], row["status_at"]) != tuple(latest):
            db.execute("UPDATE assets SET status = ?, status_at = ? WHERE id = ?", [*latest, asset_id])
        for source, record in (manifest.get("sources") or {}).items():
            data = record.get("record")
            have = db.execute("SELECT 1 FROM remote WHERE asset_id = ? AND source = ? AND inherited_from IS NULL",
                              [asset_id, source]).fetchone()
            if data and not have:
                try:
                    store.put_remote(db, asset_id, remote_fields(source, data, row["sha256"]), data)
                    changed.append(source)
                except Exception:  # a record of a shape this sdhub cannot read costs the record, not the pull
                    continue
        for link in manifest.get("lineage") or []:
            parent = link.get("parent")
            if parent and parent != row["sha256"]:
                store.link_lineage(db, row["sha256"], parent, link.get("relation"))
        preview = (manifest.get("preview") or {}).get("url")
        if preview:
            store.add_preview(db, asset_id, url=preview, source="remote")
    return sorted(set(changed))
