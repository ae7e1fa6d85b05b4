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
#: Received chunks waiting to be hashed from memory (each up to one read); beyond that, read back.
HASH_QUEUE_CHUNKS = 64
#: Chunks from parallel connections kept in memory until the bytes before them are hashed.
HASH_PARKED_CHUNKS = 96
#: How far the written prefix may run ahead of the hash before the gap is read back from the file:
#: beyond what the queue and the parked chunks can hold, so bytes on their way are not read twice.
HASH_READBACK_LAG = (HASH_QUEUE_CHUNKS + HASH_PARKED_CHUNKS + 8) << 20
#: The file is flushed to disk each time this much more has been hashed.
SYNC_EVERY_BYTES = 128 << 20


class PrefixHasher(threading.Thread):
    """SHA-256 of the file's contiguous written prefix, kept up to date while the download goes on.

    It runs beside the connections, so hashing costs no time on a machine with a spare core.
    Bytes handed over (``feed``) are hashed from memory, in order, parking chunks that arrive early;
    anything else (a resumed prefix, chunks that did not fit among the parked ones) is read back
    from the file once the bytes before it are written. It also flushes the file to disk as it goes, so the
    fsync before the final rename is short.
    """

    def __init__(self, path: Path, frontier: Callable[[], int]) -> None:
        super().__init__(daemon=True, name="sdhub-hash")
        self._fd = os.open(path, os.O_RDONLY)
        self._frontier = frontier
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, int, bytes]] = queue.Queue(maxsize=HASH_QUEUE_CHUNKS)
        self._generation = 0  # bumped by restart(): chunks queued before it are stale
        self._parked: dict[int, bytes] = {}  # chunks offered ahead of the hashed prefix
        self._digest = hashlib.sha256()
        self._position = 0
        self._synced = 0
        self._final: int | None = None
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def feed(self, offset: int, data: bytes) -> None:
        """Hand over bytes just written at ``offset``; waits while the hash is far behind.

        Waiting (rather than leaving the bytes to be read back later) keeps the total work at one
        pass over the data; if the hashing thread has stopped, nothing waits for it.
        """
        item = (self._generation, offset, data)
        while self.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read_back(self, limit: int) -> None:
        while self._position < limit:
            block = os.pread(self._fd, min(HASH_BLOCK, limit - self._position), self._position)
            if not block:
                raise OSError("the .part file is shorter than the bytes written to it")
            self._digest.update(block)
            self._position += len(block)

    def _take(self, offset: int, data: bytes) -> None:
        """Hash or park one offered chunk, then hash every parked chunk that now continues the prefix."""
        if offset >= self._position and len(self._parked) < HASH_PARKED_CHUNKS:
            self._parked[offset] = data
        while (chunk := self._parked.pop(self._position, None)) is not None:
            self._digest.update(chunk)
            self._position += len(chunk)

    def _catch_up(self, idle: bool) -> None:
        """Read back written bytes that were not offered (or not kept) once they are clearly missing."""
        frontier = self._frontier()
        if self._position < frontier and (idle or frontier - self._position > HASH_READBACK_LAG):
            following = min((o for o in self._parked if o > self._position), default=frontier)
            self._read_back(min(following, frontier))
            self._take(-1, b"")
        for offset in [o for o in self._parked if o < self._position]:
            del self._parked[offset]

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                try:
                    generation, offset, data = self._queue.get(timeout=0.02)
                except queue.Empty:
                    generation, offset, data = -1, -1, b""
                with self._lock:
                    if generation == self._generation:
                        self._take(offset, data)
                    self._catch_up(idle=generation == -1)
                    position = self._position
                    if self._final is not None and position >= self._final:
                        return
                if position - self._synced >= SYNC_EVERY_BYTES:
                    os.fdatasync(self._fd)
                    self._synced = position
        except BaseException as error:  # reported to the downloader, which raises it
            self.error = error

    def restart(self) -> None:
        with self._lock:
            self._digest = hashlib.sha256()
            self._position = 0
            self._synced = 0
            self._generation += 1
            self._parked.clear()

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
