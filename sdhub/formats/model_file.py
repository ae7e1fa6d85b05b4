"""``open_model``: one read-only view of any model file (.safetensors, GGUF, torch zip, legacy torch).

Opening a file validates its container and, for pickles, runs the safe unpickler; it reads
the header/pickle only, never the tensor data. Tensors are then described by ``tensors``
and fetched one at a time with ``load`` (mapped from the file, so only that tensor's pages
are touched) or handed to the streaming writer with ``spec``.
"""

from __future__ import annotations

import math
import mmap
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sdhub.errors import BadInputError, NotFoundError, StandInFileError, UnsafeFileError, UsageError
from sdhub.formats.bnb_quant import read_bnb_weights
from sdhub.formats.dtypes import DTYPES, dtype_name, torch_dtype
from sdhub.formats.quantised import QUANTISED, not_rewritten, quantised_refusal
from sdhub.formats.gguf_file import GGUF_MAGIC, read_gguf
from sdhub.formats.pickle_values import PickleReport, is_contiguous
from sdhub.formats.regular_file import open_regular_file
from sdhub.formats.safe_unpickler import DEFAULT_LIMITS, Limits, SafeUnpickler
from sdhub.formats.safetensors_file import looks_like_safetensors, read_safetensors_header
from sdhub.formats.safetensors_writer import RawSource, TensorSpec
from sdhub.formats.stand_ins import HEAD_BYTES, stand_in_reason
from sdhub.formats.torch_legacy import looks_like_legacy, read_legacy, reads_as_tar
from sdhub.formats.torch_zip import ZIP_MAGIC, read_data_pickle, read_zip, storage_loader
from sdhub.formats.weights import byte_swapped, find_weights


class TensorInfo:
    """What a tensor is without its data: name, dtype, shape and size in bytes.

    ``dtype`` is a ``torch.dtype`` (torch is imported on first use); ``dtype_name`` is the
    safetensors name (``"F16"``), available without torch. A quantised tensor (a GGUF ``"Q8_0"``,
    a bitsandbytes ``"NF4"``) has its type's name, its shape as the model uses it (what detection
    needs) and ``nbytes`` as stored.
    """

    __slots__ = ("name", "dtype_name", "shape", "nbytes")

    def __init__(self, name: str, dtype: Any, shape: tuple[int, ...], nbytes: int | None = None) -> None:
        self.name = name
        quantised = isinstance(dtype, str) and dtype in QUANTISED
        if quantised and nbytes is None:
            raise UsageError(f"tensor {name!r}: a quantised tensor's size is given, not computed")
        self.dtype_name = dtype if quantised else dtype_name(dtype)
        self.shape = tuple(shape)
        self.nbytes = math.prod(self.shape) * DTYPES[self.dtype_name].itemsize if nbytes is None else nbytes

    @property
    def dtype(self) -> Any:
        return torch_dtype(self.dtype_name)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorInfo) and (self.name, self.dtype_name, self.shape, self.nbytes) == (
            other.name, other.dtype_name, other.shape, other.nbytes)

    def __hash__(self) -> int:
        return hash((self.name, self.dtype_name, self.shape))

    def __repr__(self) -> str:
        return f"TensorInfo({self.name!r}, {self.dtype_name}, {self.shape}, {self.nbytes})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype_name, "shape": list(self.shape), "nbytes": self.nbytes}


@dataclass(frozen=True)
class TensorSource:
    """Where a tensor's elements live in the file: a strided view of a stored run of bytes."""

    dtype: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int        # elements from ``data_start``
    data_start: int    # file offset of the storage's first byte
    storage: str       # storage identity; tensors with the same value share bytes
    big_endian: bool = False

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    def is_contiguous(self) -> bool:
        return is_contiguous(self.shape, self.stride)

    def element_span(self) -> tuple[int, int]:
        """First and one-past-last element index (from ``data_start``) the view touches."""
        if math.prod(self.shape) == 0:
            return self.offset, self.offset
        last = self.offset + sum((s - 1) * st for s, st in zip(self.shape, self.stride))
        return self.offset, last + 1


@dataclass
class ReadReport:
    """What reading found besides the weights; ``to_dict`` is the JSON form."""

    format: str
    placeholders: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)
    opcodes: dict[str, int] = field(default_factory=dict)
    shared_storages: int = 0
    protocol: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "placeholders": self.placeholders, "dropped": self.dropped,
                "extras": self.extras, "globals": self.globals, "shared_storages": self.shared_storages,
                "protocol": self.protocol}


