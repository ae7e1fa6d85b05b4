"""The legacy torch format (before 1.6, or ``_use_new_zipfile_serialization=False``).

Five pickles in a row (magic number, protocol version, system info, the object, the list of
storage keys) followed by each storage's raw bytes, preceded by an 8-byte element count.
Every pickle goes through the safe unpickler; the header values must be exactly what torch
writes, every byte of the file must be accounted for, and a zip hiding at the end (a
polyglot other tools would read differently) is refused.
"""

from __future__ import annotations

import struct
import tarfile
from dataclasses import dataclass
from typing import Any

from sdhub.errors import BadInputError, UnsafeFileError
from sdhub.formats.dtypes import DTYPES
from sdhub.formats.pickle_values import PickleReport, StorageRef
from sdhub.formats.safe_unpickler import Limits, SafeUnpickler
from sdhub.formats.torch_zip import _storage_ref

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


@dataclass
class LegacyFile:
    """The object pickle's value plus where each storage's bytes start in the file."""

    value: Any
    storage_offsets: dict[str, int]
    report: PickleReport


def looks_like_legacy(head: bytes) -> bool:
    """A legacy file starts with a protocol-2 pickle of the magic number (PROTO, LONG1 10)."""
    return head[:3] == b"\x80\x02\x8a" and head[3:4] == b"\x0a"


def read_legacy(data: Any, size: int, source: str, limits: Limits) -> LegacyFile:
    """Parse the five pickles in ``data`` (bytes-like over the whole file) and locate the storages."""
    pos = 0
    header_values = []
    for what in ("magic number", "protocol version", "system info"):
        value, pos = SafeUnpickler(data, source, None, limits=limits).load(pos, size)
        header_values.append((what, value))
    magic, protocol, sys_info = (v for _, v in header_values)
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
        raise BadInputError(f"{source}: not a torch file (wrong magic number or protocol)")
    if (not isinstance(sys_info, dict) or sys_info.get("protocol_version") != LEGACY_PROTOCOL
            or not isinstance(sys_info.get("type_sizes"), dict)):
        raise BadInputError(f"{source}: not a torch file (malformed system info)")
    if sys_info.get("little_endian") is not True:
        raise BadInputError(f"{source}: big-endian legacy torch files are not supported")

    roots: dict[str, StorageRef] = {}
    views: dict[str, StorageRef] = {}

    def persistent_load(pid: tuple) -> StorageRef:
        if len(pid) != 6:
            raise UnsafeFileError(f"storage id with {len(pid)} fields; expected 6")
        _, storage_type, key, location, numel, view = pid
        if not isinstance(key, str) or not isinstance(location, str) or type(numel) is not int or numel < 0:
            raise UnsafeFileError("malformed storage id")
        ref = _storage_ref(storage_type, key, numel)
        if key in views:
            raise UnsafeFileError(f"storage key {key!r} names both a storage and a storage view; refusing it")
        if roots.setdefault(key, ref) != ref:
            raise UnsafeFileError(f"storage {key!r} is described twice with different types or sizes")
        if view is None:
            return ref
        if (not isinstance(view, tuple) or len(view) != 3 or not isinstance(view[0], str)
                or type(view[1]) is not int or type(view[2]) is not int):
            raise UnsafeFileError("malformed storage view")
        view_key, view_offset, view_size = view
        if view_key in roots:
            raise UnsafeFileError(f"storage key {view_key!r} names both a storage and a storage view; refusing it")
        # torch keeps the first view made under a key and hands it out for every later id with that
        # key, whatever offset, size or storage the later one names: so does this reader.
        cached = views.get(view_key)
        if cached is not None:
            return cached
        if view_offset < 0 or view_size < 0 or view_offset + view_size > numel:
            raise UnsafeFileError(f"a storage view reaches outside storage {key!r}")
        element = 1 if ref.untyped else DTYPES[ref.dtype].itemsize
        views[view_key] = StorageRef(key, ref.dtype, view_size, ref.untyped, base_offset=view_offset * element)
        return views[view_key]

    main = SafeUnpickler(data, source, persistent_load, limits=limits)
    value, pos = main.load(pos, size)
    keys, pos = SafeUnpickler(data, source, None, limits=limits).load(pos, size)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise BadInputError(f"{source}: malformed storage key list")
    if set(keys) != set(roots):
        raise UnsafeFileError(f"{source}: the storage key list does not match the storages the pickle uses")

    offsets: dict[str, int] = {}
    for key in keys:
        ref = roots[key]
        if pos + 8 > size:
            raise BadInputError(f"{source}: truncated (storage {key!r} is missing)")
        (count,) = struct.unpack("<q", bytes(data[pos:pos + 8]))
        if count != ref.numel:
            raise UnsafeFileError(f"{source}: storage {key!r} holds {count} elements, the pickle says {ref.numel}")
        offsets[key] = pos + 8
        pos += 8 + ref.nbytes
        if pos > size:
            raise BadInputError(f"{source}: truncated (storage {key!r} runs past the end)")
    if pos != size:
        raise UnsafeFileError(f"{source}: {size - pos} unexplained bytes after the last storage; refusing it")
    if _ends_with_zip(data, size):
        raise UnsafeFileError(f"{source}: is both a legacy torch file and a zip archive; refusing the polyglot")
    return LegacyFile(value, offsets, main.report)


def _ends_with_zip(data: Any, size: int) -> bool:
    """Whether a zip reader would find an end record in the file's tail: miniz takes the last
    signature with a whole record after it, whatever its comment length says."""
    start = max(0, size - (22 + 0xFFFF))
    tail = bytes(data[start:size])
    return tail.rfind(b"PK\x05\x06", 0, len(tail) - 18) >= 0


def reads_as_tar(head: bytes) -> bool:
    """Whether a file starting with ``head`` opens as a tar archive: ``torch.load`` tries Python's
    ``tarfile`` on every file that is not a zip, before the legacy pickles, and ``tarfile`` takes
    any first block that passes as a header."""
    try:
        tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True
