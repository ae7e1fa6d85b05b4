"""bitsandbytes 4-bit (NF4/FP4) checkpoints, as Forge's ``flux1-dev-bnb-nf4`` ships them.

bitsandbytes saves a 4-bit weight ``W.weight`` as packed bytes (two values a byte, shape
``[n/2, 1]``, uint8) with its quantisation state beside it: ``W.weight.absmax``,
``W.weight.quant_map``, with double quantisation ``W.weight.nested_absmax`` and
``W.weight.nested_quant_map``, and ``W.weight.quant_state.bitsandbytes__nf4`` (or ``__fp4``): a
uint8 tensor holding JSON with the weight's real ``shape``, ``dtype`` and ``blocksize``.

``read_bnb_weights`` reads those small JSON tensors (a few hundred bytes each, never the
weights) so that each packed weight is described with its type (``"NF4"``) and its shape in the
model: detection then sees the layout it knows. The file is reported, hashed and catalogued;
rewriting it would mean dequantising, which is not sdhub's job.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any

from sdhub.formats.dtypes import DTYPES

QUANT_STATE_MARK = ".quant_state.bitsandbytes__"
#: A quant_state JSON is a few hundred bytes; anything much larger is not one.
_MAX_STATE_BYTES = 64 * 1024
_TYPES = {"nf4": "NF4", "fp4": "FP4"}


def read_bnb_weights(fd: int, entries: dict[str, Any]) -> tuple[dict[str, tuple[str, tuple[int, ...], int]], Counter]:
    """The 4-bit weights of a safetensors file: name -> (type name, model shape, stored bytes), and
    the count of tensors by type (the 4-bit ones under their type name).

    ``entries`` are the header's ``SafetensorsEntry`` values by name. Empty when the file holds no
    bitsandbytes 4-bit weights. A weight whose state cannot be read keeps its stored shape.
    """
    weights: dict[str, tuple[str, tuple[int, ...], int]] = {}
    for name, entry in entries.items():
        mark = name.find(QUANT_STATE_MARK)
        if mark < 0:
            continue
        weight_name = name[:mark]
        type_name = _TYPES.get(name[mark + len(QUANT_STATE_MARK):])
        packed = entries.get(weight_name)
        if type_name is None or packed is None:
            continue
        stored = packed.end - packed.start
        shape = _model_shape(fd, entry, stored)
        weights[weight_name] = (type_name, shape if shape is not None else tuple(packed.shape), stored)
    if not weights:
        return {}, Counter()
    types = Counter(weights[name][0] if name in weights else entry.dtype for name, entry in entries.items())
    return weights, types


def _model_shape(fd: int, state: Any, stored: int) -> tuple[int, ...] | None:
    """The weight's shape from its quant_state JSON, when it fits the packed bytes (two values a byte)."""
    length = state.end - state.start
    if state.dtype != "U8" or not 0 < length <= _MAX_STATE_BYTES:
        return None
    try:
        document = json.loads(os.pread(fd, length, state.start).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    shape = document.get("shape") if isinstance(document, dict) else None
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 8:
        return None
    if (math.prod(shape) + 1) // 2 != stored // DTYPES["U8"].itemsize:
        return None
    return tuple(shape)
