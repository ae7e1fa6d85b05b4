"""Flux and SD3 files in their published layouts: components seen right, pruned and cast to fp16 and fp8."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from sdhub.models import components as comp
from sdhub.ops.cast import FP8_MAX
from sdhub.ops.hashing import hash_components
from sdhub.ops.inspect import inspect_file
from sdhub.ops.prune import PruneOptions, prune
from sdhub.testing import families, writers
from sdhub.testing.lightning import training_extras

E4M3 = torch.float8_e4m3fn


def groups(names) -> dict[str, int]:
    return {component: len(keys) for component, keys in comp.group_by_component(names).items()}


def test_real_layout_headers_split_into_their_components() -> None:
    flux = families.flux_checkpoint_shapes("dev", size="full")
    assert set(groups(flux)) == {comp.UNET, comp.VAE, comp.TEXT_ENCODER, comp.TEXT_ENCODER_3}
    assert groups(flux)[comp.UNET] == len(families.flux_shapes("dev", size="full"))
    sd3 = families.sd3_checkpoint_shapes("sd3.5-large", size="full")
    assert set(groups(sd3)) == {comp.UNET, comp.VAE, comp.TEXT_ENCODER, comp.TEXT_ENCODER_2, comp.TEXT_ENCODER_3}
    # Diffusion models alone, in BFL's, SAI's and diffusers' names, are all diffusion model.
    for shapes in (families.flux_shapes("fill", size="full", layout="bfl"),
                   families.flux_shapes("schnell", size="full", layout="diffusers"),
                   families.sd3_shapes("sd3.5-medium", size="full", layout="original"),
                   families.sd3_shapes("sd3-medium", size="full", layout="diffusers"),
                   families.unet_shapes("sdxl", layout="ldm-bare"), families.unet_shapes("sdxl", layout="diffusers")):
        assert set(groups(shapes)) == {comp.UNET}
    # Standalone encoders: T5's bare "encoder." is not the VAE's.
    assert set(groups(families.text_encoder_shapes("t5xxl", size="full"))) == {comp.TEXT_ENCODER_3}
    assert set(groups(families.text_encoder_shapes("clip-l", size="full"))) == {comp.TEXT_ENCODER}
    assert set(groups(families.vae16_shapes(size="full"))) == {comp.VAE}
    # Inside a checkpoint an encoder has the names of its standalone file, so their hashes can agree.
    inside = {comp.canonical_key(k) for k in flux if comp.component_of(k) == comp.TEXT_ENCODER_3}
    assert inside == set(families.text_encoder_shapes("t5xxl", size="full"))
    # LoRAs for Flux/SD3 transformers and their third (T5) encoder.
    assert comp.component_of("transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight") == comp.UNET
    assert comp.component_of("diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight") == comp.UNET
    assert comp.component_of("lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight") == comp.TEXT_ENCODER_3


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return families.write_flux_checkpoint(tmp_path_factory.mktemp("flux") / "flux1-dev.safetensors", "dev")


def test_inspect_names_the_flux_checkpoint_components(flux: Path) -> None:
    report = inspect_file(flux)
    assert {c.name for c in report.components} == {"unet", "vae", "text_encoder", "text_encoder_3"}
    assert not [p for p in report.problems if p.code == "unknown_keys"]


def test_encoders_and_vae_inside_a_flux_checkpoint_hash_as_their_standalone_files(flux: Path, tmp_path: Path) -> None:
    state = load_file(str(flux))
    split = {"t5xxl.safetensors": "text_encoders.t5xxl.transformer.", "clip_l.safetensors":
             "text_encoders.clip_l.transformer.", "ae.safetensors": "vae."}
    inside = hash_components(flux)
    for file_name, prefix in split.items():  # as ComfyUI's split files hold them
        part = writers.save_tensors(tmp_path / file_name, {k[len(prefix):]: v for k, v in state.items()
                                                           if k.startswith(prefix)})
        alone = hash_components(part)
        assert len(alone) == 1, (file_name, alone)
        component, digest = next(iter(alone.items()))
        assert inside[component] == digest, file_name
    assert set(inside) == {comp.UNET, comp.VAE, comp.TEXT_ENCODER, comp.TEXT_ENCODER_3}


def expected(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == E4M3:
        return tensor.float().clamp(-FP8_MAX, FP8_MAX).to(E4M3)
    return tensor.to(dtype)


def check_cast(source: dict[str, torch.Tensor], out: dict[str, torch.Tensor], dtype: str) -> None:
    """Every tensor kept, in the type asked for, with the values a plain cast gives."""
    assert set(out) == set(source)
    for name, tensor in out.items():
        matrix = comp.component_of(name) == comp.UNET and tensor.dim() >= 2
        want = E4M3 if dtype == "fp8" and matrix else torch.float16
        if not source[name].is_floating_point() or name in comp.POSITION_ID_KEYS:  # indices are never cast
            want = source[name].dtype
        assert tensor.dtype == want, name
        assert torch.equal(tensor.view(torch.uint8), expected(source[name], want).view(torch.uint8)), name


@pytest.mark.parametrize("dtype", ["fp16", "fp8"])
def test_flux_checkpoint_prunes_to_fp16_and_fp8(flux: Path, tmp_path: Path, dtype: str) -> None:
    out = tmp_path / f"flux1-dev-{dtype}.safetensors"
    report = prune(flux, out, PruneOptions(dtype=dtype))
    check_cast(load_file(str(flux)), load_file(str(out)), dtype)
    assert report.dropped == {} and report.vae == "kept"
    if dtype == "fp8":
        fp8 = report.tensors_by_dtype["F8_E4M3"]
        # The transformer's matrices: 5 per double-block stream, 3 per single block, 10 embedder/final layers.
        assert fp8 == 2 * 2 * 5 + 2 * 3 + 10
        assert report.fp8_clipping == {"total": 0, "tensors": {}}
        assert report.bytes_after < report.bytes_before


def test_a_flux_training_checkpoint_loses_ema_optimizer_and_counters(flux: Path, tmp_path: Path) -> None:
    state = load_file(str(flux))
    transformer = [k for k in state if comp.component_of(k) == comp.UNET]
    ema = {comp.ema_key_for(k): (state[k].float() * 0.5).to(state[k].dtype) for k in transformer}
    first = {k: tuple(state[k].shape) for k in transformer[:2]}
    source = writers.save_any(tmp_path / "flux-train.ckpt", "ckpt", {**state, **ema}, wrapper=training_extras(first))

    report = prune(source, tmp_path / "out.safetensors", PruneOptions(dtype="fp8"))
    out = load_file(str(tmp_path / "out.safetensors"))
    assert set(out) == set(state)  # every inference tensor, nothing of training
    assert report.ema == "used" and report.ema_tensors_used == len(transformer)
    assert report.dropped == {"ema": len(ema)}
    assert {"optimizer_states", "lr_schedulers", "callbacks", "epoch"} <= set(report.training_entries_dropped)
    qkv = "model.diffusion_model.double_blocks.0.img_attn.qkv.weight"
    assert torch.equal(out[qkv].view(torch.uint8), expected(ema[comp.ema_key_for(qkv)], E4M3).view(torch.uint8))


def test_a_bare_bfl_transformer_casts_to_fp8(tmp_path: Path) -> None:
    source = families.write_flux(tmp_path / "flux1-schnell.safetensors", "schnell", layout="bfl")
    prune(source, tmp_path / "out.safetensors", PruneOptions(dtype="fp8"))
    check_cast(load_file(str(source)), load_file(str(tmp_path / "out.safetensors")), "fp8")


def test_sd3_checkpoint_keeps_its_three_encoders_and_positional_embedding_at_16_bit(tmp_path: Path) -> None:
    source = families.write_sd3_checkpoint(tmp_path / "sd3.5_medium.safetensors", "sd3.5-medium")
    report = prune(source, tmp_path / "out.safetensors", PruneOptions(dtype="fp8"))
    out, before = load_file(str(tmp_path / "out.safetensors")), load_file(str(source))
    assert set(out) == set(before) and report.dropped == {}
    by_component: dict[str, set[torch.dtype]] = {}
    for name, tensor in out.items():
        if tensor.is_floating_point():
            by_component.setdefault(comp.component_of(name), set()).add(tensor.dtype)
    assert by_component[comp.UNET] == {E4M3, torch.float16}
    for encoder in (comp.TEXT_ENCODER, comp.TEXT_ENCODER_2, comp.TEXT_ENCODER_3, comp.VAE):
        assert by_component[encoder] == {torch.float16}, encoder
    assert out["model.diffusion_model.pos_embed"].dtype == torch.float16
    assert out["model.diffusion_model.x_embedder.proj.weight"].dtype == torch.float16
    assert out["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"].dtype == E4M3
    with safe_open(str(tmp_path / "out.safetensors"), "pt") as handle:
        assert handle.metadata()["sdhub.source_file"] == "sd3.5_medium.safetensors"


def test_a_vae_baked_into_a_flux_checkpoint_goes_where_comfyui_reads_it(flux: Path, tmp_path: Path) -> None:
    vae = families.write_vae16(tmp_path / "ae.safetensors", seed=7)
    prune(flux, tmp_path / "out.safetensors", PruneOptions(vae="bake", vae_file=str(vae)))
    out, before, new = (load_file(str(p)) for p in (tmp_path / "out.safetensors", flux, vae))
    assert set(out) == set(before)  # under vae., never first_stage_model.
    assert torch.equal(out["vae.decoder.conv_in.weight"], new["decoder.conv_in.weight"].to(torch.float16))
    assert not torch.equal(out["vae.decoder.conv_in.weight"], before["vae.decoder.conv_in.weight"].to(torch.float16))


def test_an_sd3_checkpoint_cast_to_fp8_loads_in_diffusers_with_the_expected_weights(tmp_path: Path) -> None:
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    source = families.write_sd3_checkpoint(tmp_path / "sd3.5_medium.safetensors", "sd3.5-medium")
    out = tmp_path / "sd3.5_medium-fp8.safetensors"
    prune(source, out, PruneOptions(dtype="fp8"))
    config = tmp_path / "config" / "transformer"
    config.mkdir(parents=True)
    settings = families.tiny_sd3_config("sd3.5-medium")
    config.joinpath("config.json").write_text(json.dumps(
        {**settings, "dual_attention_layers": list(settings["dual_attention_layers"]),
         "_class_name": "SD3Transformer2DModel"}))
    model = SD3Transformer2DModel.from_single_file(str(out), config=str(config.parent), subfolder="transformer",
                                                   local_files_only=True, torch_dtype=torch.float16)
    loaded = model.state_dict()
    # The weights must be the source's, cast as asked, in diffusers' names by diffusers' own converter.
    wanted = {}
    for name, tensor in load_file(str(source)).items():
        if comp.component_of(name) == comp.UNET:
            matrix = tensor.dim() >= 2 and not any(n in name for n in ("pos_embed", "x_embedder.proj"))
            wanted[name] = expected(tensor, E4M3 if matrix else torch.float16)
    converted = convert_sd3_transformer_checkpoint_to_diffusers(wanted)
    assert set(loaded) == set(converted)
    for name, tensor in converted.items():
        assert torch.equal(loaded[name], tensor.to(torch.float16)), name
