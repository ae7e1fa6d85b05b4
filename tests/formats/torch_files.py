"""Test helpers that write torch files byte by byte: a pickle assembler and container writers.

``torch.save`` writes the benign files; these helpers make what it cannot: pickles naming
other module paths, hostile opcode sequences, and archives with odd records.
"""

from __future__ import annotations

import struct
import sys
import types
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Raw:
    """Opcodes inserted as they are (an expression already assembled)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def enc(value: Any) -> bytes:
    """Pickle opcodes that push ``value`` (str, int, float, bytes, None, bool, tuple, list, Raw)."""
    if isinstance(value, Raw):
        return value.data
    if value is None:
        return b"N"
    if value is True:
        return b"\x88"
    if value is False:
        return b"\x89"
    if isinstance(value, int):
        if 0 <= value < 256:
            return b"K" + bytes([value])
        if -(2**31) <= value < 2**31:
            return b"J" + struct.pack("<i", value)
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if isinstance(value, float):
        return b"G" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(value, bytes):
        return b"B" + struct.pack("<I", len(value)) + value
    if isinstance(value, tuple):
        return b"(" + b"".join(enc(v) for v in value) + b"t"
    if isinstance(value, list):
        return b"]" + (b"(" + b"".join(enc(v) for v in value) + b"e" if value else b"")
    raise TypeError(value)


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call(module: str, name: str, *args: Any) -> Raw:
    """``module.name(*args)`` as GLOBAL + args tuple + REDUCE."""
    return Raw(glob(module, name) + enc(tuple(args)) + b"R")


def call_value(func: Raw, *args: Any) -> Raw:
    """Call the value ``func`` pushes."""
    return Raw(func.data + enc(tuple(args)) + b"R")


def tensor_expr(key: str = "0", numel: int = 4, *, offset: int = 0, size: tuple = (4,), stride: tuple = (1,),
                storage: tuple[str, str] = ("torch", "FloatStorage"), hooks: Any = None) -> Raw:
    """``_rebuild_tensor_v2`` of a zip-format storage id, as torch writes it."""
    pid = b"(" + enc("storage") + glob(*storage) + enc(key) + enc("cpu") + enc(numel) + b"tQ"
    hooks = hooks if hooks is not None else call("collections", "OrderedDict")
    return Raw(glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + enc(offset) + enc(size) + enc(stride)
               + enc(False) + enc(hooks) + b"tR")


def dict_pickle(items: list[tuple[Any, Any]], proto: int = 2) -> bytes:
    """A whole pickle of a dict with these (key, value) items."""
    body = b"}" + (b"(" + b"".join(enc(k) + enc(v) for k, v in items) + b"u" if items else b"")
    return b"\x80" + bytes([proto]) + body + b"."


def state_dict_pickle(extra: list[tuple[Any, Any]] = (), proto: int = 2) -> bytes:
    """A state dict with one real tensor ``weight`` (storage "0", 4 floats) plus ``extra`` items."""
    return dict_pickle([("weight", tensor_expr())] + list(extra), proto)


def write_zip(path: Path, records: list[tuple[str, bytes]], *, compress: set[str] = frozenset(),
              prefix_bytes: bytes = b"") -> Path:
    """A zip with these (name, data) records in order; names in ``compress`` are deflated."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records:
            method = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            archive.writestr(info, data)
    if prefix_bytes:
        path.write_bytes(prefix_bytes + path.read_bytes())
    return path


def torch_records(data_pkl: bytes, storages: dict[str, bytes] | None = None, *, prefix: str = "archive",
                  extra: list[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    """The (name, data) records of a torch-style zip: ``data.pkl``, storages, ``byteorder``, ``version``."""
    storages = {"0": struct.pack("<4f", 1, 2, 3, 4)} if storages is None else storages
    records = [(f"{prefix}/data.pkl", data_pkl), (f"{prefix}/byteorder", b"little")]
    records += [(f"{prefix}/data/{key}", data) for key, data in storages.items()]
    return records + [(f"{prefix}/version", b"3\n")] + list(extra)


def torch_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes] | None = None, *, prefix: str = "archive",
              extra: list[tuple[str, bytes]] = (), compress: set[str] = frozenset()) -> Path:
    """A torch-style zip: ``data.pkl``, ``data/<key>`` storages, ``byteorder`` and ``version``."""
    records = torch_records(data_pkl, storages, prefix=prefix, extra=extra)
    return write_zip(path, records, compress={f"{prefix}/{n}" for n in compress} | set(compress))


