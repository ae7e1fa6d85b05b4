"""The one streaming ``.safetensors`` writer that convert, prune and cast share.

The header is computed from tensor descriptions first; then tensors are written one at a
time. Bytes that can be copied unchanged go file-to-file inside the kernel
(``copy_file_range``), elementwise transforms (casts) run over a reused buffer in chunks, and
anything else is produced one tensor at a time. Output goes to a temporary file in the target
folder, is fsynced and renamed into place; on any error or interrupt it is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from sdhub.atomic import create_temp, fsync_directory, place_without_overwrite, remove_stale_temps
from sdhub.errors import SdhubError, UsageError
from sdhub.formats.dtypes import DTYPES, dtype_name, torch_dtype
from sdhub.progress import NULL_PROGRESS, Progress, check_cancelled

# Casts work in 2 MiB pieces that stay in the CPU's cache: pruning a 7.7 GB checkpoint to fp16 took
# 2.9 s with them against 3.9 s with 16 MiB pieces (2-core VM).
_CHUNK_BYTES = 2 * 1024 * 1024
_COPY_STEP = 64 * 1024 * 1024
_WRITEBACK_MIN = 8 * 1024 * 1024


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
                      *, overwrite: bool = True) -> Path:
    """Write ``tensors`` to ``path`` atomically, one tensor at a time; return the final path."""
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
    try:
        try:
            os.posix_fallocate(fd, 0, len(header) + total)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        _write_all(fd, header, 0)
        position = flushed = len(header)
        scratch = bytearray(_CHUNK_BYTES if any(s.transform for s in ordered) else 0)  # reused by every chunk
        uses_torch = any(s.transform is not None or s.producer is not None for s in ordered)
        with _one_torch_thread() if uses_torch else contextlib.nullcontext():
            for spec in ordered:
                _write_tensor(fd, spec, position, task, scratch)
                position += spec.nbytes
                if position - flushed >= _COPY_STEP:
                    _start_writeback(fd, flushed, position - flushed)
                    flushed = position
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


def _write_tensor(fd: int, spec: TensorSpec, position: int, task: Any, scratch: bytearray) -> None:
    if spec.raw is not None and spec.transform is None:
        if spec.raw.dtype != spec.dtype_name or spec.raw.nbytes != spec.nbytes:
            raise UsageError(f"tensor {spec.name!r}: source bytes do not match its dtype and shape")
        _copy_range(spec.raw.fd, spec.raw.offset, fd, position, spec.nbytes, task)
    elif spec.raw is not None:
        _write_transformed(fd, spec, position, task, scratch)
    else:
        tensor = spec.producer()
        _check_tensor(spec, tensor)
        _write_all(fd, _tensor_bytes(tensor), position)
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


def _copy_range(src: int, src_offset: int, dst: int, dst_offset: int, count: int, task: Any) -> None:
    """Copy bytes file to file in the kernel; fall back to a buffered copy where unsupported."""
    done = 0
    while done < count:
        step = min(_COPY_STEP, count - done)
        try:
            copied = os.copy_file_range(src, dst, step, src_offset + done, dst_offset + done)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
            _buffered_copy(src, src_offset + done, dst, dst_offset + done, count - done, task)
            return
        if copied == 0:
            raise SdhubError("the source file ended early (was it changed while converting?)")
        _start_writeback(dst, dst_offset + done, copied)
        done += copied
        task.advance(copied)


def _buffered_copy(src: int, src_offset: int, dst: int, dst_offset: int, count: int, task: Any) -> None:
    buffer = bytearray(min(_CHUNK_BYTES, count))
    view = memoryview(buffer)
    done = 0
    while done < count:
        step = min(len(buffer), count - done)
        got = os.preadv(src, [view[:step]], src_offset + done)
        if got == 0:
            raise SdhubError("the source file ended early (was it changed while converting?)")
        _write_all(dst, view[:got], dst_offset + done)
        _start_writeback(dst, dst_offset + done, got)
        done += got
        task.advance(got)


def _write_transformed(fd: int, spec: TensorSpec, position: int, task: Any, scratch: bytearray) -> None:
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
    view = memoryview(scratch)
    done = 0
    while done < total:
        count = min(per_chunk, total - done)
        nbytes = count * source_item
        # Read into one reused buffer: on this kind of VM copying from the page cache is
        # cheaper than faulting in a fresh mapping or fresh memory for every chunk.
        got = os.preadv(raw.fd, [view[:nbytes]], raw.offset + done * source_item)
        if got != nbytes:
            raise SdhubError("the source file ended early (was it changed while converting?)")
        chunk = torch.frombuffer(scratch, dtype=source_dtype, count=count)
        result = spec.transform(chunk)
        if result.dtype != out_dtype or result.numel() != count:
            raise SdhubError(f"internal error: transform of {spec.name!r} changed its shape or dtype")
        _write_all(fd, _tensor_bytes(result), position)
        _start_writeback(fd, position, count * out_item)
        position += count * out_item
        done += count
        task.advance(count * out_item)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Hand written pages to the disk now, so the final fsync has little left to wait for.

    On Linux, DONTNEED starts writeback of dirty pages in the range (and drops clean ones),
    which also keeps a multi-gigabyte output from crowding the page cache.
    """
    if length >= _WRITEBACK_MIN:
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _publish(temp: Path, final: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, final)
    else:
        try:
            place_without_overwrite(temp, final)
        except FileExistsError:
            raise UsageError(f"{final} already exists (use --overwrite to replace it)") from None
    fsync_directory(final.parent)
