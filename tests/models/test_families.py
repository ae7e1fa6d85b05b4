"""FLUX.1, SD3/SD3.5, UNets alone, text encoders and 16-channel VAEs: the factory's layouts and their detection."""

from __future__ import annotations

import math

import pytest
import torch

from sdhub.models.detect import detect
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


# ---- detection on real-size headers (names and shapes exactly as published; nothing allocated) ------------


def _header(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype = torch.bfloat16) -> dict[str, tuple]:
    return {name: (dtype, shape) for name, shape in shapes.items()}


@pytest.mark.parametrize("layout", ["bfl", "comfyui", "diffusers"])
@pytest.mark.parametrize("variant, architecture", [
    ("dev", "flux1-dev"), ("schnell", "flux1-schnell"), ("fill", "flux1-fill"), ("depth", None), ("canny", None),
])
def test_flux_transformers_alone_in_every_layout(layout: str, variant: str, architecture: str | None) -> None:
    detection = detect(_header(families.flux_shapes(variant, size="full", layout=layout)), {})
    assert (detection.kind, detection.architecture, detection.base_model) == (
        "diffusion-model", architecture, "flux1"), detection.evidence
    assert any("FLUX.1's real size" in line for line in detection.evidence)
    if architecture is None:  # Depth and Canny share one structure: said, not guessed
        assert detection.variant == "depth-or-canny"
        assert any("cannot tell Depth from Canny" in line for line in detection.evidence)


def test_flux_depth_or_canny_is_named_only_by_metadata() -> None:
    header = _header(families.flux_shapes("canny", size="full"))
    detection = detect(header, {"modelspec.architecture": "flux-1-dev/canny"})
    assert (detection.architecture, detection.variant) == ("flux1-canny", "canny")


def test_comfyui_all_in_one_flux_checkpoint() -> None:
    detection = detect(_header(families.flux_checkpoint_shapes("schnell", size="full"), torch.float8_e4m3fn), {})
    assert (detection.kind, detection.architecture, detection.base_model) == ("checkpoint", "flux1-schnell", "flux1")
    assert detection.details["text_encoders"] == ["CLIP-L", "T5-XXL"]
    assert any("VAE under vae. (16 latent channels)" in line for line in detection.evidence)


@pytest.mark.parametrize("arch", families.SD3_ARCHITECTURES)
def test_sd3_transformers_and_checkpoints_in_every_layout(arch: str) -> None:
    for layout in families.SD3_LAYOUTS:
        detection = detect(_header(families.sd3_shapes(arch, size="full", layout=layout), torch.float16), {})
        assert (detection.kind, detection.architecture, detection.base_model) == ("diffusion-model", arch, "sd3"), (
            layout, detection.evidence)
        assert any("confirms it" in line for line in detection.evidence)  # real width and depth agree
    for t5 in (True, False):
        detection = detect(_header(families.sd3_checkpoint_shapes(arch, size="full", t5=t5), torch.float16), {})
        assert (detection.kind, detection.architecture) == ("checkpoint", arch)
        assert detection.details["text_encoders"] == ["CLIP-L", "CLIP-G", "T5-XXL"][:3 if t5 else 2]


def test_an_sd3_structure_at_another_models_size_is_flagged() -> None:
    header = _header(families.sd3_shapes("sd3.5-large", size="full"))
    header = {name: info for name, info in header.items() if ".ln_q." not in name and ".ln_k." not in name}
    detection = detect(header, {})  # large's width and depth, without its q/k norms
    assert detection.architecture == "sd3-medium"
    assert any(line.startswith("warning: width 2432 with 38 blocks is sd3.5-large's") for line in detection.evidence)


@pytest.mark.parametrize("arch", ["sd1", "sdxl", "sdxl-refiner"])
@pytest.mark.parametrize("layout", families.UNET_LAYOUTS)
def test_unets_alone_are_diffusion_models(arch: str, layout: str) -> None:
    detection = detect(_header(families.unet_shapes(arch, layout=layout, size="full"), torch.float16), {})
    assert (detection.kind, detection.architecture, detection.base_model) == (
        "diffusion-model", arch, arch.split("-")[0]), detection.evidence
    assert any("cross-attention width" in line for line in detection.evidence)


