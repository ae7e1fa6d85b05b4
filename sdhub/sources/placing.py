"""Putting files into library folders safely: locks, hashing a file, no-clobber atomic placement."""

from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sdhub.atomic import fsync_directory
from sdhub.progress import NULL_PROGRESS, Progress
from sdhub.sources.filenames import numbered_name

#: Prefix of sdhub's temporary and partial files: hidden, and skipped by catalog scans.
PART_PREFIX = ".sdhub-"
READ_BLOCK = 8 << 20


@contextmanager
def exclusive_lock(path: Path, progress: Progress = NULL_PROGRESS) -> Iterator[None]:
    """Hold an exclusive lock file; waits (and says so) while another process holds it."""
    fd = _take_lock(path, progress, wait=True)
    assert fd is not None
    try:
        yield
    finally:
        _release_lock(path, fd)


@contextmanager
def lock_if_free(path: Path) -> Iterator[bool]:
    """Take the lock file as ``exclusive_lock`` does, but without waiting: yield True while holding it,
    False when another process holds it (``sdhub clean`` then leaves that download alone)."""
    fd = _take_lock(path, NULL_PROGRESS, wait=False)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        _release_lock(path, fd)


def _take_lock(path: Path, progress: Progress, *, wait: bool) -> int | None:
    """An fd holding ``path``'s lock, the file still being the one at ``path``; None if busy and not ``wait``."""
    while True:
        # A cleaner (not ``wait``) never follows a link planted where a lock file should be.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | (0 if wait else os.O_NOFOLLOW), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                return None
            progress.message(f"waiting for another sdhub downloading the same file ({path.name})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            return fd
        os.close(fd)  # the holder removed the lock file as it finished: take a fresh one


def _release_lock(path: Path, fd: int) -> None:
    path.unlink(missing_ok=True)  # before closing: a waiter then sees a removed file and takes a fresh one
    os.close(fd)


def sha256_file(path: Path) -> str:
    """SHA-256 of a whole file, read in large blocks."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def place_file(source: Path, folder: Path, name: str, sha256: str, size: int, *,
               reuse_identical: bool = True) -> tuple[Path, bool]:
    """Move a verified temporary file (in ``folder``) to ``folder/name`` without overwriting anything.

    Identical bytes already under the name are reused (the source is dropped) unless
    ``reuse_identical`` is False (``sdhub mv`` keeps every copy); a different file there means the
    next free ``name-2``, ``name-3``... Returns (path, reused).
    """
    if source.parent.resolve() != folder.resolve():
        source = _stage_into(source, folder)
    number = 1
    while True:
        candidate = folder / (name if number == 1 else numbered_name(name, number))
        if candidate.exists():
            if reuse_identical and candidate.is_file() and candidate.stat().st_size == size \
                    and sha256_file(candidate) == sha256:
                source.unlink(missing_ok=True)
                return candidate, True
            number += 1
            continue
        try:
            os.link(source, candidate)  # fails if another process placed a file there meanwhile
        except FileExistsError:
            continue
        except OSError:
            os.rename(source, candidate)  # a file system without hard links
        else:
            source.unlink()
        fsync_directory(folder)
        return candidate, False


def _stage_into(source: Path, folder: Path) -> Path:
    """Bring a file from another folder next to its destination (renamed, or copied across disks)."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / f"{PART_PREFIX}{os.urandom(8).hex()}.part"
    try:
        os.rename(source, staged)
        return staged
    except OSError:
        pass
    try:
        with open(source, "rb") as handle, open(staged, "wb") as out:
            while block := handle.read(READ_BLOCK):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    source.unlink()
    return staged
