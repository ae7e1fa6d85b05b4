"""--dtype fp8: the diffusion model's matrices in float8_e4m3fn, the rest in fp16, values beyond ±448 reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from sdhub.errors import UsageError
from sdhub.models import components as comp
from sdhub.ops.cast import FP8_MAX, Fp8Clipping, cast_tensor, fp8_tensor, target_dtype
from sdhub.ops.prune import PruneOptions, prune
from sdhub.testing import factory, writers

E4M3 = torch.float8_e4m3fn


def expected_fp8(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float().clamp(-FP8_MAX, FP8_MAX).to(E4M3)


def stored_types(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as handle:
        return {name: str(handle.get_slice(name).get_dtype()) for name in handle.keys()}


def test_values_beyond_448_are_clamped_and_counted_per_tensor() -> None:
    values = torch.tensor([0.5, -3.0, 447.0, 448.0, 449.0, -1000.0, 2e6, float("inf"), float("nan")])
    clipping = Fp8Clipping()
    cast = cast_tensor(values, target_dtype("fp8"), name="model.diffusion_model.w", clipping=clipping)
    assert cast.dtype == E4M3
    widened = cast.float()
    assert widened[:4].tolist() == [0.5, -3.0, 448.0, 448.0]
    assert widened[4:8].tolist() == [448.0, -448.0, 448.0, 448.0]  # never NaN, whatever the torch version
    assert torch.isnan(widened[8])  # a NaN stays a NaN and is not "clipping"
    assert clipping.counts == {"model.diffusion_model.w": 4}
    assert clipping.to_dict()["tensors"]["model.diffusion_model.w"]["max_abs"] == "inf"
    # A tensor arriving in chunks adds up; values inside the range cost nothing.
    clipping.add("b", 2, 500.0)
    clipping.add("b", 1, 900.0)
    assert clipping.to_dict()["tensors"]["b"] == {"count": 3, "max_abs": 900.0} and clipping.total == 7
    inside = torch.randn(1000) * 100
    assert torch.equal(cast_tensor(inside, "F8_E4M3").view(torch.uint8), inside.to(E4M3).view(torch.uint8))


def test_only_matrices_and_kernels_of_the_diffusion_model_go_to_fp8() -> None:
    assert fp8_tensor("model.diffusion_model.double_blocks.0.img_attn.qkv.weight", (96, 32))
    assert fp8_tensor("model.diffusion_model.input_blocks.0.0.weight", (320, 4, 3, 3))
    assert not fp8_tensor("model.diffusion_model.double_blocks.0.img_attn.qkv.bias", (96,))
    assert not fp8_tensor("model.diffusion_model.double_blocks.0.img_attn.norm.query_norm.scale", (16,))
    assert not fp8_tensor("model.diffusion_model.pos_embed", (1, 64, 32))
    assert not fp8_tensor("model.diffusion_model.x_embedder.proj.weight", (32, 16, 2, 2))  # SD3's patch conv
    assert not fp8_tensor("pos_embed.proj.weight", (32, 16, 2, 2))  # the same in diffusers' names
    # One weight, one type, whatever the layout: BFL's modulation linear is diffusers' norm1.linear.
    assert fp8_tensor("double_blocks.0.img_mod.lin.weight", (192, 32))
    assert fp8_tensor("transformer_blocks.0.norm1.linear.weight", (192, 32))


@pytest.fixture(scope="module")
def sd1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fp8")
    path = factory.sd1_checkpoint(folder / "sd1.safetensors")
    state = load_file(str(path))
    # Two planted values beyond e4m3fn's range, as a badly trained or merged model can have.
    conv = "model.diffusion_model.input_blocks.0.0.weight"
    state[conv] = state[conv].clone()
    state[conv].view(-1)[0] = 1000.0
    state[conv].view(-1)[1] = -600.0
    return writers.save_tensors(folder / "sd1-big.safetensors", state)


def test_prune_fp8_casts_the_unet_and_leaves_text_encoder_and_vae_at_fp16(sd1: Path, tmp_path: Path) -> None:
    report = prune(sd1, tmp_path / "out.safetensors", PruneOptions(dtype="fp8"))
    source, out = load_file(str(sd1)), load_file(str(tmp_path / "out.safetensors"))
    assert set(out) == set(source)
    for name, tensor in out.items():
        component = comp.component_of(name)
        if not source[name].is_floating_point() or component == comp.DDPM_BUFFERS:  # indices, noise schedule
            assert torch.equal(tensor, source[name]), name
        elif component == comp.UNET and source[name].dim() >= 2:
            assert tensor.dtype == E4M3, name
            assert torch.equal(tensor.view(torch.uint8), expected_fp8(source[name]).view(torch.uint8)), name
        else:  # UNet biases and norms, text encoder, VAE
            assert tensor.dtype == torch.float16, name
            assert torch.equal(tensor, source[name].to(torch.float16)), name
    assert report.tensors_by_dtype["F8_E4M3"] > 0 and report.tensors_by_dtype["F16"] > 0
    assert report.fp8_clipping == {"total": 2, "tensors": {
        "model.diffusion_model.input_blocks.0.0.weight": {"count": 2, "max_abs": 1000.0}}}
    assert any("beyond fp8's ±448" in warning for warning in report.warnings)
    assert report.bytes_after < 0.75 * report.bytes_before


def test_vae_dtype_fp32_keeps_the_vae_in_full_precision_under_fp8(sd1: Path, tmp_path: Path) -> None:
    prune(sd1, tmp_path / "out.safetensors", PruneOptions(dtype="fp8", vae_dtype="fp32"))
    types = stored_types(tmp_path / "out.safetensors")
    vae = {types[name] for name in types if comp.component_of(name) == comp.VAE}
    text = {types[name] for name in types
            if comp.component_of(name) == comp.TEXT_ENCODER and "position_ids" not in name}
    assert vae == {"F32"} and text == {"F16"}


def test_cli_prune_fp8_reports_the_split_and_the_clamped_values(run_cli, sd1: Path, tmp_path: Path) -> None:
    result = run_cli("prune", sd1, "--dtype", "fp8", "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 0, result.stderr
    assert "diffusion-model tensors in fp8, the rest in 16 bit; 2 value(s) clamped" in result.stderr
    assert "warning: 2 value(s) in 1 tensor(s) lay beyond fp8's ±448" in result.stderr
    as_json = run_cli("prune", sd1, "--dtype", "fp8", "-o", tmp_path / "again.safetensors", "--json")
    data = json.loads(as_json.stdout)
    assert data["dtype"] == "fp8" and data["fp8_clipping"]["total"] == 2
    metadata = safe_open(str(tmp_path / "again.safetensors"), "pt").metadata()
    assert json.loads(metadata["sdhub.pruned"])["dtype"] == "fp8"


def test_fp8_is_refused_where_there_is_no_diffusion_model(run_cli, tmp_path: Path) -> None:
    lora = factory.lora(tmp_path / "style.safetensors", base="sd1")
    vae = factory.vae(tmp_path / "vae.safetensors")
    for path, said in ((lora, "is a lora: --dtype fp8 is for checkpoints and diffusion models"),
                       (vae, "is a vae: --dtype fp8 is for checkpoints and diffusion models")):
        result = run_cli("prune", path, "--dtype", "fp8")
        assert result.exit_code == 2, result.stderr
        assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*-pruned.safetensors"))


def test_convert_points_fp8_to_prune(sd1: Path, tmp_path: Path) -> None:
    from sdhub.ops.convert import convert

    with pytest.raises(UsageError, match="sdhub prune sd1-big.safetensors --dtype fp8"):
        convert(sd1, tmp_path / "out.safetensors", dtype="fp8")
    assert not (tmp_path / "out.safetensors").exists()
