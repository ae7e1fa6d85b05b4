"""A SHA-256 of a file that is being written, computed while the bytes arrive.

The downloader writes a ``.part`` file from one or several connections; this hasher keeps the
hash of its contiguous written prefix up to date, from memory when it can and from the file
when it must, so the hash is ready (and checked) the moment the last byte lands.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import Callable

#: How much is read back from the file at once.
HASH_BLOCK = 8 << 20
#: Chunks handed over and waiting to be hashed; beyond that, ``feed`` waits.
HASH_QUEUE_CHUNKS = 64
#: Bytes from parallel connections copied and kept in memory until the bytes before them are hashed.
HASH_PARKED_BYTES = 96 << 20
#: How far the written prefix may run ahead of the hash before the gap is read back from the file:
#: beyond what the parked chunks can hold, so bytes on their way are not read twice.
HASH_READBACK_LAG = HASH_PARKED_BYTES + (32 << 20)

Release = Callable[[], None]


def _nothing() -> None:
    pass


class PrefixHasher(threading.Thread):
    """SHA-256 of the file's contiguous written prefix, kept up to date while the download goes on.

    It runs beside the connections, so hashing costs no time on a machine with a spare core.
    Bytes handed over (``feed``) are hashed from the caller's buffer, in order; a chunk that
    arrives early is copied and parked; anything else (a resumed prefix, chunks that did not fit
    among the parked ones) is read back from the file once the bytes before it are written.
    """

    def __init__(self, path: Path, frontier: Callable[[], int]) -> None:
        super().__init__(daemon=True, name="sdhub-hash")
        self._fd = os.open(path, os.O_RDONLY)
        self._frontier = frontier
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, int, memoryview, Release]] = queue.Queue(maxsize=HASH_QUEUE_CHUNKS)
        self._generation = 0  # bumped by restart(): chunks queued before it are stale
        self._parked: dict[int, bytes] = {}  # copies of chunks offered ahead of the hashed prefix
        self._parked_bytes = 0
        self._digest = hashlib.sha256()
        self._position = 0
        self._final: int | None = None
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def feed(self, offset: int, data: bytes | memoryview, release: Release = _nothing) -> None:
        """Hand over bytes just written at ``offset``; waits while the hash is far behind.

        ``release`` is called (from the hashing thread) once ``data`` is no longer needed, so the
        caller can reuse its buffer. Waiting (rather than leaving the bytes to be read back later)
        keeps the total work at one pass over the data; if the hashing thread has stopped, nothing
        waits for it.
        """
        item = (self._generation, offset, memoryview(data), release)
        while self.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        release()

    def _read_back(self, limit: int) -> None:
        while self._position < limit:
            block = os.pread(self._fd, min(HASH_BLOCK, limit - self._position), self._position)
            if not block:
                raise OSError("the .part file is shorter than the bytes written to it")
            self._digest.update(block)
            self._position += len(block)

    def _take(self, offset: int, data: memoryview) -> None:
        """Hash or park one offered chunk, then hash every parked chunk that now continues the prefix."""
        if offset == self._position:
            self._digest.update(data)
            self._position += len(data)
        elif offset > self._position and self._parked_bytes + len(data) <= HASH_PARKED_BYTES:
            self._parked[offset] = bytes(data)
            self._parked_bytes += len(data)
        while (chunk := self._parked.pop(self._position, None)) is not None:
            self._parked_bytes -= len(chunk)
            self._digest.update(chunk)
            self._position += len(chunk)

    def _catch_up(self, idle: bool) -> None:
        """Read back written bytes that were not offered (or not kept) once they are clearly missing."""
        frontier = self._frontier()
        if self._position < frontier and (idle or frontier - self._position > HASH_READBACK_LAG):
            following = min((o for o in self._parked if o > self._position), default=frontier)
            self._read_back(min(following, frontier))
            self._take(-1, memoryview(b""))
        for offset in [o for o in self._parked if o < self._position]:
            self._parked_bytes -= len(self._parked.pop(offset))

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                try:
                    generation, offset, data, release = self._queue.get(timeout=0.02)
                except queue.Empty:
                    generation, offset, data, release = -1, -1, memoryview(b""), _nothing
                try:
                    with self._lock:
                        if generation == self._generation:
                            self._take(offset, data)
                        self._catch_up(idle=generation == -1)
                        if self._final is not None and self._position >= self._final:
                            return
                finally:
                    release()
        except BaseException as error:  # reported to the downloader, which raises it
            self.error = error
        finally:
            while not self._queue.empty():  # hand back the buffers of chunks nobody will hash now
                self._queue.get_nowait()[3]()

    def restart(self) -> None:
        with self._lock:
            self._digest = hashlib.sha256()
            self._position = 0
            self._generation += 1
            self._parked.clear()
            self._parked_bytes = 0

    def finish(self, total: int) -> str:
        with self._lock:
            self._final = total
        self.join()
        os.close(self._fd)
        if self.error is not None:
            raise self.error
        return self._digest.hexdigest()

    def abandon(self) -> None:
        self._halt.set()
        self.join()
        os.close(self._fd)
