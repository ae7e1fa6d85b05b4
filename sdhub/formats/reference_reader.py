"""A second reading of a model file, independent of ``open_model``, for ``convert --verify``.

A check that re-reads the source with the same code that converted it cannot catch that
code's mistakes. This reading shares none of the safe reader's interpretation: Python's own
unpickler runs the pickle, with a ``find_class`` that maps the names torch weights use to
local stand-ins (nothing is imported, nothing from the file is called, anything else is
refused); storages follow ``torch.load``'s rules (cached by key, legacy views cached by view
key, big-endian storages swapped by the storage's element size, byte storages never);
Python's ``zipfile`` locates the records; torch's ``as_strided`` cuts each tensor, checking
its bounds itself. ``.safetensors`` sources are read with the safetensors library.

Only files ``open_model`` already accepted are read this way (its budgets have bounded the
pickle), and only tensor names come from shared code (``find_weights``).
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sdhub.errors import BadInputError
from sdhub.formats.dtypes import dtype_name
from sdhub.formats.pickle_allowlist import PLACEHOLDERS, normalise_module
from sdhub.formats.pickle_values import Global, Inert, StorageRef, TensorRef
from sdhub.formats.weights import find_weights

_STORAGE_TORCH_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class _StorageType:
    torch_name: str  # element dtype as torch names it; "uint8" for an untyped (byte) storage
    untyped: bool = False


@dataclass(frozen=True)
class _DType:
    torch_name: str


@dataclass
class _Storage:
    """Bytes of one storage: where they start in the file (set once known) and how many."""

    torch_name: str
    nbytes: int
    untyped: bool
    start: int = -1
    swap: bool = False

    def itemsize(self) -> int:
        import torch

        return torch.empty(0, dtype=getattr(torch, self.torch_name)).element_size()


@dataclass
class _View:
    """A legacy storage view: a byte range of a root storage, cached by its view key as torch does."""

    root: _Storage
    byte_offset: int
    nbytes: int
    torch_name: str
    untyped: bool = False


def _stand_in_class(module: str, name: str) -> type:
    """A class standing in for a placeholder global: it records what the pickle gives it."""
    label = Global(module, name)

    class StandIn(Inert):
        def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
            obj = object.__new__(cls)
            Inert.__init__(obj, label, args)
            return obj

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __setstate__(self, state: Any) -> None:
            self.state = state

        def append(self, value: Any) -> None:
            self.items.append(value)

        def extend(self, values: Any) -> None:
            self.items.extend(values)

        def __setitem__(self, key: Any, value: Any) -> None:
            self.items.append((key, value))

    return StandIn


class _OrderedDict(dict):
    """``collections.OrderedDict`` as plain data (BUILD may set ``_metadata`` on it)."""


class _Parameter:
    def __new__(cls, data: Any = None, requires_grad: bool = True) -> Any:
        return data


class _Reading:
    """One pass of Python's unpickler over a torch pickle, with torch.load's storage rules."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tensors: dict[int, tuple[TensorRef, Any, str, int, tuple, tuple]] = {}
        self.objects: dict[str, Any] = {}
        self._classes: dict[tuple[str, str], type] = {}

    # -- globals
    def find_class(self, module: str, name: str) -> Any:
        module = normalise_module(module)
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"):
            return getattr(self, name)
        if (module, name) in (("torch._utils", "_rebuild_parameter"),
                              ("torch._utils", "_rebuild_parameter_with_state")):
            return lambda data, *rest: data
        if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
            return lambda func, new_type, args, state: func(*args)
        if (module, name) == ("torch.nn.parameter", "Parameter"):
            return _Parameter
        if (module, name) in (("torch", "Tensor"), ("builtins", "object")):
            return object
        if (module, name) == ("collections", "OrderedDict"):
            return _OrderedDict
        if (module, name) == ("torch", "Size"):
            return tuple
        if (module, name) == ("torch", "device"):
            return lambda kind, index=None: kind if index is None else f"{kind}:{index}"
        if module == "builtins" and name in ("set", "frozenset", "bytearray", "complex"):
            return {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}[name]
        if (module, name) == ("_codecs", "encode"):
            return lambda text, encoding="latin1": text.encode("latin-1")
        if module in ("torch", "torch.cuda") and name in _STORAGE_TORCH_DTYPES:
            return _StorageType(_STORAGE_TORCH_DTYPES[name])
        if (module, name) in (("torch", "UntypedStorage"), ("torch.storage", "UntypedStorage")):
            return _StorageType("uint8", untyped=True)
        if module == "torch":
            return _DType(name)
        if (module, name) in (("copyreg", "_reconstructor"),):
            return lambda cls, base, state: cls()
        if (module, name) in PLACEHOLDERS or module.startswith("numpy"):
            return self._classes.setdefault((module, name), _stand_in_class(module, name))
        raise pickle.UnpicklingError(f"global {module}.{name} is not read by the reference reader")

    # -- tensors
    def _rebuild_tensor(self, storage: Any, offset: int, size: tuple, stride: tuple) -> TensorRef:
        return self._tensor(storage, offset, size, stride, None)

    def _rebuild_tensor_v2(self, storage: Any, offset: int, size: tuple, stride: tuple, requires_grad: Any = False,
                           hooks: Any = None, metadata: Any = None) -> TensorRef:
        return self._tensor(storage, offset, size, stride, None)

    def _rebuild_tensor_v3(self, storage: Any, offset: int, size: tuple, stride: tuple, requires_grad: Any,
                           hooks: Any, dtype: Any, metadata: Any = None) -> TensorRef:
        return self._tensor(storage, offset, size, stride, dtype.torch_name)

    def _tensor(self, storage: Any, offset: int, size: tuple, stride: tuple, torch_name: str | None) -> TensorRef:
        torch_name = torch_name or storage.torch_name
        label = f"reference-{len(self.tensors)}"
        ref = TensorRef(StorageRef(label, "U8", storage.nbytes, untyped=True), dtype_name(torch_name), offset,
                        tuple(size), tuple(stride))
        self.tensors[id(ref)] = (ref, storage, torch_name, offset, tuple(size), tuple(stride))
        return ref

    # -- persistent ids (torch.load's rules)
    def zip_storage(self, pid: tuple, records: Callable[[str], tuple[int, int]], swap: bool) -> _Storage:
        _, storage_type, key, _location, numel = pid
        if key not in self.objects:
            itemsize = 1 if storage_type.untyped else _itemsize(storage_type.torch_name)
            start, nbytes = records(key)
            if nbytes != numel * itemsize:
                raise BadInputError(f"{self.source}: storage {key!r} size disagrees with its record")
            self.objects[key] = _Storage(storage_type.torch_name, nbytes, storage_type.untyped, start,
                                         swap=swap and not storage_type.untyped and itemsize > 1)
        return self.objects[key]

    def legacy_storage(self, pid: tuple) -> Any:
        _, storage_type, root_key, _location, numel, view = pid
        itemsize = _itemsize(storage_type.torch_name)
        if root_key not in self.objects:
            self.objects[root_key] = _Storage(storage_type.torch_name, numel * itemsize, storage_type.untyped)
        root = self.objects[root_key]
        if view is None:
            return root
        view_key, offset, view_size = view
        if view_key not in self.objects:
            self.objects[view_key] = _View(root, offset * itemsize, view_size * itemsize, storage_type.torch_name)
        return self.objects[view_key]


