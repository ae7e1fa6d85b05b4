"""Reading the catalog: resolving a reference, listing, full-text search, details, duplicates."""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import sqlite_utils

from sdhub.catalog.aliases import alias_list, parse_civitai_air
from sdhub.catalog.analysis import FOLDER_FORMAT, model_stem
from sdhub.catalog.civitai_record import civitai_record
from sdhub.catalog.records import (
    Asset,
    AssetDetails,
    AssetLink,
    DuplicateGroup,
    DuplicatesReport,
    FileRecord,
    json_dict,
)
from sdhub.errors import NotFoundError, UsageError
from sdhub.models.base_labels import FAMILY_LABELS, LABEL_ARCHITECTURES, compact, known_label
from sdhub.models.kinds import ARCHITECTURES, FAMILIES, kind_named

SORTS = {
    "name": "a.name COLLATE NOCASE, a.id",
    "size": "a.size DESC, a.id",
    "added": "a.added_at DESC, a.id DESC",
}

#: Hash prefixes shorter than this are not looked up (too many accidental matches).
MIN_HASH_PREFIX = 4
_HEX = re.compile(r"^[0-9a-f]+$")
#: Up to this many asset ids are fetched with ``IN (...)``; beyond it one pass over ``files`` is cheaper.
_IN_LIMIT = 500


def load_assets(db: sqlite_utils.Database, where: str = "", params: Sequence[Any] = (),
                order: str = SORTS["name"], limit: int | None = None) -> list[Asset]:
    """Assets matching a WHERE clause over ``assets a``, each with its files."""
    sql = f"SELECT a.* FROM assets a {('WHERE ' + where) if where else ''} ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = list(db.query(sql, list(params)))
    return _with_files(db, rows)


