"""Precision casting, one tensor at a time: the path ``convert --dtype`` and ``prune --dtype`` share.

Only floating tensors change type; integer tensors (CLIP position ids, step counters) are never
cast. bf16 uses torch's conversion, which rounds to nearest-even. A value that fp16 cannot hold
(|x| >= 65520 rounds to infinity) stops the cast unless forced; forced values are clamped to
±65504 so the model keeps finite weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sdhub.errors import VerificationError
from sdhub.formats.dtypes import DTYPES, dtype_name, torch_dtype

if TYPE_CHECKING:  # torch is imported where a tensor is cast: `convert` without --dtype never needs it
    import torch

#: What users may pass as ``--dtype``: a type, or "keep" for no cast.
DTYPE_CHOICES = ("fp16", "bf16", "fp32", "keep")
FP16_MAX = 65504.0
FP16_OVERFLOW = 65520.0  # the smallest magnitude that rounds to inf in fp16
#: Float types narrower than fp16 (fp8): a cast to fp16 or bf16 would only make them larger.
NARROW_FLOATS = frozenset({"F8_E4M3", "F8_E5M2"})


def target_dtype(choice: str | None) -> str | None:
    """The safetensors type name for a ``--dtype`` choice (``None`` for keep)."""
    if choice is None or choice == "keep":
        return None
    return dtype_name(choice)


def output_dtype(source: Any, target: str | None) -> str:
    """The type a tensor of ``source`` type is written as: floats take ``target``, the rest stay.

    A cast to fp16 or bf16 is for saving space, so fp8 tensors keep their type then (only fp32 widens them).
    """
    source_name = dtype_name(source)
    if target is None or not DTYPES[source_name].floating:
        return source_name
    if source_name in NARROW_FLOATS and DTYPES[target].itemsize <= 2:
        return source_name
    return target


def measurable(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor in a type torch's reductions (min/max, isnan...) accept: fp8 is widened to fp16, exactly."""
    import torch

    if dtype_name(tensor.dtype) in NARROW_FLOATS:
        return tensor.to(torch.float16)
    return tensor


def fp16_overflow_count(tensor: torch.Tensor) -> int:
    """How many finite values of a floating tensor become ±inf in fp16."""
    import torch

    if not tensor.is_floating_point() or tensor.dtype == torch.float16 or fits_fp16(tensor):
        return 0
    overflow = torch.isinf(tensor.to(torch.float16)) & torch.isfinite(tensor)
    return int(overflow.sum())


def fits_fp16(tensor: torch.Tensor) -> bool:
    """True when no value can round to inf in fp16 (one fast min/max pass; NaN answers False)."""
    import torch

    if tensor.numel() == 0 or dtype_name(tensor.dtype) in NARROW_FLOATS:  # fp8's range lies within fp16's
        return True
    low, high = torch.aminmax(tensor)
    return bool(low > -FP16_OVERFLOW) and bool(high < FP16_OVERFLOW)


def cast_tensor(tensor: torch.Tensor, target: str | None, *, name: str = "tensor", force: bool = False,
                source_file: str = "") -> torch.Tensor:
    """``tensor`` in the type ``output_dtype`` gives; refuses an fp16 overflow unless ``force``."""
    wanted = output_dtype(tensor.dtype, target)
    if dtype_name(tensor.dtype) == wanted:
        return tensor
    import torch

    dtype = torch_dtype(wanted)
    result = tensor.to(dtype)
    if dtype == torch.float16 and not fits_fp16(tensor):
        overflow = torch.isinf(result) & torch.isfinite(tensor)
        count = int(overflow.sum())
        if count:
            if not force:
                where = f"{source_file}: " if source_file else ""
                raise VerificationError(
                    f"{where}{count} value(s) of {name} exceed fp16's range (±{FP16_MAX:g}) and would become inf; "
                    "use --dtype bf16, keep fp32, or --force to clamp them to ±65504")
            result = torch.where(overflow, tensor.clamp(-FP16_MAX, FP16_MAX).to(dtype), result)
    return result.contiguous()