@pytest.mark.parametrize("which, layout, encoder, served", [
    ("clip-l", "transformers", "clip-l", ["sd1", "sdxl", "sd3", "flux1"]),
    ("clip-g", "transformers", "clip-g", ["sdxl", "sd3"]),
    ("clip-g", "openclip", "clip-g", ["sdxl", "sd3"]),
    ("t5xxl", "transformers", "t5-xxl", ["sd3", "flux1"]),
])
def test_text_encoders_say_which_families_they_serve(which: str, layout: str, encoder: str,
                                                     served: list[str]) -> None:
    shapes = families.text_encoder_shapes(which, size="full", layout=layout)
    detection = detect(_header(shapes, torch.float8_e4m3fn if which == "t5xxl" else torch.float16), {})
    assert (detection.kind, detection.variant, detection.base_model) == ("text-encoder", encoder, None)
    assert detection.details["families"] == served


def test_a_t5_with_its_decoder_is_still_a_text_encoder_not_a_vae() -> None:
    shapes = families.t5xxl_shapes(size="full")
    shapes.update({name.replace("encoder.", "decoder.", 1): shape for name, shape in shapes.items()
                   if name.startswith("encoder.")})
    detection = detect(_header(shapes), {})
    assert (detection.kind, detection.variant) == ("text-encoder", "t5-xxl")
    assert any("decoder" in line for line in detection.evidence)


@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
def test_sixteen_channel_vaes_name_both_families(layout: str) -> None:
    detection = detect(_header(families.vae16_shapes(size="full", layout=layout), torch.float32), {})
    assert detection.kind == "vae" and detection.base_model is None
    assert detection.details["latent_channels"] == 16 and detection.details["families"] == ["sd3", "flux1"]
    assert any("cannot tell which" in line for line in detection.evidence)


def test_a_chroma_style_transformer_is_not_taken_for_flux() -> None:
    shapes = {name: shape for name, shape in families.flux_shapes("schnell", size="full").items()
              if not name.startswith(("time_in.", "vector_in."))}
    shapes["distilled_guidance_layer.in_proj.weight"] = (5120, 64)
    detection = detect(_header(shapes), {})
    assert (detection.kind, detection.base_model, detection.architecture) == ("diffusion-model", None, None)



def test_comfyuis_scaled_fp8_t5_is_the_same_encoder() -> None:
    header = _header(families.t5xxl_shapes(size="full"), torch.float8_e4m3fn)
    header.update({name.replace(".weight", ".scale_weight"): (torch.float32, ()) for name in list(header)
                   if name.endswith("SelfAttention.q.weight")})
    header["scaled_fp8"] = (torch.float8_e4m3fn, (0,))
    detection = detect(header, {})
    assert (detection.kind, detection.variant) == ("text-encoder", "t5-xxl")
    assert any("scaled fp8" in line for line in detection.evidence)


@pytest.mark.parametrize("arch, layout, variant", [
    ("sd2", "diffusers", None), ("sd2", "ldm-bare", None), ("sd1-inpainting", "diffusers", "inpainting"),
    ("sdxl-refiner", "diffusers", None),
])
def test_tiny_unets_alone_are_told_apart_by_structure(arch: str, layout: str, variant: str | None) -> None:
    detection = detect(_header(families.unet_shapes(arch, layout=layout)), {})
    architecture = arch.removesuffix("-inpainting")
    assert (detection.kind, detection.architecture, detection.variant) == ("diffusion-model", architecture, variant)


def test_four_channel_vaes_name_the_families_before_sd3() -> None:
    from sdhub.testing import layouts

    detection = detect({name: (t.dtype, tuple(t.shape)) for name, t in layouts.vae_state("sdxl").items()}, {})
    assert detection.kind == "vae" and detection.details["latent_channels"] == 4
    assert detection.details["families"] == ["sd1", "sd2", "sdxl"]


