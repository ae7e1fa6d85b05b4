"""The ``.part`` file a download writes into: whole blocks go straight to the disk.

A download's bytes are read once more at most (to catalogue the file), so keeping them in the
page cache buys little and costs a copy per byte, fresh cache pages for every byte, and a long
fsync at the end. Where the file system supports it (``O_DIRECT``), whole
aligned blocks are written directly from the download's buffers, and the final fsync has almost
nothing left to do. Anything else (a piece that is not aligned, a file system without direct
I/O) goes through the page cache, with its write-back started at once.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

#: Offsets, lengths and buffer addresses of direct writes are multiples of this (a page, which
#: also covers disks with 512-byte and 4 KiB sectors).
DIRECT_ALIGNMENT = 4096
#: Bytes written through the cache are dropped from it this far behind the write (by then on disk).
WRITEBACK_LAG = 32 << 20


def new_buffer(size: int) -> mmap.mmap:
    """A receive buffer whose memory starts on a page boundary, as direct writes need."""
    return mmap.mmap(-1, size)


class PartFile:
    """A file written at any offset by several threads (``pwrite``), directly to disk when it can."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._direct_fd = -1
        if hasattr(os, "O_DIRECT"):
            try:
                self._direct_fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
            except OSError:
                pass  # e.g. tmpfs: this file system has no direct I/O

    def write(self, data: memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``.

        ``data`` should start at the beginning of a ``new_buffer``: then, at an aligned offset,
        its whole blocks are written directly and only a short unaligned tail is cached.
        """
        direct_length = len(data) - len(data) % DIRECT_ALIGNMENT
        if self._direct_fd >= 0 and offset % DIRECT_ALIGNMENT == 0 and direct_length:
            try:
                _pwrite_all(self._direct_fd, data[:direct_length], offset)
                data, offset = data[direct_length:], offset + direct_length
            except OSError as error:
                if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                # The file system accepted O_DIRECT but not these writes: use the page cache from now on.
                self._close_direct()
        if data:
            _pwrite_all(self.fd, data, offset)
            _advise_done_with(self.fd, offset, len(data))
            if offset >= WRITEBACK_LAG:
                _advise_done_with(self.fd, offset - WRITEBACK_LAG, len(data))

    def truncate(self) -> None:
        """Throw away everything written (the server is sending the whole file again)."""
        os.ftruncate(self.fd, 0)

    def sync(self) -> None:
        """Make the written bytes durable (fsync)."""
        os.fsync(self.fd)

    def close(self) -> None:
        self._close_direct()
        os.close(self.fd)

    def _close_direct(self) -> None:
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _advise_done_with(fd: int, offset: int, length: int) -> None:
    """Tell the kernel these cached bytes will not be read again.

    On Linux, DONTNEED starts the write-back of dirty pages in the range and drops the pages
    already written: called once right after a write and once ``WRITEBACK_LAG`` later, it keeps
    the cache from growing, so pages are recycled rather than freshly allocated, and the final
    fsync has little left to do.
    """
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