@dataclass(frozen=True)
class Quantisation:
    """How a quantised file stores its weights: the scheme and how many tensors of each type it holds.

    ``scheme`` is ``"gguf"`` or ``"bitsandbytes"``; ``types`` counts tensors by type name, quantised
    or not (``{"Q8_0": 304, "F32": 476}``); ``quantised`` counts those of a quantised type.
    """

    scheme: str
    types: dict[str, int]

    @property
    def quantised(self) -> int:
        return sum(count for name, count in self.types.items() if name in QUANTISED)

    def describe(self) -> str:
        """One line for people, quantised types first: "GGUF, Q8_0 x304, F32 x476" / "bitsandbytes NF4 quantised, 304 tensors"."""
        if self.scheme == "bitsandbytes":
            kinds = "/".join(sorted(name for name in self.types if name in QUANTISED)) or "4-bit"
            return f"bitsandbytes {kinds} quantised, {self.quantised} tensors"
        order = sorted(self.types.items(), key=lambda item: (item[0] not in QUANTISED, -item[1], item[0]))
        counts = ", ".join(f"{name} x{count}" for name, count in order)
        return f"GGUF, {counts}"

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "types": dict(sorted(self.types.items())), "quantised_tensors": self.quantised,
                "summary": self.describe()}


class ModelFile:
    """An open model file: tensor descriptions, metadata, and one-tensor-at-a-time access."""

    def __init__(self, path: Path, file: Any, size: int, format: str, sources: dict[str, TensorSource],
                 metadata: dict[str, str], report: ReadReport, embedding_layout: bool = False, *,
                 quantised: dict[str, TensorInfo] | None = None, quantisation: Quantisation | None = None,
                 rewrite_refusal: str | None = None) -> None:
        self.path = path
        self.size = size
        self.format = format
        self.metadata = metadata
        self.report = report
        self.embedding_layout = embedding_layout
        #: The quantisation scheme and types when the file is quantised (GGUF, bitsandbytes), else None.
        self.quantisation = quantisation
        #: Why the file cannot be rewritten (prune, cast, convert), or None when it can.
        self.rewrite_refusal = rewrite_refusal
        self._file = file
        self._mapped: mmap.mmap | None = None
        self._sources = sources
        quantised = quantised or {}
        self.tensors: dict[str, TensorInfo] = {
            name: quantised.get(name) or TensorInfo(name, src.dtype, src.shape) for name, src in sources.items()
        }

    # -- lifecycle
    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mapped = None  # unmapped once the last tensor taken from it is gone

    def __enter__(self) -> "ModelFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fileno(self) -> int:
        if self._file is None:
            raise UsageError(f"{self.path.name} is closed")
        return self._file.fileno()

    def check_rewritable(self) -> None:
        """Raise the one-line reason when this file cannot be rewritten (a GGUF or bitsandbytes file)."""
        if self.rewrite_refusal is not None:
            raise BadInputError(self.rewrite_refusal)

    # -- access
    def source(self, name: str) -> TensorSource:
        """Where tensor ``name`` lives in the file."""
        try:
            return self._sources[name]
        except KeyError:
            raise NotFoundError(f"{self.path.name} has no tensor named {name!r}") from None

    def raw_source(self, name: str) -> RawSource | None:
        """The tensor's bytes as one contiguous run of the file, or None if it is a strided view."""
        src = self.source(name)
        if not src.is_contiguous() or (src.big_endian and src.itemsize > 1):
            return None
        start, end = src.element_span()
        return RawSource(self.fileno, src.data_start + start * src.itemsize, (end - start) * src.itemsize, src.dtype)

    def load(self, name: str, *, keep: bool = False) -> Any:
        """Tensor ``name`` as a torch tensor mapped from the file (copy-on-write; only its pages).

        Each tensor gets its own mapping, unmapped when the tensor goes, so reading a file one
        tensor at a time stays bounded. ``keep=True`` is for callers that hold every tensor (a
        pipeline's weights): those share one mapping of the whole file, which costs one file
        descriptor instead of one per tensor (an SDXL checkpoint has 2,500).
        """
        import torch

        src = self.source(name)
        if self.tensors[name].dtype_name in QUANTISED:
            raise BadInputError(f"{self.path.name}: {quantised_refusal(self.tensors[name].dtype_name)}")
        dtype = torch_dtype(src.dtype)
        first, end = src.element_span()
        if end == first:
            return torch.empty(src.shape, dtype=dtype)
        start_byte = src.data_start + first * src.itemsize
        end_byte = src.data_start + end * src.itemsize
        if keep:
            flat = torch.frombuffer(self._whole_map(), dtype=dtype, count=end - first, offset=start_byte)
        else:
            page_start = start_byte - start_byte % mmap.ALLOCATIONGRANULARITY
            mapped = mmap.mmap(self.fileno, end_byte - page_start, offset=page_start, access=mmap.ACCESS_COPY)
            flat = torch.frombuffer(mapped, dtype=dtype, count=end - first, offset=start_byte - page_start)
        if src.big_endian and src.itemsize > 1:
            flat = _byteswapped(flat)
        if src.is_contiguous():
            return flat.view(src.shape)
        return flat.as_strided(src.shape, src.stride)

    def _whole_map(self) -> mmap.mmap:
        """One copy-on-write mapping of the whole file, made on first use; tensors keep it alive."""
        if self._mapped is None:
            self._mapped = mmap.mmap(self.fileno, 0, access=mmap.ACCESS_COPY)
        return self._mapped

    def spec(self, name: str, dtype: Any = None, transform: Callable[[Any], Any] | None = None,
             out_name: str | None = None, out_shape: tuple[int, ...] | None = None) -> TensorSpec:
        """A writer spec for tensor ``name``: raw bytes when contiguous, else a one-tensor producer.

        ``transform`` must be elementwise and return ``dtype`` (default: the tensor's own dtype);
        ``out_shape`` writes the same elements in another shape (a reshape, never a transpose).
        """
        self.check_rewritable()
        src = self.source(name)
        out_dtype = dtype_name(dtype) if dtype is not None else src.dtype
        if transform is None and out_dtype != src.dtype:
            raise UsageError(f"tensor {name!r}: a dtype change needs a transform")
        shape = tuple(src.shape) if out_shape is None else tuple(out_shape)
        if math.prod(shape) != math.prod(src.shape):
            raise UsageError(f"tensor {name!r} of shape {tuple(src.shape)} cannot be written as {shape}")
        raw = self.raw_source(name)
        if raw is not None:
            return TensorSpec(out_name or name, out_dtype, shape, raw=raw, transform=transform)

        def produce() -> Any:
            tensor = self.load(name)
            return (transform(tensor) if transform is not None else tensor.contiguous()).reshape(shape)

        return TensorSpec(out_name or name, out_dtype, shape, producer=produce)


