"""FLUX.1, SD3/SD3.5, UNets alone, text encoders and 16-channel VAEs: the factory's layouts and their detection."""

from __future__ import annotations

import math

import pytest
import torch

from sdhub.testing import families


def _parameters(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


@pytest.mark.parametrize("shapes, billions", [
    (lambda: families.flux_shapes("dev", size="full"), 11.90),
    (lambda: families.flux_shapes("dev", size="full", layout="diffusers"), 11.90),
    (lambda: families.sd3_shapes("sd3-medium", size="full"), 2.08),
    (lambda: families.sd3_shapes("sd3.5-medium", size="full", layout="diffusers"), 2.47),
    (lambda: families.sd3_shapes("sd3.5-large", size="full"), 8.15),
    (lambda: families.t5xxl_shapes(size="full"), 4.76),
])
def test_full_size_headers_hold_the_published_parameter_counts(shapes, billions: float) -> None:
    assert _parameters(shapes()) / 1e9 == pytest.approx(billions, abs=0.01)


def test_full_size_headers_have_the_published_names_and_widths() -> None:
    flux = families.flux_shapes("dev", size="full")
    assert flux["double_blocks.18.img_attn.qkv.weight"] == (9216, 3072)
    assert flux["single_blocks.37.linear1.weight"] == (21504, 3072)
    assert flux["guidance_in.in_layer.weight"] == (3072, 256)
    assert "guidance_in.in_layer.weight" not in families.flux_shapes("schnell", size="full")
    assert families.flux_shapes("fill", size="full")["img_in.weight"] == (3072, 384)
    large = families.sd3_shapes("sd3.5-large", size="full", layout="comfyui")
    assert large["model.diffusion_model.joint_blocks.37.x_block.attn.qkv.weight"] == (7296, 2432)
    assert "model.diffusion_model.joint_blocks.37.context_block.mlp.fc1.weight" not in large  # pre-only block
    medium = families.sd3_shapes("sd3.5-medium", size="full")
    assert medium["pos_embed"] == (1, 147456, 1536)
    assert "joint_blocks.12.x_block.attn2.qkv.weight" in medium and "joint_blocks.13.x_block.attn2.qkv.weight" not in medium
    assert families.clip_shapes("clip-g", size="full")["text_projection.weight"] == (1280, 1280)
    assert families.clip_shapes("clip-l", size="full")["text_model.embeddings.token_embedding.weight"] == (49408, 768)
    assert families.vae16_shapes(size="full")["decoder.conv_in.weight"] == (512, 16, 3, 3)


def test_tiny_transformers_load_in_diffusers(tmp_path) -> None:
    import json

    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    for name, model_class, config, path in (
        ("flux", FluxTransformer2DModel, families.tiny_flux_config("schnell"),
         families.write_flux(tmp_path / "flux.safetensors", "schnell", layout="diffusers")),
        ("sd3", SD3Transformer2DModel, families.tiny_sd3_config("sd3.5-medium"),
         families.write_sd3_checkpoint(tmp_path / "sd35m.safetensors", "sd3.5-medium")),
    ):
        folder = tmp_path / name / "transformer"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"_class_name": model_class.__name__, **config}))
        model = model_class.from_single_file(str(path), config=str(tmp_path / name), subfolder="transformer")
        assert sum(p.numel() for p in model.parameters()) > 0


def test_fp8_t5_keeps_its_norms_in_16_bit(tmp_path) -> None:
    from safetensors import safe_open

    path = families.write_text_encoder(tmp_path / "t5xxl_fp8_e4m3fn.safetensors", "t5xxl", dtype=torch.float8_e4m3fn)
    with safe_open(str(path), "pt") as handle:
        dtypes = {name: handle.get_slice(name).get_dtype() for name in handle.keys()}
    assert dtypes["encoder.block.0.layer.0.SelfAttention.q.weight"] == "F8_E4M3"
    assert dtypes["encoder.final_layer_norm.weight"] == "F16"
