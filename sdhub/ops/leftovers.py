"""Finding and removing what interrupted writers left: temporary files and download ``.part`` files.

A convert or prune killed with ``kill -9`` leaves its temporary ``.sdhub-tmp-NAME.part`` (as large
as the output); a stopped download leaves its resumable ``.sdhub-KEY.part``. Only sdhub's own
names are ever considered. A file is removed only when no live process is writing it: writers
hold a ``flock`` on their temporary file (downloads on their ``.lock`` file), and a lock dies
with its process. Files from writers that take no lock (older sdhub versions, Hub copies) count
as stale once they have not changed for ``UNLOCKED_GRACE_SECONDS``. A download ``.part`` can be
resumed by running the same command again, so it is kept unless ``partials`` is asked for.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from sdhub.atomic import claim_if_unlocked, is_temp_name, writer_locks
from sdhub.sources.placing import PART_PREFIX, lock_if_free

#: A file whose writer takes no lock is left alone while it changed within this many seconds.
UNLOCKED_GRACE_SECONDS = 15 * 60
#: A download's files: ``.sdhub-KEY.part``, its resume state and its lock (``sdhub.sources.download.part_paths``).
_DOWNLOAD_FILE = re.compile(r"^\.sdhub-(?P<key>[0-9a-f]{20})\.(?P<what>part|part\.json|part\.json\.tmp|lock)$")

#: ``Leftover.state`` values.
STALE = "stale"              # nobody writes it: removed by clean
RESUMABLE = "resumable"      # a stopped download: removed by clean only with partials
IN_USE = "in use"            # a live process holds its lock
RECENT = "recently changed"  # no lock to ask, and changed within the grace period


@dataclass
class Leftover:
    """One leftover: a temporary file (or staging folder), or a stopped download with its state files."""

    path: str
    size: int
    kind: str  # "temporary" or "download"
    state: str
    modified: float
    companions: list[str] = field(default_factory=list)
    action: str = ""  # what clean did: "removed", "would remove", "kept", or the error
    removed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CleanReport:
    """What ``clean_leftovers`` found and did; ``freed_bytes`` counts what was (or would be) removed."""

    folders: list[str]
    leftovers: list[Leftover]
    dry_run: bool = False
    partials: bool = False

    @property
    def freed_bytes(self) -> int:
        return sum(item.size for item in self.leftovers if item.removed or item.action == "would remove")

    @property
    def failed(self) -> list[Leftover]:
        return [item for item in self.leftovers if item.action.startswith("failed")]

    def to_dict(self) -> dict[str, Any]:
        return {"folders": self.folders, "dry_run": self.dry_run, "partials": self.partials,
                "freed_bytes": self.freed_bytes, "leftovers": [item.to_dict() for item in self.leftovers]}


def summarize(leftovers: list[Leftover], size_text: Callable[[int], str]) -> str:
    """One line for scan and doctor: how many leftovers in each state, and their bytes; empty when none."""
    parts = []
    for state, label in ((STALE, "stale temporary file"), (RESUMABLE, "resumable download"),
                         (IN_USE, "file being written"), (RECENT, "recently changed file")):
        items = [item for item in leftovers if item.state == state]
        if items:
            plural = label.replace("file", "files", 1) if "file" in label else label + "s"
            parts.append(f"{len(items)} {label if len(items) == 1 else plural} "
                         f"({size_text(sum(item.size for item in items))})")
    return ", ".join(parts)


def find_leftovers(folders: Iterable[str | os.PathLike[str]], *, now: float | None = None) -> list[Leftover]:
    """Every sdhub leftover under ``folders`` (recursively), with its size and whether it is stale."""
    now = time.time() if now is None else now
    found: list[Leftover] = []
    for folder in _walk(folders):
        downloads: dict[str, dict[str, os.DirEntry]] = {}
        for entry in _entries(folder):
            match = _DOWNLOAD_FILE.match(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                downloads.setdefault(match["key"], {})[match["what"]] = entry
            elif is_temp_name(entry.name) or (entry.name.startswith(PART_PREFIX) and entry.name.endswith(".part")):
                item = _temporary(entry, now)
                if item is not None:
                    found.append(item)
        for key, files in sorted(downloads.items()):
            found.append(_download(Path(folder), key, files))
    return sorted(found, key=lambda item: item.path)


def clean_leftovers(folders: Iterable[str | os.PathLike[str]], *, dry_run: bool = False,
                    partials: bool = False) -> CleanReport:
    """Remove the stale leftovers under ``folders`` (and stopped downloads' ``.part`` files with ``partials``)."""
    folders = [str(folder) for folder in folders]
    report = CleanReport(folders, find_leftovers(folders), dry_run=dry_run, partials=partials)
    for item in report.leftovers:
        wanted = item.state == STALE or (item.state == RESUMABLE and partials)
        if not wanted:
            item.action = "kept"
        elif dry_run:
            item.action = "would remove"
        else:
            try:
                item.removed = _remove(item)
            except OSError as error:
                item.action = f"failed: {error.strerror or error}"
                continue
            item.action = "removed" if item.removed else "kept (in use now)"
    return report


# -- finding ----------------------------------------------------------------------------------------

def _walk(folders: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    """Each folder once (links followed, loops cut), without entering hidden folders."""
    seen: set[tuple[int, int]] = set()
    pending = [os.path.abspath(folder) for folder in folders][::-1]
    while pending:
        folder = pending.pop()
        try:
            stat = os.stat(folder)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        yield folder
        for entry in _entries(folder):
            with contextlib.suppress(OSError):
                if not entry.name.startswith(".") and entry.is_dir():
                    pending.append(entry.path)


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return []


def _temporary(entry: os.DirEntry, now: float) -> Leftover | None:
    try:
        if entry.is_dir(follow_symlinks=False):
            size, modified = _tree_size(entry.path)
        elif entry.is_file(follow_symlinks=False):
            stat = entry.stat(follow_symlinks=False)
            size, modified = stat.st_size, stat.st_mtime
        else:
            return None
    except OSError:
        return None
    path = Path(entry.path)
    if writer_locks(entry.name) and not path.is_dir():
        with claim_if_unlocked(path) as unlocked:
            state = STALE if unlocked else IN_USE
    else:
        state = STALE if now - modified >= UNLOCKED_GRACE_SECONDS else RECENT
    return Leftover(str(path), size, "temporary", state, modified)


def _tree_size(folder: str) -> tuple[int, float]:
    size, modified = 0, os.stat(folder).st_mtime
    for parent, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                stat = os.stat(os.path.join(parent, name), follow_symlinks=False)
                size += stat.st_size
                modified = max(modified, stat.st_mtime)
    return size, modified


def _download(folder: Path, key: str, files: dict[str, os.DirEntry]) -> Leftover:
    stats = {what: _stat(entry) for what, entry in files.items()}
    size = sum(stat.st_size for stat in stats.values() if stat)
    modified = max((stat.st_mtime for stat in stats.values() if stat), default=0.0)
    lock = folder / f"{PART_PREFIX}{key}.lock"
    live = False
    if lock.exists():
        with claim_if_unlocked(lock) as unlocked:
            live = not unlocked
    main = files.get("part") or next(iter(files.values()))
    companions = sorted(entry.path for what, entry in files.items() if entry is not main)
    if live:
        state = IN_USE
    else:
        # Resume state without the bytes it describes (or a lone lock file) resumes nothing.
        state = RESUMABLE if "part" in files else STALE
    return Leftover(main.path, size, "download" if "part" in files else "temporary", state, modified, companions)


def _stat(entry: os.DirEntry) -> os.stat_result | None:
    try:
        return entry.stat(follow_symlinks=False)
    except OSError:
        return None


# -- removing ---------------------------------------------------------------------------------------

def _remove(item: Leftover) -> bool:
    """Remove one leftover if still nobody writes it; False when a writer took it meanwhile."""
    path = Path(item.path)
    if _DOWNLOAD_FILE.match(path.name):
        key = _DOWNLOAD_FILE.match(path.name)["key"]
        with lock_if_free(path.parent / f"{PART_PREFIX}{key}.lock") as ours:
            if not ours:
                return False
            for name in (f"{key}.part", f"{key}.part.json", f"{key}.part.json.tmp"):
                (path.parent / f"{PART_PREFIX}{name}").unlink(missing_ok=True)
        return True
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return True
    with claim_if_unlocked(path) as unlocked:
        if not unlocked:
            return False
        path.unlink(missing_ok=True)
    return True