def _with_files(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> list[Asset]:
    ids = [row["id"] for row in rows]
    files: dict[int, list[FileRecord]] = {i: [] for i in ids}
    if ids:
        if len(ids) <= _IN_LIMIT:
            query = db.query(f"SELECT * FROM files WHERE asset_id IN ({', '.join('?' * len(ids))}) ORDER BY path", ids)
        else:
            query = db.query("SELECT * FROM files ORDER BY path")
        for file in query:
            if file["asset_id"] in files:
                files[file["asset_id"]].append(FileRecord.from_row(file))
    return [Asset.from_row(row, files[row["id"]]) for row in rows]


def get_asset(db: sqlite_utils.Database, asset_id: int) -> Asset:
    assets = load_assets(db, "a.id = ?", [asset_id])
    if not assets:
        raise NotFoundError(f"no asset with id {asset_id} in the catalog")
    return assets[0]


def list_assets(db: sqlite_utils.Database, *, kind: str | None = None, base: str | None = None,
                sort: str = "name", problems: bool = False) -> list[Asset]:
    """Assets filtered by kind and base model (``base_filter``: a family, an architecture or a label);
    with ``problems``, only those with something wrong (``Asset.has_problems``)."""
    if sort not in SORTS:
        raise UsageError(f"unknown sort {sort!r}; choose one of: {', '.join(SORTS)}")
    where, params = filters(db, kind=kind, base=base)
    assets = load_assets(db, where, params, SORTS[sort])
    return [asset for asset in assets if asset.has_problems] if problems else assets


def filters(db: sqlite_utils.Database, *, kind: str | None = None, base: str | None = None) -> tuple[str, list[Any]]:
    """A WHERE clause over ``assets a`` for a kind and a base model (either may be None)."""
    clauses, params = [], []
    if kind:
        clauses.append("a.kind = ?")
        params.append(kind_named(kind))  # aliases too: lycoris, upscale_models, unknown (now other)
    if base:
        clause, values = base_filter(db, base)
        clauses.append(clause)
        params += values
    return " AND ".join(clauses), params


def base_labels(db: sqlite_utils.Database) -> list[str]:
    """Every base-model label the catalog holds, sorted."""
    return sorted((row[0] for row in db.execute(
        "SELECT DISTINCT base_label FROM assets WHERE base_label IS NOT NULL").fetchall()), key=str.lower)


def base_filter(db: sqlite_utils.Database, text: str) -> tuple[str, list[Any]]:
    """A WHERE clause for ``--base text``, in either vocabulary, case and spacing aside.

    A family (``sdxl``) matches every asset of it, labelled Pony, Illustrious or not at all; a label
    naming a family itself (``SD 1.5``) means that family; an architecture (``flux1-dev``) matches
    it and the labels naming it ("Flux.1 D"); any other label (``Pony``) matches only what carries it.
    A value that is none of these is refused, with the choices.
    """
    key = compact(text)
    civitai = known_label(text)
    families = {family for family in FAMILIES if compact(family) == key}
    architectures = {architecture for architecture in ARCHITECTURES if compact(architecture) == key}
    labels: set[str] = set()
    if civitai in FAMILY_LABELS:
        families.add(FAMILY_LABELS[civitai])  # exactly the family: "SD 1.5" is sd1
    elif not families:
        if civitai in LABEL_ARCHITECTURES:
            architectures.add(LABEL_ARCHITECTURES[civitai])
        labels = {label for label in base_labels(db) if compact(label) == key
                  or LABEL_ARCHITECTURES.get(known_label(label) or "") in architectures}
        if civitai:
            labels.add(civitai)
    if not (families or architectures or labels):
        present = base_labels(db)
        held = f"; labels in this catalog: {', '.join(present)}" if present else ""
        raise UsageError(f"unknown base model {text!r}: give a family ({', '.join(FAMILIES)}), an architecture "
                         f"(e.g. sd2-v, sdxl-refiner, flux1-schnell) or a label (e.g. Pony, Illustrious, "
                         f"\"SD 1.5\"){held}")
    clauses, params = [], []
    for column, values in (("a.base_model", families), ("a.architecture", architectures), ("a.base_label", labels)):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += sorted(values)
    return "(" + " OR ".join(clauses) + ")", params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: What A1111 prompts name a network by: ``<lora:NAME:0.8>`` (also lyco, hypernet); NAME is a file's stem.
_PROMPT_TAG = re.compile(r"^<\s*(?:lora|lyco|locon|hypernet)\s*:\s*([^:>]+?)\s*(?::[^>]*)?>$", re.IGNORECASE)


def prompt_name(text: str) -> str:
    """The file name a prompt tag such as ``<lora:NAME:0.8>`` names; other text as it is."""
    match = _PROMPT_TAG.match(text.strip())
    return match.group(1) if match else text.strip()


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must match, each as a prefix."""
    words = re.findall(r"\w+", prompt_name(text))
    if not words:
        raise UsageError("give at least one word to search for")
    return " ".join(f'"{word}"*' for word in words)


def search(db: sqlite_utils.Database, text: str, limit: int = 100, *, kind: str | None = None,
           base: str | None = None) -> list[Asset]:
    """Assets whose name, tags, trigger words, description, notes or base model (family or label) match
    all the words of ``text``, optionally of one kind and base model (as ``list_assets`` takes them)."""
    where, params = filters(db, kind=kind, base=base)
    air = parse_civitai_air(text)
    if air is not None:  # an AIR names Civitai ids: exactly the assets recorded with them
        ids = _air_matches(db, *air)
        if not ids:
            return []
        clause = f"a.id IN ({', '.join('?' * len(ids))})"
        return load_assets(db, f"{clause} AND {where}" if where else clause, [*ids, *params], limit=limit)
    rows = list(db.query(
        "SELECT a.* FROM assets_fts JOIN assets a ON a.id = assets_fts.rowid "
        f"WHERE assets_fts MATCH ? {'AND ' + where if where else ''} ORDER BY bm25(assets_fts), a.id LIMIT ?",
        [fts_query(text), *params, limit]))
    return _with_files(db, rows)


def _ids(db: sqlite_utils.Database, sql: str, params: Sequence[Any]) -> list[int]:
    return [row[0] for row in db.execute(sql, list(params)).fetchall()]


def _air_matches(db: sqlite_utils.Database, model_id: str, version_id: str | None) -> list[int]:
    """Assets whose Civitai record has this version (or, without one, this model)."""
    if version_id is not None:
        return _ids(db, "SELECT asset_id FROM remote WHERE source = 'civitai' AND version_id = ? ORDER BY asset_id",
                    [version_id])
    return _ids(db, "SELECT asset_id FROM remote WHERE source = 'civitai' AND model_id = ? ORDER BY asset_id",
                [model_id])


def _alias_matches(db: sqlite_utils.Database, name: str) -> list[int]:
    """Assets one of whose names (file names old and new, Civitai's names) is exactly ``name``, any case."""
    wanted = name.lower()
    return [asset_id for asset_id, aliases in db.execute(
        "SELECT id, aliases FROM assets WHERE aliases LIKE ? ESCAPE '\\'", [f"%{_escape_like(name)}%"]).fetchall()
        if wanted in (alias.lower() for alias in alias_list(aliases))]


def _exact_matches(db: sqlite_utils.Database, ref: str) -> list[int]:
    air = parse_civitai_air(ref)
    if air is not None:
        return _air_matches(db, *air)
    ref = prompt_name(ref)
    ids: list[int] = []
    if ref.isdigit():
        ids += _ids(db, "SELECT id FROM assets WHERE id = ?", [int(ref)])
    if os.sep in ref or os.path.exists(ref):
        path = os.path.abspath(os.path.expanduser(ref))
        ids += _ids(db, "SELECT asset_id FROM files WHERE path = ? OR path = ?", [path, os.path.realpath(path)])
    lower = ref.lower()
    if _HEX.match(lower):
        ids += _ids(db, "SELECT asset_id FROM hashes WHERE value = ?", [lower]) or _made_from(db, lower)
    ids += _ids(db, "SELECT id FROM assets WHERE name = ? COLLATE NOCASE", [ref])
    wanted = ref.lower()
    for asset_id, path in db.execute("SELECT asset_id, path FROM files WHERE path LIKE ? ESCAPE '\\'",
                                     [f"%{os.sep}{_escape_like(ref)}%"]).fetchall():
        name = os.path.basename(path)
        if wanted in (name.lower(), model_stem(name).lower()):
            ids.append(asset_id)
    return ids or _alias_matches(db, ref)


def _made_from(db: sqlite_utils.Database, sha256: str) -> list[int]:
    """Assets made from content the catalog does not hold itself (the pickle a .safetensors was
    converted from, the file a source published): a hash a user copied from that source finds them."""
    return _ids(db, "SELECT id FROM assets WHERE source_sha256 = ? UNION SELECT a.id FROM lineage l "
                    "JOIN assets a ON a.sha256 = l.child_sha256 WHERE l.parent_sha256 = ?", [sha256, sha256])


def origin_hashes(db: sqlite_utils.Database, sha256: str) -> list[str]:
    """``sha256`` and then the SHA-256s of what it was made from (converted, pruned...), nearest first:
    the hashes a source such as Civitai may know the content by."""
    found = [sha256]
    for current in found:  # grows while it is walked: breadth first, each hash once
        row = db.execute("SELECT source_sha256 FROM assets WHERE sha256 = ?", [current]).fetchone()
        parents = [row[0]] if row and row[0] else []
        parents += _ids(db, "SELECT parent_sha256 FROM lineage WHERE child_sha256 = ? ORDER BY recorded_at", [current])
        found += [parent for parent in parents if parent not in found]
    return found


def _prefix_matches(db: sqlite_utils.Database, ref: str) -> list[int]:
    ids: list[int] = []
    lower = ref.lower()
    if _HEX.match(lower) and len(lower) >= MIN_HASH_PREFIX:
        # 'g' sorts after every hex digit, so this range is "starts with" and uses the index.
        ids += _ids(db, "SELECT asset_id FROM hashes WHERE value >= ? AND value < ?", [lower, lower + "g"]) or _ids(
            db, "SELECT id FROM assets WHERE source_sha256 >= ? AND source_sha256 < ?", [lower, lower + "g"])
    escaped = _escape_like(ref)
    ids += _ids(db, "SELECT id FROM assets WHERE name LIKE ? ESCAPE '\\'", [f"{escaped}%"])
    ids += _ids(db, "SELECT asset_id FROM files WHERE path LIKE ? ESCAPE '\\'", [f"%{os.sep}{escaped}%"])
    return ids


def find_asset(db: sqlite_utils.Database, ref: str) -> Asset:
    """The one asset ``ref`` names: an id, a path, a name, a file name, or a hash of any scheme.

    Exact matches win over prefixes (of a name, a file name or a hash). A reference that fits
    several assets is refused with the list of candidates.
    """
    ref = str(ref).strip()
    if not ref:
        raise UsageError("give an asset: an id, a path, a name or a hash")
    for matcher in (_exact_matches, _prefix_matches):
        ids = list(dict.fromkeys(matcher(db, ref)))
        if len(ids) == 1:
            return get_asset(db, ids[0])
        if ids:
            raise UsageError(_ambiguity_message(db, ref, ids))
    raise NotFoundError(f"nothing in the catalog matches {ref!r}; try a longer hash, `sdhub search`, or `sdhub scan`")


def _ambiguity_message(db: sqlite_utils.Database, ref: str, ids: list[int]) -> str:
    shown = 8
    candidates = load_assets(db, f"a.id IN ({', '.join('?' * len(ids[:shown]))})", ids[:shown], "a.id")
    listing = "; ".join(f"{a.id} {a.name} ({a.file_name or 'no file'}, {a.kind}, {a.autov2})" for a in candidates)
    more = f"; and {len(ids) - shown} more" if len(ids) > shown else ""
    return f"{ref!r} matches {len(ids)} assets: {listing}{more}. Use the id, the file name or a longer hash"


def _lineage_links(db: sqlite_utils.Database, sha256: str, *, upward: bool) -> list[AssetLink]:
    start, end = ("child_sha256", "parent_sha256") if upward else ("parent_sha256", "child_sha256")
    links: list[AssetLink] = []
    seen = {sha256}
    pending = [sha256]
    while pending:
        current = pending.pop(0)
        for other, relation in db.execute(f"SELECT {end}, relation FROM lineage WHERE {start} = ? ORDER BY {end}",
                                          [current]).fetchall():
            if other in seen:
                continue
            seen.add(other)
            pending.append(other)
            row = db.execute("SELECT id, name FROM assets WHERE sha256 = ?", [other]).fetchone()
            links.append(AssetLink(other, relation, row[0] if row else None, row[1] if row else None))
    return links


def asset_details(db: sqlite_utils.Database, asset: Asset) -> AssetDetails:
    """Everything the catalog holds about ``asset``."""
    hashes = {scheme: value for scheme, value in db.execute(
        "SELECT scheme, value FROM hashes WHERE asset_id = ? ORDER BY scheme", [asset.id]).fetchall()}
    remote = []
    for row in db.query("SELECT * FROM remote WHERE asset_id = ? ORDER BY source", [asset.id]):
        row = dict(row)
        row["json"] = json_dict(row["json"])
        remote.append(row)
    previews = list(db.query("SELECT * FROM previews WHERE asset_id = ? ORDER BY id", [asset.id]))
    tests = []
    for row in db.query("SELECT * FROM tests WHERE asset_id = ? ORDER BY at DESC, id DESC", [asset.id]):
        row = dict(row)
        row["details"] = json_dict(row["details"])
        tests.append(row)
    inspect_row = db.execute("SELECT inspect FROM assets WHERE id = ?", [asset.id]).fetchone()
    # A folder asset's files, as recorded for the first of its copies that has them.
    folder_files = list(db.query(
        "SELECT ff.path, ff.size, ff.sha256 FROM folder_files ff WHERE ff.file_id = "
        "(SELECT min(f.id) FROM files f JOIN folder_files g ON g.file_id = f.id WHERE f.asset_id = ?) "
        "ORDER BY ff.path", [asset.id]))
    return AssetDetails(
        asset=asset, hashes=hashes, remote=remote, previews=previews, tests=tests,
        ancestors=_lineage_links(db, asset.sha256, upward=True),
        derived=_lineage_links(db, asset.sha256, upward=False),
        inspect=json_dict(inspect_row[0] if inspect_row else None), folder_files=folder_files,
        civitai=next((civitai_record(r["json"], asset.sha256).to_dict() for r in remote
                      if r["source"] == "civitai" and r["json"]), None),
    )


def without_remote(db: sqlite_utils.Database, source: str) -> list[Asset]:
    """Model-file assets with no record (own or inherited) from ``source``, oldest first."""
    return load_assets(db, "a.format IS NOT ? AND NOT EXISTS "
                           "(SELECT 1 FROM remote r WHERE r.asset_id = a.id AND r.source = ?)",
                       [FOLDER_FORMAT, source], "a.id")


def duplicates(db: sqlite_utils.Database) -> DuplicatesReport:
    """Contents present at more than one path, largest waste first."""
    ids = _ids(db, "SELECT asset_id FROM files WHERE missing = 0 GROUP BY asset_id HAVING count(*) > 1", [])
    groups = []
    for index in range(0, len(ids), _IN_LIMIT):
        chunk = ids[index:index + _IN_LIMIT]
        for asset in load_assets(db, f"a.id IN ({', '.join('?' * len(chunk))})", chunk, "a.id"):
            copies = {(f.device, f.inode) for f in asset.present_files}
            groups.append(DuplicateGroup(asset, asset.size * (len(copies) - 1)))
    groups.sort(key=lambda group: (-group.wasted_bytes, group.asset.name.lower()))
    return DuplicatesReport(groups)