def _itemsize(torch_name: str) -> int:
    import torch

    return torch.empty(0, dtype=getattr(torch, torch_name)).element_size()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, reading: _Reading, persistent: Callable[[Any], Any] | None) -> None:
        super().__init__(file, encoding="utf-8")
        self._reading = reading
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        return self._reading.find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent(pid)


class ReferenceReading:
    """Tensors of a model file by name, read independently of ``open_model``; use as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = open(self.path, "rb")
        self._map: mmap.mmap | None = None
        self._safetensors: Any = None
        self._found: dict[str, TensorRef] = {}
        self._reading = _Reading(self.path.name)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        head = self._file.read(8)
        self._file.seek(0)
        if head[:4] == b"PK\x03\x04":
            value = self._read_zip()
        elif head[:2] == b"\x80\x02":
            value = self._read_legacy()
        else:
            from safetensors import safe_open

            self._safetensors = safe_open(str(self.path), framework="pt")
            return
        found = find_weights(value, self.path.name)
        self._found = found.tensors
        size = os.fstat(self._file.fileno()).st_size
        if size:
            self._map = mmap.mmap(self._file.fileno(), size, access=mmap.ACCESS_COPY)

    def _read_zip(self) -> Any:
        archive = zipfile.ZipFile(self._file)
        infos = archive.infolist()
        prefix = infos[0].filename.split("/", 1)[0]  # torch takes the first record's folder
        by_name = {info.filename: info for info in infos}
        swap = False
        if f"{prefix}/byteorder" in by_name:
            swap = archive.read(f"{prefix}/byteorder") == b"big"

        def record(key: str) -> tuple[int, int]:
            info = by_name[f"{prefix}/data/{key}"]
            if info.compress_type != zipfile.ZIP_STORED:
                raise BadInputError(f"{self.path.name}: storage {key!r} is compressed")
            self._file.seek(info.header_offset)
            local = self._file.read(30)
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            return info.header_offset + 30 + name_length + extra_length, info.file_size

        data = archive.read(f"{prefix}/data.pkl")
        reading = self._reading
        return _Unpickler(io.BytesIO(data), reading, lambda pid: reading.zip_storage(pid, record, swap)).load()

    def _read_legacy(self) -> Any:
        reading, file = self._reading, self._file
        magic = _Unpickler(file, reading, None).load()
        protocol = _Unpickler(file, reading, None).load()
        sys_info = _Unpickler(file, reading, None).load()
        if magic != _LEGACY_MAGIC or protocol != 1001 or not sys_info.get("little_endian"):
            raise BadInputError(f"{self.path.name}: not a little-endian legacy torch file")
        value = _Unpickler(file, reading, reading.legacy_storage).load()
        keys = _Unpickler(file, reading, None).load()
        position = file.tell()
        for key in keys:
            storage = reading.objects[key]
            file.seek(position)
            (count,) = struct.unpack("<q", file.read(8))
            if count * _itemsize(storage.torch_name) != storage.nbytes:
                raise BadInputError(f"{self.path.name}: storage {key!r} size disagrees with its data")
            storage.start = position + 8
            position += 8 + storage.nbytes
        return value

    # -- access
    @property
    def names(self) -> list[str]:
        if self._safetensors is not None:
            return list(self._safetensors.keys())
        return list(self._found)

    def load(self, name: str) -> Any:
        """Tensor ``name`` as torch would hold it after loading the file."""
        import numpy as np
        import torch

        if self._safetensors is not None:
            return self._safetensors.get_tensor(name)
        ref = self._found[name]
        _, storage, torch_name, offset, size, stride = self._reading.tensors[id(ref)]
        root, start, nbytes = storage, 0, storage.nbytes
        if isinstance(storage, _View):
            root, start = storage.root, storage.byte_offset
        if root.start < 0 or start + nbytes > root.nbytes:
            raise BadInputError(f"{self.path.name}: tensor {name!r} has no readable storage")
        raw = torch.frombuffer(self._map, dtype=torch.uint8, count=root.nbytes, offset=root.start) \
            if root.nbytes else torch.empty(0, dtype=torch.uint8)
        if getattr(root, "swap", False):
            unit = {2: np.uint16, 4: np.uint32, 8: np.uint64}[_itemsize(root.torch_name)]
            raw = torch.from_numpy(raw.numpy().view(unit).byteswap().view(np.uint8))
        raw = raw[start:start + nbytes]
        dtype = getattr(torch, torch_name)
        itemsize = torch.empty(0, dtype=dtype).element_size()
        flat = raw[:len(raw) - len(raw) % itemsize].view(dtype)
        return torch.as_strided(flat, size, stride, flat.storage_offset() + offset).clone()

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self._file.close()

    def __enter__(self) -> "ReferenceReading":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
