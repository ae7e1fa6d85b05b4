"""Tensor element types by their safetensors names, without importing torch.

Readers describe tensors with these names (``"F32"``, ``"BF16"``...) so that a plain
conversion never needs torch; ``torch_dtype`` / ``dtype_name`` translate at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdhub.errors import BadInputError, UsageError
from sdhub.formats.quantised import QUANTISED, quantised_refusal


@dataclass(frozen=True)
class DType:
    """One element type: its safetensors name, size in bytes and torch attribute name."""

    name: str
    itemsize: int
    torch_name: str
    floating: bool


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("F64", 8, "float64", True),
        DType("F32", 4, "float32", True),
        DType("F16", 2, "float16", True),
        DType("BF16", 2, "bfloat16", True),
        DType("F8_E4M3", 1, "float8_e4m3fn", True),
        DType("F8_E5M2", 1, "float8_e5m2", True),
        DType("I64", 8, "int64", False),
        DType("I32", 4, "int32", False),
        DType("I16", 2, "int16", False),
        DType("I8", 1, "int8", False),
        DType("U64", 8, "uint64", False),
        DType("U32", 4, "uint32", False),
        DType("U16", 2, "uint16", False),
        DType("U8", 1, "uint8", False),
        DType("BOOL", 1, "bool", False),
    )
}

_BY_TORCH_NAME = {d.torch_name: d for d in DTYPES.values()}

#: Spellings users type for ``--dtype`` and what they mean.
USER_DTYPES = {"fp16": "F16", "float16": "F16", "half": "F16", "bf16": "BF16", "bfloat16": "BF16",
               "fp32": "F32", "float32": "F32", "float": "F32"}


def is_floating(name: str) -> bool:
    """Whether ``name`` is a plain floating type (quantised types are not: their bytes are not floats)."""
    dtype = DTYPES.get(name)
    return dtype is not None and dtype.floating


def dtype_name(dtype: Any) -> str:
    """The safetensors name of a torch dtype, a safetensors name or a torch attribute name."""
    if isinstance(dtype, str):
        if dtype in DTYPES:
            return dtype
        if dtype in _BY_TORCH_NAME:
            return _BY_TORCH_NAME[dtype].name
        if dtype.lower() in USER_DTYPES:
            return USER_DTYPES[dtype.lower()]
        if dtype in QUANTISED:
            raise BadInputError(quantised_refusal(dtype))
        raise UsageError(f"unknown tensor type {dtype!r}")
    text = str(dtype)  # torch.float32 -> "torch.float32" without importing torch here
    if text.startswith("torch.") and text[6:] in _BY_TORCH_NAME:
        return _BY_TORCH_NAME[text[6:]].name
    raise UsageError(f"tensor type {text} cannot be stored in .safetensors")


def torch_dtype(name: str) -> Any:
    """The torch dtype for a safetensors type name (imports torch)."""
    import torch

    return getattr(torch, DTYPES[dtype_name(name)].torch_name)


def itemsize(name: str) -> int:
    return DTYPES[dtype_name(name)].itemsize
