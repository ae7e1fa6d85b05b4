"""The one streaming ``.safetensors`` writer that convert, prune and cast share.

The header is computed from tensor descriptions first; then the file is written front to back
in large page-aligned blocks. Bytes that are copied unchanged are read straight from the
source into a block, elementwise transforms (casts) run over reused buffers in chunks, and
anything else is produced one tensor at a time. A second thread writes full blocks directly to
the disk where the file system allows; a third feeds the source's SHA-256 from the same
buffers, so the source is read exactly once. Output goes to a temporary file in the target
folder, is fsynced and renamed into place; on any error or interrupt it is removed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from sdhub.atomic import create_temp, fsync_directory, place_without_overwrite, remove_stale_temps
from sdhub.errors import SdhubError, UsageError
from sdhub.formats.dtypes import DTYPES, dtype_name, torch_dtype
from sdhub.progress import NULL_PROGRESS, Progress, check_cancelled
from sdhub.buffer_pool import BufferPool, Worker
from sdhub.sources.part_file import DIRECT_ALIGNMENT, PartFile

# Casts work in 2 MiB pieces that stay in the CPU's cache: pruning a 7.7 GB checkpoint to fp16 took
# 2.9 s with them against 3.9 s with 16 MiB pieces (2-core VM).
_CHUNK_BYTES = 2 * 1024 * 1024
#: Source chunks of casts that may wait for the hashing thread at once.
_CHUNK_COUNT = 4
# Output blocks: one filled while the other is hashed and written (128 MiB in all). ext4 lets one
# direct write into new blocks of a file run at a time, so each must be large enough to keep the
# disk's queue full: on a 2-core ext4 VM, 8 MiB writes ran at 280-390 MB/s, 32 MiB at 360-550, 64 MiB
# at 500-610. A third block made no difference to convert's time (4.3 GB: 4.1-4.4 s either way on an
# AMD EPYC VM) and cost prune 64 MiB more than its 512 MB budget allowed beside torch.
_BLOCK_BYTES = 64 * 1024 * 1024
_BLOCK_COUNT = 2
assert _BLOCK_BYTES % DIRECT_ALIGNMENT == 0


class SourceDigest(Protocol):
    """A hash of one source file fed by the writer with the bytes it reads from that file.

    ``feed`` is called from one thread, in the order the writer reads; the digest reads what it
    was not given (gaps, bytes read out of order) itself.
    """

    def wanted(self) -> bool: ...

    def same_file(self, fd: int) -> bool: ...

    def feed(self, offset: int, data: memoryview) -> None: ...


@dataclass(frozen=True)
class RawSource:
    """Contiguous little-endian tensor bytes inside an open file."""

    fd: int
    offset: int
    nbytes: int
    dtype: str


@dataclass
class TensorSpec:
    """One output tensor: its name, dtype and shape, and how to get its data.

    Either ``producer`` returns the tensor (one at a time, so memory holds one tensor), or
    ``raw`` points at its bytes in a file, optionally passed through ``transform`` (an
    elementwise function such as a cast, applied chunk by chunk).
    """

    name: str
    dtype: Any
    shape: tuple[int, ...]
    producer: Callable[[], Any] | None = None
    raw: RawSource | None = None
    transform: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        self.dtype_name = dtype_name(self.dtype)
        self.nbytes = math.prod(self.shape) * DTYPES[self.dtype_name].itemsize


@dataclass(frozen=True)
class DeferredValue:
    """A metadata value known only after the tensors are written (the source's SHA-256).

    The header reserves ``width`` characters for it; ``resolve()`` must return that many.
    """

    width: int
    resolve: Callable[[], str]


def write_safetensors(path: str | os.PathLike[str], tensors: list[TensorSpec],
                      metadata: dict[str, Any] | None = None, progress: Progress = NULL_PROGRESS,
                      *, overwrite: bool = True, source_digest: SourceDigest | None = None) -> Path:
    """Write ``tensors`` to ``path`` atomically, one tensor at a time; return the final path.

    ``source_digest`` (the source's SHA-256 for the metadata) is fed every byte read from its
    file on the way through, so the source is read once, not once more by a hashing thread.
    """
    final = Path(path)
    metadata = dict(metadata or {})
    ordered = _layout_order(tensors)
    header = _header(ordered, metadata, deferred_placeholder=True)
    total = sum(spec.nbytes for spec in ordered)
    if not overwrite and final.exists():
        raise UsageError(f"{final} already exists (use --overwrite to replace it)")
    try:
        # The leftovers of an earlier, killed write of this file are removed first: they are gigabytes.
        remove_stale_temps(final)
        fd, temp = create_temp(final, mode=0o666)  # a model file is as readable as any other
    except OSError as error:
        raise UsageError(f"cannot write into {final.parent}: {error.strerror or error}") from None
    task = progress.task(f"Writing {final.name}", total=total, unit="bytes")
    stream: _Stream | None = None
    try:
        _check_free_space(fd, final, len(header) + total)
        stream = _Stream(temp, source_digest)
        stream.append(header)
        uses_torch = any(s.transform is not None or s.producer is not None for s in ordered)
        with _one_torch_thread() if uses_torch else contextlib.nullcontext():
            for spec in ordered:
                _write_tensor(stream, spec, task)
        stream.finish()
        if any(isinstance(v, DeferredValue) for v in metadata.values()):
            final_header = _header(ordered, metadata, deferred_placeholder=False)
            if len(final_header) != len(header):
                raise SdhubError("internal error: deferred metadata changed the header size")
            _write_all(fd, final_header, 0)
        check_cancelled(progress)  # a stop that came while nothing reported still leaves no output
        os.fsync(fd)
        _publish(temp, final, overwrite)  # while the temporary file is still open and locked
        os.close(fd)
        fd = -1
    except BaseException as error:
        if stream is not None:
            stream.abandon()
        if fd >= 0:
            temp.unlink(missing_ok=True)  # before closing: the lock keeps others off the name
            os.close(fd)
        if isinstance(error, OSError):
            raise SdhubError(f"cannot write {final}: {error.strerror or error}") from None
        raise
    finally:
        task.finish()
    return final


def _layout_order(tensors: list[TensorSpec]) -> list[TensorSpec]:
    names = set()
    for spec in tensors:
        if spec.name in names:
            raise UsageError(f"tensor {spec.name!r} is listed twice")
        if spec.name == "__metadata__" or not isinstance(spec.name, str):
            raise UsageError(f"{spec.name!r} cannot be a tensor name")
        names.add(spec.name)
        if (spec.producer is None) == (spec.raw is None):
            raise UsageError(f"tensor {spec.name!r} needs exactly one of producer or raw")
        if any(type(d) is not int or d < 0 for d in spec.shape):
            raise UsageError(f"tensor {spec.name!r} has an invalid shape {spec.shape}")
    # Wider elements first keeps every tensor aligned to its element size.
    return sorted(tensors, key=lambda s: -DTYPES[s.dtype_name].itemsize)


def _header(ordered: list[TensorSpec], metadata: dict[str, Any], deferred_placeholder: bool) -> bytes:
    values: dict[str, str] = {}
    for key, value in metadata.items():
        if isinstance(value, DeferredValue):
            value = "0" * value.width if deferred_placeholder else value.resolve()
            if len(value) != metadata[key].width:
                raise SdhubError(f"internal error: metadata {key!r} is not {metadata[key].width} characters")
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageError(f"metadata {key!r} must be text")
        values[key] = value
    entries: dict[str, Any] = {}
    if values:
        entries["__metadata__"] = values
    offset = 0
    for spec in ordered:
        entries[spec.name] = {"dtype": spec.dtype_name, "shape": list(spec.shape),
                              "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded while writing.

    Casting cache-sized pieces gains nothing from torch's thread pool, and its idle workers spin
    on the cores the source's background SHA-256 needs (convert and prune hash while writing):
    pruning a 7.7 GB checkpoint took 10.2 s with two torch threads and 8.3 s with one, casts of
    small tensors ran 3x slower (2-core VM).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _write_all(fd: int, data: Any, position: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, position)
        view = view[written:]
        position += written


def _write_tensor(stream: _Stream, spec: TensorSpec, task: Any) -> None:
    if spec.raw is not None and spec.transform is None:
        if spec.raw.dtype != spec.dtype_name or spec.raw.nbytes != spec.nbytes:
            raise UsageError(f"tensor {spec.name!r}: source bytes do not match its dtype and shape")
        stream.copy(spec.raw.fd, spec.raw.offset, spec.nbytes, task)
    elif spec.raw is not None:
        _write_transformed(stream, spec, task)
    else:
        tensor = spec.producer()
        _check_tensor(spec, tensor)
        stream.append(_tensor_bytes(tensor))
        task.advance(spec.nbytes)


def _check_tensor(spec: TensorSpec, tensor: Any) -> None:
    if dtype_name(tensor.dtype) != spec.dtype_name or tuple(tensor.shape) != tuple(spec.shape):
        raise SdhubError(f"internal error: tensor {spec.name!r} came out as {tensor.dtype} "
                         f"{tuple(tensor.shape)}, expected {spec.dtype_name} {tuple(spec.shape)}")


def _tensor_bytes(tensor: Any) -> memoryview:
    import torch

    flat = tensor.detach().reshape(-1).contiguous()
    if flat.device.type != "cpu":
        flat = flat.cpu()
    return memoryview(flat.view(torch.uint8).numpy())


def _write_transformed(stream: _Stream, spec: TensorSpec, task: Any) -> None:
    import torch

    raw = spec.raw
    source_item = DTYPES[raw.dtype].itemsize
    total = raw.nbytes // source_item
    if math.prod(spec.shape) != total:
        raise UsageError(f"tensor {spec.name!r}: source bytes do not match its shape")
    per_chunk = max(1, _CHUNK_BYTES // source_item)
    source_dtype = torch_dtype(raw.dtype)
    out_dtype = torch_dtype(spec.dtype_name)
    out_item = DTYPES[spec.dtype_name].itemsize
    done = 0
    while done < total:
        count = min(per_chunk, total - done)
        # Read into one of a few reused buffers (on this kind of VM copying from the page cache is
        # cheaper than faulting in a fresh mapping or fresh memory for every chunk), which the
        # source's digest also takes its bytes from.
        with stream.read_source(raw.fd, raw.offset + done * source_item, count * source_item) as chunk_bytes:
            chunk = torch.frombuffer(chunk_bytes, dtype=source_dtype, count=count)
            result = spec.transform(chunk)
            if result.dtype != out_dtype or result.numel() != count:
                raise SdhubError(f"internal error: transform of {spec.name!r} changed its shape or dtype")
            stream.append(_tensor_bytes(result))
            del chunk, result
        done += count
        task.advance(count * out_item)


def _check_free_space(fd: int, final: Path, size: int) -> None:
    """Refuse at once when the file system has no room for the output, instead of after gigabytes.

    A check, not ``posix_fallocate``: preallocated (unwritten) extents cost ext4 and XFS a
    conversion for every direct write that lands in them.
    """
    try:
        stats = os.fstatvfs(fd)
    except OSError:
        return
    free = stats.f_bavail * stats.f_frsize
    if stats.f_frsize and free < size:
        raise SdhubError(f"cannot write {final}: {size / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free "
                         f"on that disk")


class _Stream:
    """The output file written front to back in large page-aligned blocks.

    The caller fills a block (source bytes are read straight into it); a writing thread writes
    full blocks directly to the disk where the file system allows (``O_DIRECT``), so there is no
    second copy into the page cache, no dirty pages to throttle on, and the final fsync has
    almost nothing left; a hashing thread feeds the source's digest from the same buffers.
    """

    def __init__(self, temp: Path, digest: SourceDigest | None) -> None:
        self._file = PartFile(temp)
        self._blocks = BufferPool(_BLOCK_COUNT, _BLOCK_BYTES)
        self._chunks: BufferPool | None = None
        self._digest = digest if digest is not None and digest.wanted() else None
        self._from_source: dict[int, bool] = {}
        self._writer = Worker("sdhub-write")
        self._writer.start()
        self._hasher: Worker | None = None
        if self._digest is not None:
            self._hasher = Worker("sdhub-sha256")
            self._hasher.start()
        self._slot = -1
        self._filled = 0
        self._position = 0  # output offset of the current block
        self._closed = False

    def _check(self) -> None:
        for worker in (self._writer, self._hasher):
            if worker is not None and worker.error is not None:
                raise worker.error

    def _space(self) -> memoryview:
        """The unfilled part of the current block (a fresh block when it is full)."""
        if self._slot >= 0 and self._filled == _BLOCK_BYTES:
            self._submit()
        if self._slot < 0:
            self._slot = self._blocks.take(self._check)
            self._filled = 0
        return memoryview(self._blocks.buffer(self._slot))[self._filled:]

    def _submit(self) -> None:
        slot, length, position = self._slot, self._filled, self._position
        view = memoryview(self._blocks.buffer(slot))[:length]
        self._writer.submit(lambda: self._file.write(view, position), lambda: self._blocks.release(slot))
        self._position += length
        self._slot = -1

    def _hashes(self, fd: int) -> bool:
        if self._digest is None:
            return False
        if fd not in self._from_source:
            self._from_source[fd] = self._digest.same_file(fd)
        return self._from_source[fd]

    def _feed(self, pool: BufferPool, slot: int, offset: int, view: memoryview) -> None:
        pool.hold(slot)
        digest = self._digest
        self._hasher.submit(lambda: digest.feed(offset, view), lambda: pool.release(slot))

    def append(self, data: Any) -> None:
        """Append bytes (a header, a produced or cast tensor) to the output."""
        data = memoryview(data).cast("B")
        while data:
            space = self._space()
            step = min(len(space), len(data))
            space[:step] = data[:step]
            self._filled += step
            data = data[step:]

    def copy(self, fd: int, offset: int, count: int, task: Any) -> None:
        """Append ``count`` bytes of the file ``fd`` from ``offset``, read straight into the blocks."""
        hashed = self._hashes(fd)
        while count:
            space = self._space()
            step = min(len(space), count)
            got = os.preadv(fd, [space[:step]], offset)
            if got <= 0:
                raise SdhubError("the source file ended early (was it changed while converting?)")
            if hashed:
                self._feed(self._blocks, self._slot, offset, space[:got])
            self._filled += got
            offset += got
            count -= got
            task.advance(got)

    @contextlib.contextmanager
    def read_source(self, fd: int, offset: int, count: int) -> Iterator[Any]:
        """``count`` bytes of ``fd`` from ``offset`` in a reused buffer, for a transform to read."""
        if self._chunks is None:
            self._chunks = BufferPool(_CHUNK_COUNT, _CHUNK_BYTES)
        slot = self._chunks.take(self._check)
        try:
            buffer = self._chunks.buffer(slot)
            view = memoryview(buffer)[:count]
            got = os.preadv(fd, [view], offset)
            if got != count:
                raise SdhubError("the source file ended early (was it changed while converting?)")
            if self._hashes(fd):
                self._feed(self._chunks, slot, offset, view)
            yield buffer
        finally:
            self._chunks.release(slot)

    def finish(self) -> None:
        """Write the last block and wait for both threads; raise what stopped either."""
        if self._slot >= 0 and self._filled:
            self._submit()
        self._stop()
        self._check()

    def abandon(self) -> None:
        """Stop the threads after a failure (what they were still given is released, not done)."""
        if self._writer.error is None:
            self._writer.error = SdhubError("abandoned")
        if self._hasher is not None and self._hasher.error is None:
            self._hasher.error = SdhubError("abandoned")
        self._stop()

    def _stop(self) -> None:
        for worker in (self._writer, self._hasher):
            if worker is not None and worker.is_alive():
                worker.stop()
        if not self._closed:
            self._closed = True
            self._file.close()


def _publish(temp: Path, final: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, final)
    else:
        try:
            place_without_overwrite(temp, final)
        except FileExistsError:
            raise UsageError(f"{final} already exists (use --overwrite to replace it)") from None
    fsync_directory(final.parent)
