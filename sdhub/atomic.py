"""Atomic file output: write to a temporary name in the target folder, fsync, rename.

Every file sdhub places in a library goes through ``atomic_output`` (small files) or the streaming
``.safetensors`` writer, and both take their temporary file from ``create_temp``: a crash, a Ctrl-C
or a refused input never leaves a half-written file under the final name.

A temporary file is named after its target (``.sdhub-tmp-NAME.part``) and locked (``flock``) by its
writer for as long as it writes. A writer killed with ``kill -9`` leaves the file behind but loses
the lock, so ``sdhub clean`` and the next write of the same target can tell a leftover from a file
someone is still writing: the next write takes the leftover's name over, ``clean`` removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

#: Prefix of sdhub's temporary files; scanners ignore names starting with it.
TEMP_PREFIX = ".sdhub-tmp-"
TEMP_SUFFIX = ".part"
#: Bytes of the target's name kept in a temporary name (file names stop at 255 bytes).
_NAME_BUDGET = 200
#: What the streaming writer called its temporary files before ``create_temp``: ``.NAME.XXXXXXXX.part``.
_LEGACY_WRITER_TEMP = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.part$")


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_stem(target: Path) -> str:
    """The start of every temporary name for ``target``: ``.sdhub-tmp-NAME`` (a long NAME is hashed)."""
    name = target.name
    encoded = os.fsencode(name)
    if len(encoded) > _NAME_BUDGET:
        name = hashlib.sha256(encoded).hexdigest()[:32]
    return TEMP_PREFIX + name


def is_temp_name(name: str) -> bool:
    """True for a name sdhub gives its temporary files (today's, and the writer's older ``.NAME.XXXXXXXX.part``)."""
    return name.startswith(TEMP_PREFIX) or _LEGACY_WRITER_TEMP.match(name) is not None


def writer_locks(name: str) -> bool:
    """True when the writer of a temporary file of this name holds a lock on it while it writes.

    Older writers did not: for their leftovers only the age of the file says whether it is stale.
    """
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def claim_if_unlocked(path: Path) -> Iterator[bool]:
    """Yield True, holding the file's lock, when no live process holds it; else yield False.

    While the block runs no sdhub writer can take the file over, so it can be removed safely.
    A file that vanished or cannot be opened yields False (nothing to claim).
    """
    fd = _open_for_lock(path)
    if fd is None:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without locks: nobody can prove it is stale
            yield False
            return
        yield _still_linked(path, fd)
    finally:
        os.close(fd)


def _open_for_lock(path: Path) -> int | None:
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            return os.open(path, flags | os.O_NOFOLLOW)
        except (PermissionError, IsADirectoryError):
            continue
        except OSError:
            return None
    return None


def _still_linked(path: Path, fd: int) -> bool:
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary files an earlier, killed write of ``target`` left; return what was removed."""
    stem, name = temp_stem(target), target.name
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        ours = entry.name == stem + TEMP_SUFFIX or _is_random_variant(entry.name, stem)
        if not (ours or _is_random_variant(entry.name, "." + name)) or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        with claim_if_unlocked(path) as stale:
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def _is_random_variant(name: str, stem: str) -> bool:
    """``STEM.XXXXXXXX.part``, the name ``mkstemp`` gives (8 characters of [a-z0-9_])."""
    return name.startswith(stem) and re.fullmatch(r"\.[a-z0-9_]{8}\.part", name[len(stem):]) is not None


def create_temp(target: Path, *, mode: int = 0o644) -> tuple[int, Path]:
    """Open a locked, empty temporary file next to ``target``; return its descriptor and path.

    The lock lasts until the descriptor is closed (or the process dies). A leftover of an earlier
    write of the same target is taken over; a temporary file another live writer holds is left
    alone and this one gets a name of its own.
    """
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = temp_stem(target)
    path = folder / (stem + TEMP_SUFFIX)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another writer of the same target is at work: use a name of our own
            os.close(fd)
            fd, name = tempfile.mkstemp(prefix=stem + ".", suffix=TEMP_SUFFIX, dir=folder)
            path = Path(name)
            fcntl.flock(fd, fcntl.LOCK_EX)  # only a cleaner can hold it, for the moment it takes to delete it
        if _still_linked(path, fd):
            break
        os.close(fd)  # a cleaner removed it between our open and our lock: start again
        path = folder / (stem + TEMP_SUFFIX)
    try:
        os.ftruncate(fd, 0)
        os.fchmod(fd, mode & ~_UMASK)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd, path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = True, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block finishes without an exception.

    With ``overwrite=False`` an existing ``path`` is never replaced (FileExistsError at the end).
    """
    target = Path(path)
    fd, temp = create_temp(target, mode=mode)
    handle = os.fdopen(fd, "wb")
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        # Renamed (or removed, on failure) while still open and locked: no cleaner and no other
        # writer of the same target can take the temporary name over in between.
        if overwrite:
            os.replace(temp, target)
        else:
            place_without_overwrite(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        handle.close()
    fsync_directory(target.parent)


def place_without_overwrite(temp: Path, target: Path) -> None:
    """Move ``temp`` to ``target`` unless ``target`` exists (then FileExistsError, ``temp`` stays)."""
    try:
        os.link(temp, target)  # fails if target exists, with no window for a race
    except FileExistsError:
        raise
    except OSError:  # filesystems without hard links (FAT, exFAT, some network shares)
        if target.exists():
            raise FileExistsError(f"{target} already exists") from None
        os.replace(temp, target)
        return
    temp.unlink()


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()