def zip_parts(records: list[tuple[str, bytes]], start: int = 0) -> tuple[bytes, bytes]:
    """Stored local records and their central directory, byte by byte, the first record at ``start``.

    For archives ``zipfile`` will not write: two central directories, hidden end records, gaps.
    """
    local, central = b"", b""
    for name, data in records:
        raw, crc, offset = name.encode(), zlib.crc32(data), start + len(local)
        local += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(data), len(data), len(raw),
                             0) + raw + data
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, len(data),
                               len(data), len(raw), 0, 0, 0, 0, 0, offset) + raw
    return local, central


def end_record(entries: int, cd_size: int, cd_offset: int, comment: bytes = b"") -> bytes:
    """A plain end-of-central-directory record (fields wider than theirs are saturated)."""
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, min(entries, 0xFFFF), min(entries, 0xFFFF),
                       min(cd_size, 0xFFFFFFFF), min(cd_offset, 0xFFFFFFFF), len(comment)) + comment


def zip64_end(entries: int, cd_size: int, cd_offset: int, at: int) -> bytes:
    """A zip64 end record written at file offset ``at``, followed by the locator pointing to it."""
    record = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, cd_size, cd_offset)
    return record + struct.pack("<4sIQI", b"PK\x06\x07", 0, at, 1)


def legacy_pickles(main: bytes, keys: list[str], *, magic: bytes | None = None, version: bytes | None = None,
                   sys_info: bytes | None = None, key_list: bytes | None = None) -> bytes:
    """The five pickles of the legacy format, any of which may be replaced."""
    magic = magic if magic is not None else b"\x80\x02" + enc(LEGACY_MAGIC) + b"."
    version = version if version is not None else b"\x80\x02" + enc(1001) + b"."
    sys_info = sys_info if sys_info is not None else dict_pickle([
        ("protocol_version", 1001), ("little_endian", True),
        ("type_sizes", Raw(b"}(" + enc("short") + enc(2) + enc("int") + enc(4) + enc("long") + enc(4) + b"u"))])
    key_list = key_list if key_list is not None else b"\x80\x02" + enc(list(keys)) + b"."
    return magic + version + sys_info + main + key_list


def legacy_file(path: Path, main: bytes, storages: dict[str, tuple[int, bytes]], **replace: bytes) -> Path:
    """A legacy torch file: the pickles, then each storage as int64 element count + bytes."""
    data = legacy_pickles(main, list(storages), **replace)
    for count, raw in storages.values():
        data += struct.pack("<q", count) + raw
    path.write_bytes(data)
    return path


def rewrite_data_pkl(source: Path, target: Path, replace: dict[bytes, bytes]) -> Path:
    """Copy a torch zip, substituting byte strings inside its ``data.pkl`` (for GLOBAL names)."""
    with zipfile.ZipFile(source) as archive:
        records = []
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.endswith("/data.pkl"):
                for old, new in replace.items():
                    assert old in data, old
                    data = data.replace(old, new)
            records.append((info.filename, data))
    return write_zip(target, records)


def install_lightning_stub() -> None:
    """Let ``torch.load(weights_only=False)`` in tests resolve Lightning's ModelCheckpoint global."""
    from sdhub.testing.lightning import ModelCheckpoint

    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[names[-1]].ModelCheckpoint = ModelCheckpoint


def torch_load_trusted(path: Path) -> Any:
    """Load a file this test wrote itself, the way PyTorch would (never used on untrusted input)."""
    install_lightning_stub()
    return torch.load(path, weights_only=False, map_location="cpu")


def to_zip64(path: Path) -> Path:
    """Rewrite a small zip's central directory the way a >4 GiB archive needs it: every size and
    offset as 0xFFFFFFFF with the real value in a zip64 extra field, plus zip64 end records."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    cd_start = struct.unpack_from("<I", data, data.rfind(b"PK\x05\x06") + 16)[0]
    body = data[:cd_start]
    directory = b""
    for info in infos:
        name = info.filename.encode()
        extra = struct.pack("<HHQQQ", 1, 24, info.file_size, info.compress_size, info.header_offset)
        directory += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, info.flag_bits, info.compress_type,
                                 0, 0, info.CRC, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0,
                                 0xFFFFFFFF) + name + extra
    zip64_at = len(body) + len(directory)
    end64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, len(infos), len(infos), len(directory),
                        len(body))
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, zip64_at, 1)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(body + directory + end64 + locator + end)
    return path
