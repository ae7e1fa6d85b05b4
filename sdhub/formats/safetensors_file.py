"""Reading ``.safetensors`` headers with every field validated before it is used."""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass

from sdhub.errors import BadInputError
from sdhub.formats.dtypes import DTYPES

#: The safetensors library refuses larger headers ("header too large"); so does sdhub.
MAX_HEADER_BYTES = 100_000_000
#: Tensors any file may describe, however small (real checkpoints and LoRAs hold a few thousand)...
TENSOR_COUNT_FLOOR = 10_000
#: ...plus one per this many bytes of tensor data, so a header of empty tensors cannot cost more than its file.
DATA_BYTES_PER_EXTRA_TENSOR = 4096
#: torch and the safetensors library hold element counts and dimensions in 64-bit integers.
MAX_ELEMENTS = 2**63 - 1


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
    except RecursionError:
        raise BadInputError(f"{source}: corrupt safetensors header (nested too deeply)") from None
    except (ValueError, TypeError, KeyError, struct.error) as error:
        raise BadInputError(f"{source}: corrupt safetensors header ({error})") from None


def check_shape(shape: object) -> tuple[int, ...]:
    """A shape as torch and the safetensors library can hold it: at most 64 dimensions of
    non-negative integers whose product (ignoring zeros) fits in 64 bits; otherwise BadInputError."""
    if not isinstance(shape, (list, tuple)) or len(shape) > 64 or any(type(d) is not int or d < 0 for d in shape):
        raise BadInputError("invalid shape")
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise BadInputError(f"a dimension too large for torch ({max(shape)})")
    return tuple(shape)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _check_header_budget(raw: bytes, tensor_limit: int, size: int) -> None:
    """Refuse a header that would build more objects than ``tensor_limit`` tensors need, before parsing it.

    Outside its strings a valid header has one object and two arrays per tensor, and a few dozen
    commas at most; counting those bytes (a C-speed pass) keeps a crafted header from costing
    gigabytes of Python objects.
    """
    def over_budget(structure: bytes) -> bool:
        containers = structure.count(b"{") + structure.count(b"[")
        return containers > 3 * tensor_limit + 4 or structure.count(b",") > 16 * tensor_limit + 1000

    # Counted first with the strings in (a C-speed pass); only a header that fails that is counted
    # again without its strings, which text full of brackets (a tag list, say) needs.
    if over_budget(raw) and over_budget(_JSON_STRING.sub(b"", raw)):
        raise BadInputError(f"the header holds more JSON structure than {tensor_limit:,} tensors need (the most a "
                            f"{size:,}-byte file may describe: {TENSOR_COUNT_FLOOR:,} plus one per "
                            f"{DATA_BYTES_PER_EXTRA_TENSOR:,} bytes of tensor data)")




def _read(fd: int, size: int) -> SafetensorsHeader:
    head = os.pread(fd, 8, 0)
    if len(head) != 8:
        raise BadInputError("truncated safetensors file")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_HEADER_BYTES:
        raise BadInputError(f"the safetensors header claims {length:,} bytes, over the format's limit of "
                            f"{MAX_HEADER_BYTES:,}")
    if 8 + length > size:
        raise BadInputError("the safetensors header is larger than the file (truncated?)")
    raw = os.pread(fd, length, 8)
    data_start = 8 + length
    data_size = size - data_start
    limit = TENSOR_COUNT_FLOOR + data_size // DATA_BYTES_PER_EXTRA_TENSOR
    _check_header_budget(raw, limit, size)
    header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(header, dict):
        raise BadInputError("the safetensors header is not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise BadInputError("__metadata__ must map text to text")
    if len(header) > limit:
        raise BadInputError(f"the header describes {len(header):,} tensors, more than a {size:,}-byte file may (limit "
                            f"{limit:,}: {TENSOR_COUNT_FLOOR:,} plus one per {DATA_BYTES_PER_EXTRA_TENSOR:,} bytes "
                            "of tensor data)")
    entries: dict[str, SafetensorsEntry] = {}
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise BadInputError(f"tensor {name!r} has a malformed entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise BadInputError(f"tensor {name!r} has unsupported dtype {dtype!r}")
        try:
            check_shape(shape)
        except BadInputError as error:
            raise BadInputError(f"tensor {name!r} has {error.message}") from None
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