@pytest.mark.parametrize("broken", [
    {"img_in.weight": (3072,), "final_layer.linear.weight": ()},
    {"x_embedder.proj.weight": (), "pos_embed": (1,)},
    {"encoder.block.0.layer.0.SelfAttention.q.weight": (4096,)},
    {"text_model.embeddings.token_embedding.weight": (49408,), "text_projection.weight": (768,)},
    {"decoder.conv_in.weight": (512,), "add_embedding.linear_1.weight": (), "conv_in.weight": (4,)},
])
def test_malformed_shapes_in_known_layouts_do_not_crash_detection(broken: dict[str, tuple[int, ...]]) -> None:
    headers = [families.flux_shapes("dev"), families.sd3_shapes("sd3-medium"), families.t5xxl_shapes(),
               families.clip_shapes("clip-l"), families.vae16_shapes(), families.unet_shapes("sdxl", layout="diffusers")]
    for shapes in headers:
        damaged = {**shapes, **{name: shape for name, shape in broken.items() if name in shapes}}
        assert detect(_header(damaged), {}).kind  # a verdict, never an exception


def test_flux_redux_is_flux_family_image_prompting() -> None:
    detection = detect(_header(families.flux_redux_shapes(size="full")), {})
    assert (detection.architecture, detection.base_model) == ("flux1-redux", "flux1")
    assert detection.kind == "ip-adapter"  # ComfyUI's style model: an image prompt for FLUX.1


def test_diffusers_own_converters_turn_the_full_size_original_layouts_into_its_models() -> None:
    """diffusers' single-file converters, fed the real-size BFL and Stability names (as shapes on the meta
    device), give exactly the tensors of diffusers' own FLUX.1 and SD3 models: names and shapes agree."""
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers, convert_sd3_transformer_checkpoint_to_diffusers)

    def converted(convert, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        meta = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
        return {name: tuple(tensor.shape) for name, tensor in convert(meta).items()}

    for variant in families.FLUX_VARIANTS:
        assert converted(convert_flux_transformer_checkpoint_to_diffusers,
                         families.flux_shapes(variant, size="full")) == families.flux_shapes(
            variant, size="full", layout="diffusers"), variant
    for arch in families.SD3_ARCHITECTURES:
        assert converted(convert_sd3_transformer_checkpoint_to_diffusers,
                         families.sd3_shapes(arch, size="full")) == families.sd3_shapes(
            arch, size="full", layout="diffusers"), arch


@pytest.mark.parametrize("model, pipeline, architecture, variant", [
    ("dev", "FluxPipeline", "flux1-dev", None), ("schnell", "FluxPipeline", "flux1-schnell", None),
    ("fill", "FluxFillPipeline", "flux1-fill", "fill"), ("canny", "FluxControlPipeline", None, "depth-or-canny"),
    ("sd3-medium", "StableDiffusion3Pipeline", "sd3-medium", None),
    ("sd3.5-medium", "StableDiffusion3Pipeline", "sd3.5-medium", None),
    ("sd3.5-large", "StableDiffusion3Pipeline", "sd3.5-large", None),
])
def test_pipeline_folders_are_told_from_their_published_transformer_configs(
        tmp_path, model: str, pipeline: str, architecture: str | None, variant: str | None) -> None:
    import json

    from sdhub.models.pipeline_folder import detect_from_configs

    flux = pipeline.startswith("Flux")
    config = families.flux_config(model, size="full") if flux else families.sd3_config(model, size="full")
    model_class = "FluxTransformer2DModel" if flux else "SD3Transformer2DModel"
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"_class_name": model_class, **config}))
    encoders = ["text_encoder", "text_encoder_2"] + ([] if flux else ["text_encoder_3"])
    index = {"_class_name": pipeline, "transformer": ["diffusers", model_class], "vae": ["diffusers", "AutoencoderKL"],
             **{name: ["transformers", "T5EncoderModel"] for name in encoders}}
    detection = detect_from_configs(tmp_path, index)
    assert (detection.kind, detection.architecture, detection.variant, detection.base_model) == (
        "checkpoint", architecture, variant, "flux1" if flux else "sd3"), detection.evidence
    assert detection.details["text_encoders"] == (["CLIP-L", "T5-XXL"] if flux else ["CLIP-L", "CLIP-G", "T5-XXL"])
    without = detect_from_configs(tmp_path, {"_class_name": pipeline, "transformer": ["diffusers", model_class]})
    assert without.kind == "diffusion-model"
