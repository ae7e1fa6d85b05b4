"""Reading GGUF files (ComfyUI-GGUF's Flux, SD3 and text-encoder quantisations) with the ``gguf`` library.

``read_gguf`` walks the header once with bounds checks of its own before handing the file to
``gguf.GGUFReader``: the reader trusts its counts (an array claiming 2**63 items past the end of
the file loops forever on empty reads, a huge tensor count builds millions of objects), so every
count, length, type, dimension and data range is checked against the file's size first, and the
metadata arrays may hold at most a number of items scaled to the file. A malformed file ends in
one ``BadInputError`` line.

Shapes: GGUF stores a tensor's dimensions innermost first (ggml's ``ne``), the reverse of torch;
ComfyUI-GGUF reads the torch shape as the reversed dimensions, or as the
``comfy.gguf.orig_shape.<name>`` metadata (an INT32 array) where its converter had to reshape a
tensor. ``read_gguf`` does the same, so detection sees the shapes the model has in torch.

Names: image models keep the names they were converted with (ComfyUI/BFL's). A T5 encoder
(``general.architecture`` ``t5`` or ``t5encoder``) quantised by llama.cpp has llama.cpp's names
(``enc.blk.0.attn_q.weight``); ComfyUI-GGUF reads them under the transformers names
(``encoder.block.0.layer.0.SelfAttention.q.weight``), and so does ``read_gguf``.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from sdhub.errors import BadInputError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
#: ggml tensors have at most four dimensions.
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
#: Tensors and metadata entries any file may hold (Flux holds ~780 tensors, large LLMs a few thousand)...
COUNT_FLOOR = 10_000
#: ...plus one per this many bytes of file.
BYTES_PER_EXTRA_ENTRY = 4096
#: Items all metadata arrays together may hold (tokenizer vocabularies run to a few hundred thousand)...
ARRAY_ITEMS_FLOOR = 100_000
#: ...plus one per this many bytes of file: the reader builds an object per item.
BYTES_PER_ARRAY_ITEM = 256
#: Longest key, tensor name or metadata string read (tensor names are at most 64 bytes in ggml).
MAX_STRING_BYTES = 1 << 20
#: Metadata values longer than this (a chat template, a vocabulary) are shown summarised.
MAX_METADATA_TEXT = 1000
ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."
#: llama.cpp's T5 names -> transformers', replaced in this order, as ComfyUI-GGUF reads them.
T5_NAMES = (
    ("enc.", "encoder."), (".blk.", ".block."), ("token_embd", "shared"), ("output_norm", "final_layer_norm"),
    ("attn_q", "layer.0.SelfAttention.q"), ("attn_k", "layer.0.SelfAttention.k"),
    ("attn_v", "layer.0.SelfAttention.v"), ("attn_o", "layer.0.SelfAttention.o"),
    ("attn_norm", "layer.0.layer_norm"), ("attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"),
    ("ffn_up", "layer.1.DenseReluDense.wi_1"), ("ffn_down", "layer.1.DenseReluDense.wo"),
    ("ffn_gate", "layer.1.DenseReluDense.wi_0"), ("ffn_norm", "layer.1.layer_norm"),
)
T5_ARCHITECTURES = ("t5", "t5encoder")

#: GGUF value types: fixed sizes (and struct codes) of the scalars.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32", 7: "bool",
               8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
#: GGML element types that are plain numbers, by their safetensors-style name.
_PLAIN_TYPES = {"F32": "F32", "F16": "F16", "BF16": "BF16", "F64": "F64", "I8": "I8", "I16": "I16", "I32": "I32",
                "I64": "I64"}


@dataclass(frozen=True)
class GgufTensor:
    """One tensor: its name, GGML type name (``"Q8_0"``, ``"F16"``), torch-order shape and stored bytes."""

    name: str
    type_name: str
    shape: tuple[int, ...]
    data_offset: int  # absolute, in the file
    nbytes: int

    @property
    def plain_dtype(self) -> str | None:
        """The safetensors type name when the tensor is stored as plain numbers, else None (quantised)."""
        return _PLAIN_TYPES.get(self.type_name)


@dataclass
class GgufContents:
    version: int
    tensors: list[GgufTensor]
    metadata: dict[str, str] = field(default_factory=dict)


class _Header:
    """A bounds-checked cursor over the mapped header."""

    def __init__(self, data: Any, size: int, source: str) -> None:
        self.data = data
        self.size = size
        self.source = source
        self.pos = 0

    def fail(self, what: str) -> BadInputError:
        return BadInputError(f"{self.source}: {what} (a truncated or damaged GGUF file); refusing it")

    def take(self, count: int, what: str) -> int:
        if count < 0 or self.pos + count > self.size:
            raise self.fail(f"its {what} runs past the end of the file")
        start = self.pos
        self.pos += count
        return start

    def unpack(self, code: str, what: str) -> Any:
        start = self.take(struct.calcsize("<" + code), what)
        return struct.unpack_from("<" + code, self.data, start)[0]

    def string(self, what: str) -> bytes:
        length = self.unpack("Q", what)
        if length > MAX_STRING_BYTES:
            raise self.fail(f"a {what} of {length} bytes is longer than sdhub reads")
        start = self.take(length, what)
        return bytes(self.data[start:start + length])


def read_gguf(file: BinaryIO, size: int, source: str) -> GgufContents:
    """The tensors and metadata of the GGUF file open as ``file`` (``size`` bytes), checked before use."""
    if size < 24:
        raise BadInputError(f"{source}: a GGUF file of {size} bytes is too short for its header; refusing it")
    with mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ) as mapped:
        checked = _walk(_Header(mapped, size, source))
    reader = _library_reader(file, source)
    return _contents(reader, checked, source)


@dataclass
class _Checked:
    """What the bounds-checked walk found: the header facts the library's reading must agree with."""

    version: int
    tensors: dict[str, tuple[str, tuple[int, ...], int, int]]  # name -> (type, ne, offset, nbytes)


