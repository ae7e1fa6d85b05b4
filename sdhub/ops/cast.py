"""Precision casting, one tensor at a time: the path ``convert --dtype`` and ``prune --dtype`` share.

Only floating tensors change type; integer tensors (CLIP position ids, step counters) are never
cast. bf16 uses torch's conversion, which rounds to nearest-even. A value that fp16 cannot hold
(|x| >= 65520 rounds to infinity) stops the cast unless forced; forced values are clamped to
±65504 so the model keeps finite weights.

fp8 (float8_e4m3fn) is for the diffusion model's matrices and convolution kernels only (``fp8_tensor``);
the rest of the model is stored in fp16. Values beyond e4m3fn's ±448 are clamped to ±448 (never NaN,
whatever torch's own conversion does) and counted per tensor in an ``Fp8Clipping`` report.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdhub.errors import VerificationError
from sdhub.formats.dtypes import DTYPES, dtype_name, torch_dtype

if TYPE_CHECKING:  # torch is imported where a tensor is cast: `convert` without --dtype never needs it
    import torch

#: What users may pass as ``--dtype``: a type, or "keep" for no cast.
DTYPE_CHOICES = ("fp16", "bf16", "fp32", "fp8", "keep")
FP16_MAX = 65504.0
FP16_OVERFLOW = 65520.0  # the smallest magnitude that rounds to inf in fp16
#: Float types narrower than fp16 (fp8): a cast to fp16 or bf16 would only make them larger.
NARROW_FLOATS = frozenset({"F8_E4M3", "F8_E5M2"})
FP8 = "F8_E4M3"
FP8_MAX = 448.0  # float8_e4m3fn's largest finite value; it has no infinity
#: What ``--dtype fp8`` stores every float that is not one of the diffusion model's matrices in.
FP8_COMPANION = "F16"
# Diffusion-model tensors that stay 16 bit under fp8 although they are not vectors: positional and patch
# embeddings (SD3's patch convolution is x_embedder.proj, pos_embed.proj in diffusers' names), which diffusers'
# layerwise casting also leaves alone. Norm scales are vectors; the modulation linears diffusers names
# "norm1.linear" are BFL's "img_mod.lin" and go to fp8 in either layout.
_KEEP_16BIT = re.compile(r"pos_embed|patch_embed|x_embedder\.proj")


def fp8_tensor(name: str, shape: tuple[int, ...]) -> bool:
    """Whether ``--dtype fp8`` stores this diffusion-model tensor in fp8: matrices and convolution kernels.

    Biases, norm scales and other vectors (1-D, few bytes, most sensitive to rounding) and positional
    embeddings keep 16 bits, as in the fp8 files ComfyUI and Forge load.
    """
    return len(shape) >= 2 and not _KEEP_16BIT.search(name)


@dataclass
class Fp8Clipping:
    """Values that an fp8 cast clamped to ±448, per tensor: how many, and the largest magnitude among them."""

    counts: dict[str, int] = field(default_factory=dict)
    max_abs: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, count: int, max_abs: float) -> None:
        """Count ``count`` clipped values of ``name`` (a tensor may arrive in several chunks)."""
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + count
            self.max_abs[name] = max(self.max_abs.get(name, 0.0), max_abs)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """``{"total", "tensors": {name: {"count", "max_abs"}}}``; an infinite source value shows as "inf"."""
        return {"total": self.total, "tensors": {
            name: {"count": count, "max_abs": self.max_abs[name] if self.max_abs[name] != float("inf") else "inf"}
            for name, count in sorted(self.counts.items())}}


def target_dtype(choice: str | None) -> str | None:
    """The safetensors type name for a ``--dtype`` choice (``None`` for keep)."""
    if choice is None or choice == "keep":
        return None
    if choice == "fp8":  # e4m3fn: more precision than e5m2, the type fp8 checkpoints are published in
        return FP8
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
                source_file: str = "", clipping: Fp8Clipping | None = None) -> torch.Tensor:
    """``tensor`` in the type ``output_dtype`` gives; refuses an fp16 overflow unless ``force``.

    An fp8 cast clamps to ±448 and, given ``clipping``, counts there the values it clamped.
    """
    wanted = output_dtype(tensor.dtype, target)
    if dtype_name(tensor.dtype) == wanted:
        return tensor
    if wanted == FP8:
        return _cast_fp8(tensor, name, clipping)
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


def _cast_fp8(tensor: torch.Tensor, name: str, clipping: Fp8Clipping | None) -> torch.Tensor:
    """``tensor`` in float8_e4m3fn, values beyond ±448 clamped there (and counted in ``clipping``)."""
    import torch

    if tensor.numel():
        low, high = torch.aminmax(tensor)
        if not (bool(low >= -FP8_MAX) and bool(high <= FP8_MAX)):  # out of range, or a NaN hides the range
            magnitude = tensor.abs()
            beyond = magnitude > FP8_MAX  # NaN is not clipping: it stays NaN
            count = int(beyond.sum())
            if count:
                if clipping is not None:
                    clipping.add(name, count, float(magnitude[beyond].max()))
                tensor = tensor.clamp(-FP8_MAX, FP8_MAX)
    return tensor.to(torch.float8_e4m3fn).contiguous()
