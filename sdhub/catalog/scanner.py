"""The incremental scanner: find model files, read only new or changed ones, keep the catalog true.

A file whose (path, size, mtime_ns, inode, device) matches its catalog row is not read. A path new
to the catalog whose (device, inode, size, mtime_ns) matches a known row is that file renamed or
hard-linked: also not read. Everything else is hashed and inspected on a pool of threads (the
hash functions release the GIL, so several files are read at once), then written in small
batches of short transactions so other writers are never blocked for long. A file that has gone
is marked missing, never forgotten; when its content turns up at another path, its row moves there.
A diffusers pipeline folder is one entry like a file; when it changes, only its changed files are read.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlite_utils

from sdhub.catalog import store
from sdhub.catalog.analysis import (
    FileAnalysis,
    FileIdentity,
    FolderMember,
    analyse_file,
    analyse_folder,
    is_pipeline_folder,
    path_identity,
)
from sdhub.catalog.db import write_transaction
from sdhub.catalog.records import ScanReport
from sdhub.catalog.sidecars import move_sidecars, read_sidecars
from sdhub.catalog.walker import FoundFile, sidecar_stamps, walk_roots
from sdhub.errors import Interrupted, SdhubError
from sdhub.progress import NULL_PROGRESS, Cancellation, Progress, ProgressTask, check_cancelled, reporting_stop

#: Results are written in one transaction per this many files (or per second, whichever first).
BATCH_FILES = 64
BATCH_SECONDS = 1.0
#: The longest the scan waits for a file before it looks whether it was asked to stop.
CHECK_SECONDS = 0.25


@dataclass
class _KnownFile:
    id: int
    asset_id: int
    path: str
    identity: FileIdentity
    missing: bool
    sidecar_sig: str
    folder_kind: str | None


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class _ForwardedBytes:
    """Progress handed to ``hash_file``: its byte counts feed the scan's one bytes bar, its checks
    are the scan's (so cancelling the scan stops every file being read)."""

    def __init__(self, task: ProgressTask, progress: Progress, stop: Cancellation) -> None:
        self._task = task
        self._progress = progress
        self._stop = stop
        self.reported = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        self._stop.check()
        check_cancelled(self._progress)

    def task(self, description: str, total: float | None = None, unit: str = "") -> "_ForwardedBytes":
        return self

    def message(self, text: str) -> None:
        pass

    def advance(self, amount: float = 1) -> None:
        self.check()
        with self._lock:
            self.reported += int(amount)
        self._task.advance(amount)

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        if completed is not None:
            with self._lock:
                step, self.reported = int(completed) - self.reported, int(completed)
            self._task.advance(step)

    def finish(self) -> None:
        pass

    def __enter__(self) -> "_ForwardedBytes":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def analyse(found: FoundFile, progress: Progress, check_values: bool, cached: list[FolderMember]) -> FileAnalysis:
    """Read a found file or folder; ``cached`` are a folder's files as the catalog last recorded them."""
    if found.folder:
        return analyse_folder(found.path, progress, check_values=check_values, cached=cached)
    return analyse_file(found.path, progress, check_values=check_values)


def _known_files(db: sqlite_utils.Database) -> dict[str, _KnownFile]:
    known = {}
    for row in db.execute("SELECT id, asset_id, path, size, mtime_ns, inode, device, missing, sidecar_sig, "
                          "folder_kind FROM files").fetchall():
        known[row[2]] = _KnownFile(row[0], row[1], row[2], FileIdentity(row[3], row[4], row[5], row[6]),
                                   bool(row[7]), row[8] or "", row[9])
    return known


