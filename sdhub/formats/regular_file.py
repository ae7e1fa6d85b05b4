"""``open_regular_file``: the one way sdhub opens a model file for reading.

A FIFO, socket or device named like a model (``x.ckpt``) would block the open or stream
forever, so anything but a regular file is refused by its type before it is opened, and the
open itself cannot block should the path be swapped for a FIFO in between.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from sdhub.errors import BadInputError, MissingFileError, UsageError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened unbuffered for reading; refused up front unless it is a regular file."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise _open_error(path, error) from None
    _check_regular(path, mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise _open_error(path, error) from None
    try:
        _check_regular(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def irregular_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is when it is not a regular file ("a FIFO (named pipe)"), else None."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _check_regular(path: Path, mode: int) -> None:
    kind = irregular_kind(mode)
    if kind == "a folder":
        raise UsageError(f"{path} is a folder, not a model file")
    if kind is not None:
        raise UsageError(f"{path} is {kind}; refusing to read it (model files are regular files)")


def _open_error(path: Path, error: OSError) -> Exception:
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        return MissingFileError(f"{path}: no such file")
    if isinstance(error, IsADirectoryError):
        return UsageError(f"{path} is a folder, not a model file")
    if isinstance(error, PermissionError):
        return UsageError(f"{path}: permission denied")
    return BadInputError(f"{path}: cannot be read ({error.strerror or error})")
