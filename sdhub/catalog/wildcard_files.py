"""The catalog's list of wildcard files: each file in the home's wildcards folders with its entry count.

Wildcard files are not model files (no hashes, no kind detection): a scan lists them in their own
table, ``wildcard_files``, reading only files whose size or mtime changed. Entries are counted as
Dynamic Prompts reads them: a ``.txt`` has one entry per line that is neither empty nor a ``#``
comment; a ``.yaml``/``.yml``/``.json`` file holds nested collections (a key's list or string is a
wildcard ``folder/key``; a top-level list is one wildcard named after the file). Only files inside a
wildcards folder are wildcards: a ``.txt`` beside a model is that model's sidecar.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from sdhub.atomic import is_temp_name
from sdhub.catalog.db import write_transaction

TABLE = "wildcard_files"
#: File endings read as wildcard files (.yml is listed though Dynamic Prompts 0.31 reads only .yaml).
SUFFIXES = (".txt", ".yaml", ".yml", ".json")
#: A wildcard file bigger than this is listed with a problem instead of being read.
MAX_READ_BYTES = 64 << 20
#: At most this many values are walked in one structured file (YAML aliases can repeat a list endlessly).
_MAX_VALUES = 1_000_000


@dataclass
class WildcardFile:
    """One wildcard file: where it is, the wildcards it defines (name and entry count) and their total."""

    path: str
    root: str
    format: str
    size: int
    mtime_ns: int
    entries: int = 0
    wildcards: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_table(db: sqlite_utils.Database) -> None:
    """Create the table on first use (its own table: no migration of the model tables)."""
    db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (path TEXT PRIMARY KEY, root TEXT NOT NULL, format TEXT NOT NULL, "
               "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, entries INTEGER NOT NULL, wildcards TEXT NOT NULL, "
               "problem TEXT)")


def read_wildcard_file(path: Path, root: Path) -> WildcardFile:
    """Count the entries of one wildcard file under the wildcards folder ``root``."""
    stat = path.stat()
    suffix = path.suffix.lower()
    found = WildcardFile(str(path), str(root), suffix.lstrip("."), stat.st_size, stat.st_mtime_ns)
    relative = path.relative_to(root).with_suffix("").as_posix()
    if stat.st_size > MAX_READ_BYTES:
        found.problem = f"{stat.st_size >> 20} MiB; not read"
        return found
    text = path.read_bytes().decode("utf-8", errors="ignore")
    if suffix == ".txt":
        counts = {relative: sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))}
    else:
        try:
            counts = _structured_counts(text, suffix, relative)
        except Exception as error:  # a broken YAML/JSON file is listed with why, never stops a scan
            found.problem = f"not readable {suffix.lstrip('.').upper()}: {str(error).splitlines()[0][:200]}"
            return found
    found.wildcards = [{"name": name, "entries": count} for name, count in counts.items()]
    found.entries = sum(counts.values())
    return found


def _structured_counts(text: str, suffix: str, relative: str) -> dict[str, int]:
    if suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    prefix = relative.rsplit("/", 1)[0] + "/" if "/" in relative else ""
    budget = [_MAX_VALUES]
    if isinstance(data, list):
        return {relative: sum(1 for item in data if isinstance(item, str))}
    counts: dict[str, int] = {}
    if isinstance(data, dict):
        _count_dict(data, prefix, counts, budget)
    return counts


def _count_dict(data: dict, prefix: str, counts: dict[str, int], budget: list[int]) -> None:
    for key, value in data.items():
        if not isinstance(key, str) or not value:
            continue
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"more than {_MAX_VALUES} values")
        name = f"{prefix}{key}"
        if isinstance(value, str):
            counts[name] = 1
        elif isinstance(value, list):
            budget[0] -= len(value)
            counts[name] = sum(1 for item in value if item and (isinstance(item, str) or (
                isinstance(item, dict) and (item.get("text") or item.get("content")))))
        elif isinstance(value, dict):
            _count_dict(value, f"{name}/", counts, budget)


def wildcard_roots(home: Any) -> list[Path]:
    """The home's wildcards folders that exist (the layout may name several)."""
    return [path for path in home.candidate_folders("wildcards") if path.is_dir()]


def _walk(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / name for name in sorted(files)
                  if name.lower().endswith(SUFFIXES) and not name.startswith(".") and not is_temp_name(name)]
    return found


def refresh(db: sqlite_utils.Database, roots: list[Path]) -> list[WildcardFile]:
    """Bring the table up to date with the files under ``roots``; every file listed, changed ones read again."""
    ensure_table(db)
    known = {row[0]: (row[1], row[2]) for row in db.execute(f"SELECT path, size, mtime_ns FROM {TABLE}").fetchall()}
    listed: list[WildcardFile] = []
    to_write: list[WildcardFile] = []
    for root in roots:
        for path in _walk(root):
            try:
                stat = path.stat()
                if not path.is_file():
                    continue
                if known.get(str(path)) == (stat.st_size, stat.st_mtime_ns):
                    continue
                to_write.append(read_wildcard_file(path, root))
            except OSError:
                continue
    seen = {str(path) for root in roots for path in _walk(root)}
    with write_transaction(db):
        for item in to_write:
            db.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [item.path, item.root, item.format, item.size, item.mtime_ns, item.entries,
                        json.dumps(item.wildcards), item.problem])
        for path in set(known) - seen:
            db.execute(f"DELETE FROM {TABLE} WHERE path = ?", [path])
    listed = list_wildcard_files(db)
    return listed


def list_wildcard_files(db: sqlite_utils.Database) -> list[WildcardFile]:
    """Every catalogued wildcard file, by path."""
    ensure_table(db)
    rows = db.execute(f"SELECT path, root, format, size, mtime_ns, entries, wildcards, problem FROM {TABLE} "
                      "ORDER BY path").fetchall()
    return [WildcardFile(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7]) for row in rows]


def refresh_wildcard_files(home: Any) -> list[WildcardFile]:
    """Open the home's catalog and bring its wildcard list up to date (what ``get`` of a pack does)."""
    from sdhub.catalog import Catalog

    with Catalog(home) as catalog:
        return refresh(catalog.db, wildcard_roots(home))
