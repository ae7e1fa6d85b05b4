"""Buffers handed between threads: a fixed set of page-aligned buffers, each reused once every holder
lets go, and the worker threads they are handed to.

The streaming writer and the hashing reader both fill a buffer in one thread and hand it to others
(a writing thread, hashing lanes); the buffer comes back to the pool when the last of them releases
it, so memory stays at ``count * size`` however large the file.
"""

from __future__ import annotations

import mmap
import queue
import threading
from typing import Callable

from sdhub.sources.part_file import new_buffer


class BufferPool:
    """``count`` buffers of ``size`` bytes, made on first use; ``take`` waits for a free one."""

    def __init__(self, count: int, size: int) -> None:
        self._size = size
        self._buffers: list[mmap.mmap | None] = [None] * count
        self._holds = [0] * count
        self._lock = threading.Lock()
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(count):
            self._free.put(slot)

    def buffer(self, slot: int) -> mmap.mmap:
        """The slot's buffer (a pool whose slots only count hand-offs never makes one)."""
        made = self._buffers[slot]
        if made is None:
            made = self._buffers[slot] = new_buffer(self._size)
        return made

    def take(self, check: Callable[[], None] | None = None) -> int:
        """A free slot, held once by the caller. ``check`` runs while waiting and may raise: a failed
        worker would never give its buffer back."""
        while True:
            try:
                slot = self._free.get(timeout=0.2)
            except queue.Empty:
                if check is not None:
                    check()
                continue
            self._holds[slot] = 1
            return slot

    def hold(self, slot: int, times: int = 1) -> None:
        """Another ``times`` holders of ``slot`` (threads it is handed to), each to ``release`` it."""
        with self._lock:
            self._holds[slot] += times

    def release(self, slot: int) -> None:
        """One holder is done with ``slot``; the last one puts it back in the pool."""
        with self._lock:
            self._holds[slot] -= 1
            done = self._holds[slot] == 0
        if done:
            self._free.put(slot)


class Worker(threading.Thread):
    """Runs the jobs it is given in order; after a failure it only releases what they held."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True, name=name)
        self.inbox: queue.SimpleQueue[tuple[Callable[[], None], Callable[[], None]] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None

    def submit(self, job: Callable[[], None], release: Callable[[], None]) -> None:
        self.inbox.put((job, release))

    def run(self) -> None:
        while (item := self.inbox.get()) is not None:
            job, release = item
            try:
                if self.error is None:
                    job()
            except BaseException as error:  # raised again by the thread that submitted the job
                self.error = error
            finally:
                release()

    def stop(self) -> None:
        self.inbox.put(None)
        self.join()
