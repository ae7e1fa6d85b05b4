"""Reading ``.safetensors`` headers with every field validated before it is used."""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass

from sdhub.errors import BadInputError
from sdhub.formats.dtypes import DTYPES

MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class SafetensorsEntry:
    """One tensor in a safetensors file: dtype name, shape and absolute byte range in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass
class SafetensorsHeader:
    entries: dict[str, SafetensorsEntry]
    metadata: dict[str, str]
    data_start: int


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether the first bytes are a plausible safetensors header length followed by ``{``."""
    if len(head) < 9 or size < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= min(MAX_HEADER_BYTES, size - 8) and head[8:9] == b"{"


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise BadInputError(f"the header names {key!r} twice")
        result[key] = value
    return result


def read_safetensors_header(fd: int, size: int, source: str) -> SafetensorsHeader:
    """Parse and validate the header of the safetensors file open as ``fd``."""
    try:
        return _read(fd, size)
    except BadInputError as error:
        raise BadInputError(f"{source}: {error.message}") from None
    except (ValueError, TypeError, KeyError, struct.error) as error:
        raise BadInputError(f"{source}: corrupt safetensors header ({error})") from None


def _read(fd: int, size: int) -> SafetensorsHeader:
    head = os.pread(fd, 8, 0)
    if len(head) != 8:
        raise BadInputError("truncated safetensors file")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_HEADER_BYTES or 8 + length > size:
        raise BadInputError("the safetensors header is larger than the file (truncated?)")
    raw = os.pread(fd, length, 8)
    header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(header, dict):
        raise BadInputError("the safetensors header is not an object")
    data_start = 8 + length
    data_size = size - data_start
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise BadInputError("__metadata__ must map text to text")
    entries: dict[str, SafetensorsEntry] = {}
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise BadInputError(f"tensor {name!r} has a malformed entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise BadInputError(f"tensor {name!r} has unsupported dtype {dtype!r}")
        if (not isinstance(shape, list) or len(shape) > 64
                or any(type(d) is not int or d < 0 for d in shape)):
            raise BadInputError(f"tensor {name!r} has an invalid shape")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or any(type(o) is not int for o in offsets) or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise BadInputError(f"tensor {name!r} points outside the file (truncated?)")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPES[dtype].itemsize:
            raise BadInputError(f"tensor {name!r}: its byte range does not match its shape and dtype")
        entries[name] = SafetensorsEntry(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (start, end, name), (next_start, _, next_name) in zip(spans, spans[1:]):
        if next_start < end:
            raise BadInputError(f"tensors {name!r} and {next_name!r} overlap")
    return SafetensorsHeader(entries, dict(metadata), data_start)
