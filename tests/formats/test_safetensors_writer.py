"""The streaming writer: correct files from producers and raw ranges, atomic, and clean on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from sdhub.errors import SdhubError, UsageError
from sdhub.formats import DeferredValue, RawSource, TensorSpec, write_safetensors


def _spec(name: str, tensor: torch.Tensor) -> TensorSpec:
    return TensorSpec(name, tensor.dtype, tuple(tensor.shape), producer=lambda: tensor)


def test_producers_raw_ranges_and_transforms_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "raw.bin"
    floats = torch.arange(10, dtype=torch.float32)
    source.write_bytes(b"junk" + floats.numpy().tobytes())
    half = torch.randn(3, generator=torch.Generator().manual_seed(0)).half()
    with open(source, "rb") as handle:
        raw = RawSource(handle.fileno(), 4, 40, "F32")
        specs = [
            _spec("half", half),
            TensorSpec("copied", "F32", (2, 5), raw=raw),
            TensorSpec("cast", torch.bfloat16, (10,), raw=raw, transform=lambda t: t.to(torch.bfloat16)),
            _spec("ids", torch.arange(4)),
        ]
        out = write_safetensors(tmp_path / "o.safetensors", specs, {"note": "hi", "later": DeferredValue(5, lambda: "abcde")})
    tensors = load_file(out)
    assert torch.equal(tensors["copied"], floats.view(2, 5))
    assert torch.equal(tensors["cast"], floats.bfloat16())
    assert torch.equal(tensors["half"], half) and torch.equal(tensors["ids"], torch.arange(4))
    with safe_open(out, "pt") as handle:
        assert handle.metadata() == {"note": "hi", "later": "abcde"}


def test_refuses_to_replace_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"old")
    with pytest.raises(UsageError, match="already exists"):
        write_safetensors(out, [_spec("a", torch.ones(1))], overwrite=False)
    assert out.read_bytes() == b"old"
    write_safetensors(out, [_spec("a", torch.ones(1))])
    assert torch.equal(load_file(out)["a"], torch.ones(1))


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_failure_midway_leaves_no_file(tmp_path: Path, failure: type[BaseException]) -> None:
    def explode() -> torch.Tensor:
        raise failure("stop")

    specs = [_spec("a", torch.ones(100)), TensorSpec("b", torch.float32, (3,), producer=explode)]
    with pytest.raises(failure):
        write_safetensors(tmp_path / "o.safetensors", specs)
    assert list(tmp_path.iterdir()) == []


def test_a_producer_returning_the_wrong_tensor_is_caught(tmp_path: Path) -> None:
    specs = [TensorSpec("a", torch.float16, (2,), producer=lambda: torch.ones(2))]
    with pytest.raises(SdhubError, match="came out as"):
        write_safetensors(tmp_path / "o.safetensors", specs)
    assert list(tmp_path.iterdir()) == []


def test_duplicate_names_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="twice"):
        write_safetensors(tmp_path / "o.safetensors", [_spec("a", torch.ones(1)), _spec("a", torch.ones(1))])
    assert list(tmp_path.iterdir()) == []


def test_file_mode_follows_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        out = write_safetensors(tmp_path / "o.safetensors", [_spec("a", torch.ones(1))])
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o644
