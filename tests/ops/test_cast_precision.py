"""cast_tensor: bf16 rounds to nearest-even, integers stay, fp16 overflow refuses unless forced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdhub.errors import VerificationError
from sdhub.ops.cast import cast_tensor, fp16_overflow_count, output_dtype, target_dtype


def _bf16_round_nearest_even(values: torch.Tensor) -> torch.Tensor:
    """Independent bit-level float32 -> bfloat16 rounding (finite inputs), as the hardware manuals define it."""
    bits = values.numpy().view(np.uint32).astype(np.uint64)
    lsb = (bits >> 16) & 1
    rounded = ((bits + 0x7FFF + lsb) >> 16).astype(np.uint16)
    return torch.from_numpy(rounded.view(np.int16).copy()).view(torch.bfloat16)


def test_bf16_cast_rounds_to_nearest_even_and_equals_torch() -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(100_000, generator=generator) * 10
    # Exact ties between two bf16 values: 1 + 2^-8 (rounds down to even 1.0) and 1 + 3*2^-8 (rounds up).
    ties = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3.0 + 2**-7], dtype=torch.float32)
    values = torch.cat([values, ties])
    cast = cast_tensor(values, target_dtype("bf16"))
    assert cast.dtype == torch.bfloat16
    assert torch.equal(cast, values.to(torch.bfloat16))
    assert torch.equal(cast.view(torch.int16), _bf16_round_nearest_even(values).view(torch.int16))
    assert cast[-4:].float().tolist() == [1.0, 1 + 4 * 2**-8, -1.0, 3.0]  # not truncation


def test_fp16_cast_equals_torch_and_integers_are_never_cast() -> None:
    weights = torch.randn(64, 64)
    assert torch.equal(cast_tensor(weights, target_dtype("fp16")), weights.to(torch.float16))
    position_ids = torch.arange(77, dtype=torch.int64).unsqueeze(0)
    kept = cast_tensor(position_ids, target_dtype("fp16"))
    assert kept.dtype == torch.int64 and torch.equal(kept, position_ids)
    assert output_dtype(torch.int32, "F16") == "I32"
    assert output_dtype(torch.float16, None) == "F16"
    assert cast_tensor(weights, target_dtype("keep")) is weights


def test_fp16_overflow_stops_the_cast_with_a_message() -> None:
    weights = torch.tensor([1.0, 70000.0, -1e6, 65504.0])
    assert fp16_overflow_count(weights) == 2
    with pytest.raises(VerificationError, match=r"2 value\(s\) of model.x exceed fp16's range.*--force"):
        cast_tensor(weights, "F16", name="model.x")


def test_forced_fp16_cast_clamps_instead_of_writing_inf() -> None:
    weights = torch.tensor([1.0, 70000.0, -1e6, float("inf")])
    cast = cast_tensor(weights, "F16", force=True)
    assert cast.tolist() == [1.0, 65504.0, -65504.0, float("inf")]  # an inf already there stays inf
