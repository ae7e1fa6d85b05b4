"""Atomic file output: write to a temporary name in the target folder, fsync, rename.

Every file sdhub places in a library goes through ``atomic_output`` so that a crash, a Ctrl-C or
a refused input never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

#: Prefix of sdhub's temporary files; scanners ignore names starting with it.
TEMP_PREFIX = ".sdhub-tmp-"


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = True, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block finishes without an exception.

    With ``overwrite=False`` an existing ``path`` is never replaced (FileExistsError at the end).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=target.parent)
    temp = Path(temp_name)
    try:
        os.fchmod(fd, mode & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temp, target)
        else:
            _place_without_overwrite(temp, target)
        fsync_directory(target.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _place_without_overwrite(temp: Path, target: Path) -> None:
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
