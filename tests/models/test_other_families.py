"""Files of models sdhub has no family for, built on SD's or FLUX.1's names, are not taken for SD or FLUX.1.

Real published files reuse the names sdhub reads: SVD and Kolors UNets are SDXL-shaped, Qwen-Image and
HunyuanVideo LoRAs patch "transformer_blocks" at FLUX.1's width, FLUX.2 keeps FLUX.1's block names, and
ControlNet 1.0's full files carry a whole SD1 model beside the ControlNet. Each header here has the real
names and shapes of the part that decides.
"""

from __future__ import annotations

import pytest
import torch

from sdhub.models.detect import detect
from sdhub.testing import aux_models, families

UNET = "model.diffusion_model."


def _header(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype = torch.float16) -> dict:
    return {name: (dtype, shape) for name, shape in shapes.items()}


def _clip_text(width: int, layers: int) -> dict[str, tuple[int, ...]]:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                            num_attention_heads=width // 64, projection_dim=width)
    with torch.device("meta"):
        model = CLIPTextModel(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def test_a_controlnet_1_0_full_file_is_a_controlnet_not_an_sd1_checkpoint() -> None:
    shapes = aux_models.controlnet_shapes("sd1", size="full")
    shapes.update({UNET + name: shape for name, shape in families.unet_shapes("sd1", layout="ldm-bare",
                                                                              size="full").items()})
    shapes.update({"cond_stage_model.transformer." + name: shape for name, shape in _clip_text(768, 12).items()})
    detection = detect(_header(shapes, torch.float32), {})
    assert (detection.kind, detection.base_model, detection.variant) == ("controlnet", "sd1", "controlnet")
    assert any("whole SD model is saved beside it" in line for line in detection.evidence)


def test_an_svd_unet_is_not_an_sdxl_refiner() -> None:
    shapes = {UNET + name: shape for name, shape in families.unet_shapes("sdxl-refiner", layout="ldm-bare",
                                                                         size="full").items()}
    shapes[UNET + "label_emb.0.0.weight"] = (1280, 768)  # SVD: fps, motion bucket and noise augmentation
    shapes[UNET + "input_blocks.0.0.weight"] = (320, 8, 3, 3)  # the noisy latent and the conditioning frame
    shapes[UNET + "input_blocks.1.1.time_stack.0.attn1.to_q.weight"] = (320, 320)
    shapes["conditioner.embedders.0.open_clip.model.visual.proj"] = (1280, 1024)
    shapes["first_stage_model.decoder.conv_out.weight"] = (3, 128, 3, 3)
    detection = detect(_header(shapes), {})
    assert (detection.kind, detection.architecture, detection.base_model, detection.variant) == (
        "checkpoint", None, None, None), detection.evidence
    assert any("video UNet" in line for line in detection.evidence)


@pytest.mark.parametrize("projection", [True, False])
def test_a_kolors_unet_is_not_sdxl(projection: bool) -> None:
    shapes = families.unet_shapes("sdxl", layout="diffusers", size="full")
    shapes["add_embedding.linear_1.weight"] = (1280, 5632)  # ChatGLM's pooled 4096 + six 256-wide features
    if projection:
        shapes["encoder_hid_proj.weight"] = (2048, 4096)
    detection = detect(_header(shapes), {})
    assert (detection.kind, detection.architecture, detection.base_model) == ("diffusion-model", None, None)
    assert any("not a family sdhub knows" in line or "5632" in line for line in detection.evidence)


def test_real_sdxl_unets_keep_their_family_beside_those() -> None:
    detection = detect(_header(families.unet_shapes("sdxl", layout="diffusers", size="full")), {})
    assert (detection.architecture, detection.base_model) == ("sdxl", "sdxl")


def _peft_lora(modules: list[tuple[str, int]], rank: int = 4) -> dict:
    shapes = {}
    for name, width in modules:
        shapes[f"transformer.{name}.lora_A.weight"] = (rank, width)
        shapes[f"transformer.{name}.lora_B.weight"] = (width, rank)
    return _header(shapes, torch.bfloat16)


@pytest.mark.parametrize("modules", [
    # Qwen-Image: 60 dual-stream blocks at 3072, with img_mlp/txt_mlp instead of FLUX.1's ff/ff_context.
    [(f"transformer_blocks.{n}.attn.{p}", 3072) for n in range(60) for p in ("to_q", "to_k", "add_q_proj")]
    + [(f"transformer_blocks.{n}.img_mlp.net.0.proj", 3072) for n in range(60)],
    # The same with its attention alone targeted.
    [(f"transformer_blocks.{n}.attn.{p}", 3072) for n in range(60) for p in ("to_q", "to_k", "to_v")],
    # HunyuanVideo: 20 double-stream and 40 single-stream blocks at 3072.
    [(f"transformer_blocks.{n}.attn.to_q", 3072) for n in range(20)]
    + [(f"single_transformer_blocks.{n}.attn.to_q", 3072) for n in range(40)],
], ids=["qwen-image", "qwen-image-attention", "hunyuan-video"])
def test_loras_of_other_transformers_at_flux_width_are_not_flux(modules) -> None:
    detection = detect(_peft_lora(modules), {})
    assert (detection.kind, detection.base_model) == ("lora", None), detection.evidence
    assert any("sdhub does not know" in line for line in detection.evidence)


def test_a_flux_lora_in_the_same_names_is_still_flux() -> None:
    modules = ([(f"transformer_blocks.{n}.attn.to_q", 3072) for n in range(19)]
               + [(f"single_transformer_blocks.{n}.attn.to_q", 3072) for n in range(38)])
    detection = detect(_peft_lora(modules), {})
    assert (detection.kind, detection.base_model) == ("lora", "flux1"), detection.evidence


def test_a_flux_2_style_transformer_is_not_flux_1() -> None:
    shared_modulation = {name: shape for name, shape in families.flux_shapes("dev", size="full").items()
                         if ".img_mod." not in name and ".txt_mod." not in name}
    shared_modulation["double_stream_modulation_img.lin.weight"] = (6 * 3072, 3072)
    detection = detect(_header(shared_modulation, torch.bfloat16), {})
    assert (detection.kind, detection.base_model, detection.architecture) == ("diffusion-model", None, None)
    wider = families.flux_shapes("dev", size="full")
    wider["img_in.weight"] = (6144, 128)
    detection = detect(_header(wider, torch.bfloat16), {})
    assert detection.base_model is None and any("wider than FLUX.1's" in line for line in detection.evidence)


def test_diffusers_sd2_text_encoder_of_23_layers_is_openclip_h() -> None:
    detection = detect(_header(_clip_text(1024, 23)), {})
    assert (detection.kind, detection.variant) == ("text-encoder", "openclip-h")
    assert detection.details["families"] == ["sd2"]


def test_a_file_of_no_known_kind_is_other() -> None:
    detection = detect({"weight": (torch.float32, (3, 3))}, {})
    assert detection.kind == "other" and detection.evidence