def _byteswapped(flat: Any) -> Any:
    """A little-endian copy of a tensor read from a big-endian file."""
    import torch

    same_size_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    swapped = flat.view(same_size_int).numpy().byteswap()
    return torch.from_numpy(swapped).view(flat.dtype)


def open_model(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> ModelFile:
    """Open a .safetensors, GGUF, torch zip or legacy torch file safely (nothing in it is executed).

    A file saved in a model's place (empty, a Git LFS pointer, a web page) raises ``StandInFileError``.
    """
    path = Path(path)
    file = open_regular_file(path)
    try:
        return _open(path, file, os.fstat(file.fileno()).st_size, limits)
    except BaseException:
        file.close()
        raise


def _open(path: Path, file: Any, size: int, limits: Limits) -> ModelFile:
    fd = file.fileno()
    source = path.name
    head = os.pread(fd, 512, 0)
    if (head[:4] == ZIP_MAGIC or looks_like_legacy(head)) and reads_as_tar(head):
        who = "tools that try tar first" if head[:4] == ZIP_MAGIC else "torch.load, which tries tar before pickles,"
        raise UnsafeFileError(f"{source}: is also a tar archive ({who} would read another file); refusing the polyglot")
    if head[:4] == ZIP_MAGIC:
        return _open_zip(path, file, size, source, limits)
    if looks_like_legacy(head):
        return _open_legacy(path, file, size, source, limits)
    if looks_like_safetensors(head, size):
        header = read_safetensors_header(fd, size, source)
        sources = {
            e.name: TensorSource(e.dtype, e.shape, _contiguous_stride(e.shape), 0, e.start, e.name)
            for e in header.entries.values()
        }
        weights, types = read_bnb_weights(fd, header.entries)
        if not weights:
            return ModelFile(path, file, size, "safetensors", sources, header.metadata, ReadReport("safetensors"))
        quantisation = Quantisation("bitsandbytes", dict(types))
        refusal = not_rewritten(f"{source}: is {quantisation.describe()}", "it")
        quantised = {name: TensorInfo(name, type_name, shape, stored)
                     for name, (type_name, shape, stored) in weights.items()}
        return ModelFile(path, file, size, "safetensors", sources, header.metadata, ReadReport("safetensors"),
                         quantised=quantised, quantisation=quantisation, rewrite_refusal=refusal)
    if head[:4] == GGUF_MAGIC:
        return _open_gguf(path, file, size, source)
    stand_in = stand_in_reason(os.pread(fd, HEAD_BYTES, 0), size)
    if stand_in is not None:
        raise StandInFileError(f"{source}: {stand_in}")
    raise BadInputError(f"{source}: {_unknown_format(head)}")


def _open_gguf(path: Path, file: Any, size: int, source: str) -> ModelFile:
    contents = read_gguf(file, size, source)
    sources: dict[str, TensorSource] = {}
    quantised: dict[str, TensorInfo] = {}
    for tensor in contents.tensors:
        plain = tensor.plain_dtype
        if plain is not None:
            sources[tensor.name] = TensorSource(plain, tensor.shape, _contiguous_stride(tensor.shape), 0,
                                                tensor.data_offset, tensor.name)
        else:  # the stored blocks as bytes; the tensor keeps its model shape and GGML type name
            sources[tensor.name] = TensorSource("U8", (tensor.nbytes,), (1,), 0, tensor.data_offset, tensor.name)
            quantised[tensor.name] = TensorInfo(tensor.name, tensor.type_name, tensor.shape, tensor.nbytes)
    quantisation = Quantisation("gguf", dict(Counter(tensor.type_name for tensor in contents.tensors)))
    refusal = not_rewritten(f"{source}: is a GGUF file ({quantisation.describe()})", "it")
    return ModelFile(path, file, size, "gguf", sources, contents.metadata, ReadReport("gguf"), quantised=quantised,
                     quantisation=quantisation, rewrite_refusal=refusal)


def _unknown_format(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "is gzip-compressed; torch never writes that, refusing it"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "is a 7z archive; torch never writes that, refusing it"
    if head[:1] == b"\x80":
        return "is a pickle but not a torch checkpoint; refusing it"
    return "is not a model file (.safetensors, .gguf, .ckpt, .pt, .pth or .bin)"


def _contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, expected = [], 1
    for size in reversed(shape):
        stride.append(expected)
        expected *= size
    return tuple(reversed(stride))


def _open_zip(path: Path, file: Any, size: int, source: str, limits: Limits) -> ModelFile:
    fd = file.fileno()
    container = read_zip(fd, size, source)
    data = read_data_pickle(fd, container, limits.max_pickle_bytes)
    unpickler = SafeUnpickler(data, source, storage_loader(container), limits=limits)
    value, end = unpickler.load()
    if end != len(data):
        raise UnsafeFileError(f"{source}: data.pkl has {len(data) - end} bytes after its end; refusing it")
    starts = {key[len("data/"):]: rec.offset for key, rec in container.records.items() if key.startswith("data/")}
    return _build(path, file, size, "torch-zip", value, unpickler.report, starts, source, limits,
                  big_endian=container.byteorder == "big")


def _open_legacy(path: Path, file: Any, size: int, source: str, limits: Limits) -> ModelFile:
    with mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ) as mapped:
        legacy = read_legacy(mapped, size, source, limits)
    return _build(path, file, size, "torch-legacy", legacy.value, legacy.report, legacy.storage_offsets, source,
                  limits)


def _build(path: Path, file: Any, size: int, format: str, value: Any, pickle_report: PickleReport,
           storage_starts: dict[str, int], source: str, limits: Limits, big_endian: bool = False) -> ModelFile:
    found = find_weights(value, source, file_size=size, limits=limits, objects=pickle_report.objects)
    sources: dict[str, TensorSource] = {}
    for name, ref in found.tensors.items():
        storage = ref.storage
        sources[name] = TensorSource(ref.dtype, ref.shape, ref.stride, ref.offset,
                                     storage_starts[storage.key] + storage.base_offset, storage.key,
                                     byte_swapped(name, ref, big_endian, source))
    used = [src.storage for src in sources.values()]
    report = ReadReport(
        format,
        placeholders=sorted(g for g, v in pickle_report.globals.items() if v == "placeholder"),
        dropped=found.dropped,
        extras=found.extras,
        globals=dict(pickle_report.globals),
        opcodes=dict(pickle_report.opcodes),
        shared_storages=len(used) - len(set(used)),
        protocol=pickle_report.protocol,
    )
    return ModelFile(path, file, size, format, sources, {}, report, embedding_layout=found.embedding_layout)