def _walk(header: _Header) -> _Checked:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    header.take(4, "magic")
    version = header.unpack("I", "version")
    if version & 0xFFFF == 0 and version:
        raise BadInputError(f"{header.source}: is a big-endian GGUF file; sdhub reads little-endian GGUF only")
    if version not in SUPPORTED_VERSIONS:
        raise BadInputError(f"{header.source}: is GGUF version {version}; sdhub reads versions 2 and 3")
    tensor_count = header.unpack("Q", "tensor count")
    kv_count = header.unpack("Q", "metadata count")
    allowed = COUNT_FLOOR + header.size // BYTES_PER_EXTRA_ENTRY
    if tensor_count > allowed or kv_count > allowed:
        raise header.fail(f"it claims {tensor_count} tensors and {kv_count} metadata entries, more than a "
                          f"{header.size}-byte file can hold")
    items_left = ARRAY_ITEMS_FLOOR + header.size // BYTES_PER_ARRAY_ITEM
    alignment = DEFAULT_ALIGNMENT
    keys: set[bytes] = set()
    for _ in range(kv_count):
        key = header.string("metadata key")
        if key in keys:
            raise header.fail(f"it names the metadata key {key[:80]!r} twice")
        keys.add(key)
        value_type = header.unpack("I", "metadata type")
        if key == b"general.alignment":
            if value_type != 4:
                raise header.fail("general.alignment is not a uint32")
            alignment = header.unpack("I", "alignment")
            if alignment == 0 or alignment & (alignment - 1) or alignment > 1 << 20:
                raise header.fail(f"its alignment {alignment} is not a power of two up to 1 MiB")
            continue
        items_left = _skip_value(header, value_type, items_left, depth=0)

    tensors: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
    for _ in range(tensor_count):
        raw_name = header.string("tensor name")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise header.fail(f"tensor name {raw_name[:80]!r} is not UTF-8") from None
        if name in tensors:
            raise header.fail(f"it names the tensor {name[:80]!r} twice")
        n_dims = header.unpack("I", "tensor dimension count")
        if not 1 <= n_dims <= MAX_DIMS:
            raise header.fail(f"tensor {name[:80]!r} has {n_dims} dimensions (ggml allows 1 to {MAX_DIMS})")
        ne = tuple(header.unpack("Q", "tensor dimensions") for _ in range(n_dims))
        raw_type = header.unpack("I", "tensor type")
        try:
            ggml_type = GGMLQuantizationType(raw_type)
        except ValueError:
            raise header.fail(f"tensor {name[:80]!r} has GGML type {raw_type}, which sdhub does not know") from None
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        if ne[0] % block:
            raise header.fail(f"tensor {name[:80]!r} ({ggml_type.name}) has rows of {ne[0]} elements, not whole "
                              f"blocks of {block}")
        offset = header.unpack("Q", "tensor offset")
        nbytes = math.prod(ne) // block * type_size
        tensors[name] = (ggml_type.name, ne, offset, nbytes)
    data_start = -(-header.pos // alignment) * alignment
    spans = []
    for name, (type_name, ne, offset, nbytes) in tensors.items():
        if offset % alignment:
            raise header.fail(f"tensor {name[:80]!r} starts at offset {offset}, not a multiple of the "
                              f"alignment {alignment}")
        if data_start + offset + nbytes > header.size:
            raise header.fail(f"tensor {name[:80]!r} ({nbytes} bytes at offset {offset}) runs past the end of "
                              "the file")
        spans.append((offset, offset + nbytes, name))
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            raise header.fail(f"tensors {first[:80]!r} and {second[:80]!r} share bytes")
    return _Checked(version, {name: (t, ne, data_start + offset, n) for name, (t, ne, offset, n) in tensors.items()})


def _skip_value(header: _Header, value_type: int, items_left: int, depth: int) -> int:
    """Step over one metadata value, charging its array items to ``items_left``; the items left."""
    if value_type in _SCALARS:
        header.take(struct.calcsize(_SCALARS[value_type]), "metadata value")
        return items_left
    if value_type == _STRING:
        length = header.unpack("Q", "metadata string")
        header.take(length, "metadata string")
        return items_left
    if value_type != _ARRAY:
        raise header.fail(f"a metadata value has type {value_type}, which GGUF does not define")
    if depth > 0:
        raise header.fail("a metadata array holds arrays (nested arrays are not read)")
    item_type = header.unpack("I", "metadata array type")
    count = header.unpack("Q", "metadata array length")
    if count > items_left:
        raise header.fail(f"its metadata arrays hold more than {ARRAY_ITEMS_FLOOR} items plus one per "
                          f"{BYTES_PER_ARRAY_ITEM} bytes of file")
    items_left -= count
    if item_type in _SCALARS:
        header.take(count * struct.calcsize(_SCALARS[item_type]), "metadata array")
        return items_left
    for _ in range(count):
        items_left = _skip_value(header, item_type, items_left, depth + 1)
    return items_left


def _library_reader(file: BinaryIO, source: str) -> Any:
    """``gguf.GGUFReader`` over the already-checked open file (the same inode, not the path again)."""
    from gguf import GGUFReader

    try:
        return GGUFReader(file)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as error:
        raise BadInputError(f"{source}: the gguf library cannot read it ({type(error).__name__}: "
                            f"{str(error)[:200]}); refusing it") from None


def _contents(reader: Any, checked: _Checked, source: str) -> GgufContents:
    from gguf import GGUFValueType

    metadata: dict[str, str] = {}
    orig_shapes: dict[str, tuple[int, ...]] = {}
    for key, reader_field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if key.startswith(ORIG_SHAPE_PREFIX) and reader_field.types == [GGUFValueType.ARRAY, GGUFValueType.INT32]:
            orig_shapes[key[len(ORIG_SHAPE_PREFIX):]] = tuple(int(v) for v in reader_field.contents())
        metadata[key] = _metadata_text(reader_field)
    tensors = []
    for tensor in reader.tensors:
        expected = checked.tensors.get(tensor.name)
        ne = tuple(int(v) for v in tensor.shape)
        if expected is None or (tensor.tensor_type.name, ne, int(tensor.data_offset), int(tensor.n_bytes)) != expected:
            raise BadInputError(f"{source}: the gguf library reads tensor {tensor.name[:80]!r} differently from its "
                                "header; refusing it")
        shape = tuple(reversed(ne))
        original = orig_shapes.get(tensor.name)
        if original is not None and all(d >= 0 for d in original) and math.prod(original) == math.prod(ne):
            shape = original
        tensors.append(GgufTensor(tensor.name, tensor.tensor_type.name, shape, int(tensor.data_offset),
                                  int(tensor.n_bytes)))
    if len(tensors) != len(checked.tensors):
        raise BadInputError(f"{source}: the gguf library finds {len(tensors)} tensors, its header "
                            f"{len(checked.tensors)}; refusing it")
    if metadata.get("general.architecture") in T5_ARCHITECTURES:
        tensors = _t5_names(tensors)
    return GgufContents(checked.version, tensors, metadata)


def _t5_names(tensors: list[GgufTensor]) -> list[GgufTensor]:
    """The tensors under the transformers names ComfyUI-GGUF gives llama.cpp's T5 names (unchanged if two
    would collide)."""
    renamed = []
    for tensor in tensors:
        name = tensor.name
        for old, new in T5_NAMES:
            name = name.replace(old, new)
        renamed.append(replace(tensor, name=name))
    return renamed if len({t.name for t in renamed}) == len(renamed) else tensors


def _metadata_text(reader_field: Any) -> str:
    """A metadata value as text, as safetensors metadata is: long arrays and strings summarised."""
    from gguf import GGUFValueType

    types = reader_field.types
    if types and types[0] == GGUFValueType.ARRAY:
        count = len(reader_field.data)
        item = _TYPE_NAMES.get(int(types[-1]), "value") if len(types) > 1 else "value"
        if count > 64:
            return f"[{count} {item} values]"
    elif types == [GGUFValueType.STRING] and int(reader_field.parts[-1].nbytes) > 4 * MAX_METADATA_TEXT:
        return f"[text of {int(reader_field.parts[-1].nbytes)} bytes]"
    try:
        value = reader_field.contents()
    except (UnicodeDecodeError, ValueError):
        return "[not UTF-8 text]"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_METADATA_TEXT else text[:MAX_METADATA_TEXT - 1] + "…"
