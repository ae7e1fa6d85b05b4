"""Receiving one blob into a home folder: ranged GETs in parallel, written in order to a ``.part`` file while
its SHA-256 is computed; a ``.part`` left by a killed pull is hashed and continued; the bytes must hash to the
blob's name or nothing is kept."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sdhub.errors import NotFoundError, VerificationError
from sdhub.progress import ProgressTask
from sdhub.remote.bucket import Bucket
from sdhub.remote.layout import blob_key
from sdhub.sources.placing import PART_PREFIX, READ_BLOCK

#: Fsync the ``.part`` file after this many bytes, so a resumed pull trusts what a crash left.
SYNC_EVERY = 256 << 20


def part_path(folder: Path, sha256: str) -> Path:
    """The ``.part`` a pull of ``sha256`` into ``folder`` writes (the same name again after a kill)."""
    return folder / f"{PART_PREFIX}pull-{sha256[:32]}.part"


def _missing(bucket: Bucket, key: str) -> NotFoundError:
    return NotFoundError(f"the blob {bucket.remote.key(key)} is missing from the remote {bucket.remote.name}; "
                         "push it again from a machine that has it")


def download_blob(bucket: Bucket, sha256: str, size: int, folder: Path, task: ProgressTask) -> tuple[Path, int]:
    """Fetch the blob into ``folder``'s ``.part`` file, verified; returns (its path, bytes it resumed from)."""
    key = blob_key(sha256)
    folder.mkdir(parents=True, exist_ok=True)
    path = part_path(folder, sha256)
    head = bucket.head(key)
    if head is None:
        raise _missing(bucket, key)
    if head.get("ContentLength") != size:
        raise VerificationError(f"the blob {bucket.remote.key(key)} on the remote {bucket.remote.name} is corrupt: "
                                f"{head.get('ContentLength')} bytes, not the {size} its manifest says; nothing was written")
    part_size = bucket.transfer.part_size
    digest = hashlib.sha256()
    with open(path, "ab+") as handle:
        have = handle.seek(0, os.SEEK_END)
        start = min(have - have % part_size, size)
        handle.seek(0)
        remaining = start
        while remaining:  # what an earlier pull received: hashed again, not fetched again
            block = handle.read(min(READ_BLOCK, remaining))
            digest.update(block)
            remaining -= len(block)
        handle.truncate(start)
        handle.seek(start)
        task.advance(start)
        try:
            _receive(bucket, key, handle, digest, start, size, part_size, task)
            handle.flush()
            os.fsync(handle.fileno())
        except VerificationError:
            handle.close()
            path.unlink(missing_ok=True)
            raise
        except BaseException:
            handle.flush()  # keep what arrived whole: the next pull continues from it
            raise
    if digest.hexdigest() != sha256 or path.stat().st_size != size:
        path.unlink(missing_ok=True)
        raise VerificationError(f"the blob {bucket.remote.key(key)} on the remote {bucket.remote.name} is corrupt: its "
                                f"bytes hash to {digest.hexdigest()[:16]}..., not its name; nothing was written")
    return path, start


def _receive(bucket: Bucket, key: str, handle, digest, start: int, size: int, part_size: int,  # noqa: ANN001
             task: ProgressTask) -> None:
    def fetch(offset: int) -> bytes:
        found = bucket.get_bytes(key, (offset, min(offset + part_size, size) - 1))
        if found is None:
            raise _missing(bucket, key)
        return found[0]

    offsets = list(range(start, size, part_size))
    window = bucket.transfer.connections
    since_sync = 0
    # One part is hashed in its own thread while the next is written (both release the GIL): the parts arrive in
    # parallel, so this one thread's write-then-hash was what a pull waited on.
    hashed: Future[None] | None = None
    with ThreadPoolExecutor(window, thread_name_prefix="sdhub-pull") as pool, \
            ThreadPoolExecutor(1, thread_name_prefix="sdhub-pull-hash") as hasher:
        futures: list[Future[bytes]] = [pool.submit(fetch, offset) for offset in offsets[:window]]
        following = window
        try:
            for offset in offsets:
                data = futures.pop(0).result()
                if following < len(offsets):
                    futures.append(pool.submit(fetch, offsets[following]))
                    following += 1
                expected = min(part_size, size - offset)
                if len(data) != expected:
                    raise VerificationError(f"the blob {bucket.remote.key(key)} on the remote {bucket.remote.name} "
                                            f"is {'shorter' if len(data) < expected else 'longer'} than its manifest "
                                            "says; nothing was written")
                if hashed is not None:
                    hashed.result()
                hashed = hasher.submit(digest.update, data)
                handle.write(data)
                since_sync += len(data)
                if since_sync >= SYNC_EVERY:
                    handle.flush()
                    os.fsync(handle.fileno())
                    since_sync = 0
                task.advance(len(data))
            if hashed is not None:
                hashed.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
