"""The hash of a file being written in any order equals the hash of the finished file."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

from sdhub.sources.prefix_hash import PrefixHasher

CHUNK = 64 * 1024


class Writer:
    """Writes chunks of ``data`` into ``path`` and knows the contiguous written prefix."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.data = data
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT)
        self.written: set[int] = set()
        self.lock = threading.Lock()

    def write(self, offset: int) -> bytes:
        chunk = self.data[offset:offset + CHUNK]
        os.pwrite(self.fd, chunk, offset)
        with self.lock:
            self.written.add(offset)
        return chunk

    def frontier(self) -> int:
        with self.lock:
            position = 0
            while position in self.written and position < len(self.data):
                position += CHUNK
            return min(position, len(self.data))


def _hash_while_writing(tmp_path: Path, order: list[int], offer: float, seed: int = 0) -> str:
    data = random.Random(seed).randbytes(CHUNK * 40 + 123)
    path = tmp_path / "file.part"
    path.write_bytes(b"")
    writer = Writer(path, data)
    hasher = PrefixHasher(path, writer.frontier)
    hasher.start()
    chooser = random.Random(seed + 1)
    offered, released = [], []
    for offset in order:
        chunk = writer.write(offset)
        if chooser.random() < offer:
            offered.append(offset)
            hasher.feed(offset, chunk, lambda offset=offset: released.append(offset))
    digest = hasher.finish(len(data))
    os.close(writer.fd)
    assert digest == hashlib.sha256(data).hexdigest()
    # Every buffer handed over comes back to its owner, hashed, parked as a copy, or left to be read back.
    assert sorted(released) == sorted(offered)
    return digest


def offsets() -> list[int]:
    return list(range(0, CHUNK * 41, CHUNK))


def test_in_order_chunks_hash_from_memory(tmp_path: Path) -> None:
    _hash_while_writing(tmp_path, offsets(), offer=1.0)


def test_chunks_never_offered_are_read_back(tmp_path: Path) -> None:
    _hash_while_writing(tmp_path, offsets(), offer=0.0)


def test_out_of_order_chunks_some_offered(tmp_path: Path) -> None:
    for seed in range(5):
        order = offsets()
        random.Random(seed).shuffle(order)
        folder = tmp_path / str(seed)
        folder.mkdir()
        _hash_while_writing(folder, order, offer=0.6, seed=seed)


def test_interleaved_blocks_like_parallel_connections(tmp_path: Path) -> None:
    blocks = [offsets()[i:i + 10] for i in range(0, 41, 10)]
    interleaved = [block[i] for i in range(10) for block in blocks if i < len(block)]
    _hash_while_writing(tmp_path, interleaved, offer=1.0)


def test_a_restart_forgets_what_was_hashed(tmp_path: Path) -> None:
    old = b"x" * (CHUNK * 3)
    new = random.Random(3).randbytes(CHUNK * 5)
    path = tmp_path / "file.part"
    path.write_bytes(b"")
    writer = Writer(path, old)
    hasher = PrefixHasher(path, writer.frontier)
    hasher.start()
    for offset in range(0, len(old), CHUNK):
        hasher.feed(offset, writer.write(offset))
    hasher.restart()
    os.ftruncate(writer.fd, 0)
    with writer.lock:
        writer.written.clear()
    writer.data = new
    for offset in range(0, len(new), CHUNK):
        hasher.feed(offset, writer.write(offset))
    assert hasher.finish(len(new)) == hashlib.sha256(new).hexdigest()
    os.close(writer.fd)
