"""The inert values the safe unpickler builds instead of Python objects from a pickle."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sdhub.formats.dtypes import DTYPES


@dataclass(frozen=True)
class Global:
    """A reference to ``module.name`` taken from the pickle; never imported, never called."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class TorchDType:
    """A ``torch.<dtype>`` value seen in the pickle, by its torch attribute name."""

    torch_name: str


@dataclass(frozen=True)
class NumpyDType:
    """A ``numpy.dtype('f8', ...)`` value: only its type code is kept."""

    code: str
    byteorder: str = "<"


class Inert:
    """A placeholder for a known harmless object (a Lightning callback, an argparse namespace).

    It keeps what the pickle said about it as plain data and is never turned into the real
    object. Identity equality keeps it usable as a dict key, as Lightning pickles do.
    """

    __slots__ = ("cls", "args", "state", "items")

    def __init__(self, cls: Global, args: Any = ()) -> None:
        self.cls = cls
        self.args = args
        self.state: Any = None
        self.items: list[Any] = []

    def __repr__(self) -> str:
        return f"<placeholder {self.cls.dotted}>"


@dataclass(frozen=True)
class StorageRef:
    """A storage named by a persistent id: its key in the container, element type and size."""

    key: str
    dtype: str
    numel: int
    untyped: bool = False
    base_offset: int = 0  # bytes into the stored record (legacy storage views)

    @property
    def nbytes(self) -> int:
        return self.numel if self.untyped else self.numel * DTYPES[self.dtype].itemsize


@dataclass(frozen=True)
class TensorRef:
    """A tensor described by the pickle: a view (offset, shape, stride in elements) of a storage."""

    storage: StorageRef
    dtype: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    parameter: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPES[self.dtype].itemsize

    def is_contiguous(self) -> bool:
        return is_contiguous(self.shape, self.stride)

    def overlaps(self) -> bool:
        """Whether two of the view's indexes may reach the same element (stride 0, or strides
        that interleave); then its logical size can exceed what its storage holds."""
        return may_overlap(self.shape, self.stride)

    @property
    def swap_itemsize(self) -> int:
        """The element size torch byte-swaps this tensor's storage by in a big-endian archive: the
        storage's own (1 for a byte storage, which torch never swaps), not the tensor's."""
        return 1 if self.storage.untyped else DTYPES[self.storage.dtype].itemsize


def may_overlap(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """Conservative overlap test: False only when the view's elements are provably distinct."""
    if math.prod(shape) == 0:
        return False
    extent = 1  # one past the largest offset reachable with the dimensions taken so far
    for size, step in sorted(((s, st) for s, st in zip(shape, stride) if s > 1), key=lambda d: d[1]):
        if step < extent:
            return True
        extent += (size - 1) * step
    return False


def is_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """Whether a view with this shape and stride is one dense row-major run of elements."""
    expected = 1
    for size, step in zip(reversed(shape), reversed(stride)):
        if size != 1 and step != expected:
            return False
        expected *= size
    return True


@dataclass
class PickleReport:
    """What the unpickler saw: globals by verdict, opcode counts, placeholders made."""

    protocol: int = 0
    objects: int = 0  # values pushed while reading (scales the weights walk budget)
    globals: dict[str, str] = field(default_factory=dict)  # "module.name" -> allowed|placeholder|refused
    opcodes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