class Scanner:
    """One scan of a catalog: decide what to read, read it in parallel, record the results."""

    def __init__(self, db: sqlite_utils.Database, *, progress: Progress = NULL_PROGRESS, full: bool = False,
                 check_values: bool = False, workers: int | None = None) -> None:
        self.db = db
        self.progress = progress
        self.full = full
        self.check_values = check_values
        self.workers = workers or default_workers()
        self.report = ScanReport()
        self._pending_writes: list[Callable[[], None]] = []
        self._last_flush = time.monotonic()
        self._to_read: list[FoundFile] | None = None

    # -- the whole scan -------------------------------------------------------------------------

    def scan(self, roots: Iterable[tuple[Path, str | None]], exclude: Iterable[Path] = ()) -> ScanReport:
        """Walk ``roots``, read what changed, record it; a stop keeps every file recorded before it."""
        with reporting_stop(self._left_behind):
            return self._scan(roots, exclude)

    def _left_behind(self) -> str:
        """What an interrupted scan leaves: the files it recorded stay catalogued."""
        if self._to_read is None:
            return "the catalog is as it was"
        return (f"{self.report.files_read} of {len(self._to_read)} files to read were read and are catalogued; "
                "the next scan reads the rest")

    def _scan(self, roots: Iterable[tuple[Path, str | None]], exclude: Iterable[Path] = ()) -> ScanReport:
        started = time.monotonic()
        roots = [(Path(path), kind) for path, kind in roots]
        self.report.roots = [str(path) for path, _ in roots]
        walk = walk_roots([(p, k) for p, k in roots if p.is_dir()], exclude=exclude, progress=self.progress)
        self.report.errors += [{"path": s["path"], "error": s["reason"]} for s in walk.skipped]
        known = _known_files(self.db)
        by_identity = {(k.identity.device, k.identity.inode, k.identity.size, k.identity.mtime_ns): k
                       for k in known.values()}
        found_paths = {found.path for found in walk.files}
        self.report.files_seen = len(walk.files)

        unchanged: list[int] = []
        sidecar_refresh: list[tuple[FoundFile, _KnownFile]] = []
        relinked: list[tuple[FoundFile, _KnownFile]] = []
        to_read: list[FoundFile] = []
        for found in walk.files:
            row = known.get(found.path)
            if row is not None and row.identity == found.identity and not self.full:
                unchanged.append(row.id)
                if row.sidecar_sig != found.sidecar_signature:
                    sidecar_refresh.append((found, row))
                continue
            identity_key = (found.identity.device, found.identity.inode, found.identity.size, found.identity.mtime_ns)
            twin = by_identity.get(identity_key)
            if row is None and twin is not None and not self.full:
                relinked.append((found, twin))
            else:
                to_read.append(found)

        vanished: dict[int, list[_KnownFile]] = {}
        for row in known.values():
            if row.path in found_paths:
                continue
            outcome = self._check_unwalked(row)
            if outcome == "gone":
                vanished.setdefault(row.asset_id, []).append(row)
            elif outcome == "same":
                unchanged.append(row.id)
            else:
                to_read.append(outcome)

        with write_transaction(self.db):
            for found, twin in relinked:
                self._record_relink(found, twin, vanished)
            for found, row in sidecar_refresh:
                self._refresh_sidecars(found, row.asset_id)
            store.mark_seen(self.db, unchanged)
        self.report.files_unchanged = len(unchanged)

        self._to_read = to_read
        self._read_all(to_read, known, vanished)

        newly_missing = [row.id for rows in vanished.values() for row in rows if not row.missing]
        if newly_missing:
            with write_transaction(self.db):
                store.set_missing(self.db, newly_missing, True)
        self.report.files_missing = len(newly_missing)
        self.report.broken = store.broken_files(self.db)
        self.report.seconds = round(time.monotonic() - started, 3)
        return self.report

    def _check_unwalked(self, row: _KnownFile) -> Any:
        """A catalog row outside the walked folders: 'gone', 'same', or a FoundFile to read again."""
        folder = os.path.isdir(row.path)
        if folder and not is_pipeline_folder(row.path):
            return "gone"
        try:
            identity = path_identity(row.path)
        except OSError:
            return "gone"
        if identity == row.identity and not self.full:
            return "same"
        return FoundFile(row.path, identity, row.folder_kind, folder=folder)

    # -- recording ------------------------------------------------------------------------------

    def _record_relink(self, found: FoundFile, twin: _KnownFile, vanished: dict[int, list[_KnownFile]]) -> None:
        """A new path for an inode the catalog knows: a rename (old path gone) or a hard link."""
        gone = vanished.get(twin.asset_id, [])
        if twin in gone:
            gone.remove(twin)
            self._count(store.move_file(self.db, twin.id, twin.asset_id, found.path, found.identity,
                                        found.folder_kind))
            self._follow_sidecars(twin.path, found)
        else:
            store.put_file(self.db, twin.asset_id, found.path, found.identity, found.folder_kind, "")
            self.report.files_added += 1
        self._refresh_sidecars(found, twin.asset_id)

    def _count(self, outcome: str) -> None:
        if outcome == "moved":
            self.report.files_moved += 1
        else:
            self.report.files_added += 1

    def _follow_sidecars(self, old_path: str, found: FoundFile) -> None:
        """A renamed model file takes its sidecars along, so none is left behind as an orphan."""
        if not found.folder and move_sidecars(old_path, found.path):
            found.sidecars = sidecar_stamps(found.path)

    def _refresh_sidecars(self, found: FoundFile, asset_id: int) -> None:
        sha256 = self.db.execute("SELECT sha256 FROM assets WHERE id = ?", [asset_id]).fetchone()[0]
        sidecars = read_sidecars(found.path, set(found.sidecars))
        if not sidecars.empty or sidecars.problems:
            store.apply_sidecars(self.db, asset_id, sidecars, sha256)
            self.report.sidecars_read += 1
        store.drop_vanished_previews(self.db, asset_id)
        self.db.execute("UPDATE files SET sidecar_sig = ? WHERE path = ?", [found.sidecar_signature, found.path])

    def record_analysis(self, found: FoundFile, analysis: FileAnalysis, path_known: bool,
                        vanished: dict[int, list[_KnownFile]]) -> int:
        """Write one analysed file: its asset, hashes, file row (moved if its content moved), sidecars."""
        asset_id, created = store.upsert_asset(self.db, analysis)
        if created:
            self.report.assets_added += 1
        gone = vanished.get(asset_id, [])
        if path_known:
            store.put_file(self.db, asset_id, found.path, analysis.identity, found.folder_kind, "")
            self.report.files_changed += 1
        elif gone:
            previous = gone.pop(0)
            self._count(store.move_file(self.db, previous.id, asset_id, found.path, analysis.identity,
                                        found.folder_kind))
            self._follow_sidecars(previous.path, found)
        else:
            store.put_file(self.db, asset_id, found.path, analysis.identity, found.folder_kind, "")
            self.report.files_added += 1
        if analysis.members is not None:
            store.put_folder_files(self.db, found.path, analysis.members)
        self._refresh_sidecars(found, asset_id)
        if created:
            store.propagate_to_derived(self.db, analysis.sha256)
        return asset_id

    def _queue_write(self, write: Callable[[], None]) -> None:
        self._pending_writes.append(write)
        if len(self._pending_writes) >= BATCH_FILES or time.monotonic() - self._last_flush >= BATCH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        if self._pending_writes:
            with write_transaction(self.db):
                for write in self._pending_writes:
                    write()
            self._pending_writes = []
        self._last_flush = time.monotonic()

    # -- reading --------------------------------------------------------------------------------

    def _read_all(self, to_read: list[FoundFile], known: dict[str, _KnownFile],
                  vanished: dict[int, list[_KnownFile]]) -> None:
        if not to_read:
            return
        total_bytes = sum(found.identity.size for found in to_read)
        task = self.progress.task(f"Reading {len(to_read)} files", total=total_bytes, unit="bytes")
        done = 0
        # Largest first: the long reads start early and the pool drains evenly.
        queue = sorted(to_read, key=lambda f: f.identity.size, reverse=True)
        # Set when the scan stops for any reason (a KeyboardInterrupt from Python's own handler
        # included), so the files still being read stop too instead of being read to the end.
        stop = Cancellation()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sdhub-scan") as pool:
            running: dict[Future, tuple[FoundFile, _ForwardedBytes]] = {}
            try:
                while queue or running:
                    while queue and len(running) < self.workers * 2:
                        found = queue.pop(0)
                        forward = _ForwardedBytes(task, self.progress, stop)
                        cached = store.folder_files(self.db, found.path) if found.folder and not self.full else []
                        future = pool.submit(analyse, found, forward, self.check_values, cached)
                        running[future] = (found, forward)
                    # A timeout, so a cancel is seen here even while every file being read is small.
                    finished, _ = wait(running, timeout=CHECK_SECONDS, return_when=FIRST_COMPLETED)
                    check_cancelled(self.progress)
                    for future in finished:
                        found, forward = running.pop(future)
                        task.advance(max(0, found.identity.size - forward.reported))
                        done += 1
                        task.update(description=f"Reading files {done}/{len(to_read)}")
                        self._take_result(future, found, known, vanished)
            except BaseException:
                stop.cancel()
                for future in running:
                    future.cancel()
                raise
            finally:
                self._flush()
                task.finish()

    def _take_result(self, future: Future, found: FoundFile, known: dict[str, _KnownFile],
                     vanished: dict[int, list[_KnownFile]]) -> None:
        try:
            analysis: FileAnalysis = future.result()
        except Interrupted:
            raise  # the scan was stopped, not this file
        except (SdhubError, OSError) as error:
            self.report.errors.append({"path": found.path, "error": str(error)})
            return
        self.report.files_read += 1
        self.report.bytes_read += analysis.bytes_read
        found.identity = analysis.identity
        path_known = found.path in known
        self._queue_write(lambda: self.record_analysis(found, analysis, path_known, vanished))
