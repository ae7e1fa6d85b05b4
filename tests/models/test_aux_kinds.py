"""ControlNets, IP-Adapters, CLIP vision encoders, upscalers, preview decoders and hypernetworks: each is told
from its real published layout (full-size headers, nothing allocated) and, as a tiny real file written the way
its tool writes it, survives inspect, hash, scan and (pickles) convert --verify."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import sdhub
from sdhub.catalog import Catalog
from sdhub.config import init_home
from sdhub.formats import open_model
from sdhub.models.detect import detect
from sdhub.testing import aux_models as ax
from sdhub.testing import families


def _header(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    return {name: (torch.float16, shape) for name, shape in shapes.items()}


def _check(detection: Any, kind: str, base: str | None, variant: str | None = None, **details: Any) -> None:
    assert (detection.kind, detection.base_model) == (kind, base), detection.evidence
    if variant is not None:
        assert detection.variant == variant, detection.evidence
    for key, value in details.items():
        assert detection.details.get(key) == value, (key, detection.details)
    assert detection.evidence


# ---- real-size headers ------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["sd1", "sd2", "sdxl"])
@pytest.mark.parametrize("layout", ["original", "diffusers"])
def test_unet_controlnets_are_controlnets_of_their_family(base: str, layout: str) -> None:
    detection = detect(_header(ax.controlnet_shapes(base, layout=layout, size="full")))
    _check(detection, "controlnet", base, "controlnet", layout=layout)
    assert any("cross-attention width" in line for line in detection.evidence)
    # Without its prefix (as some converters write it) the original layout is still a ControlNet, not a UNet.
    if layout == "original":
        bare = {k.removeprefix("control_model."): v for k, v in ax.controlnet_shapes(base, size="full").items()}
        _check(detect(_header(bare)), "controlnet", base, "controlnet")


def test_control_lora_lllite_and_t2i_adapters_are_controlnet_variants() -> None:
    control_lora = detect(_header(ax.control_lora_shapes(size="full", rank=128)))
    _check(control_lora, "controlnet", "sdxl", "control-lora", rank=128)
    assert control_lora.lora_flavour is None  # a control-LoRA is not a LoRA to apply to the model
    _check(detect(_header(ax.lllite_shapes())), "controlnet", "sdxl", "controlnet-lllite")
    for base in ("sd1", "sdxl"):
        for layout in ("original", "diffusers"):
            adapter = detect(_header(ax.t2i_adapter_shapes(base, layout=layout, size="full")))
            _check(adapter, "controlnet", base, "t2i-adapter", layout=layout)
    sketch = detect(_header(ax.t2i_adapter_shapes("sd1", size="full", hint=1)))  # one-channel hint
    _check(sketch, "controlnet", "sd1", "t2i-adapter", hint_channels=64)


def test_flux_and_sd3_controlnets() -> None:
    _check(detect(_header(ax.flux_controlnet_shapes("instantx", size="full"))), "controlnet", "flux1", layout="diffusers")
    _check(detect(_header(ax.flux_controlnet_shapes("xlabs", size="full"))), "controlnet", "flux1", layout="xlabs")
    union = ax.flux_controlnet_shapes("instantx") | {"controlnet_mode_embedder.weight": (10, 3072)}
    _check(detect(_header(union)), "controlnet", "flux1", union=True)
    mistoline = {"controlnet_blocks.0.linear.weight": (3072, 3072), "controlnet_blocks.0.linear.bias": (3072,),
                 "single_controlnet_blocks.0.linear.weight": (3072, 3072), "img_in.weight": (3072, 64)}
    _check(detect(_header(mistoline)), "controlnet", "flux1", layout="mistoline")
    _check(detect(_header(ax.sd3_controlnet_shapes(width=1536, blocks=12))), "controlnet", "sd3")
    large = detect(_header(ax.sd3_controlnet_shapes(width=2432, blocks=19)))
    assert (large.kind, large.architecture, large.base_model) == ("controlnet", "sd3.5-large", "sd3")


@pytest.mark.parametrize("base, variant, encoder, tokens", [
    ("sd1", "plain", "ViT-H/14", 4), ("sd1", "plus", "ViT-H/14", 16), ("sd1", "full-face", "ViT-H/14", None),
    ("sd1", "face-id", None, None), ("sdxl", "plain", "ViT-bigG/14", 4), ("sdxl", "plus", "ViT-H/14", 16),
    ("sdxl", "face-id", None, None),
])
def test_ip_adapters_give_family_variant_and_image_encoder(base: str, variant: str, encoder: str | None,
                                                          tokens: int | None) -> None:
    detection = detect(_header(ax.ip_adapter_shapes(base, variant, size="full")))
    _check(detection, "ip-adapter", base, variant)
    assert detection.details.get("image_encoder") == encoder
    assert detection.details.get("tokens") == tokens
    assert detection.lora_flavour is None  # Face ID's attention LoRA does not make it a LoRA


def test_flux_image_prompt_models() -> None:
    redux = detect(_header({"redux_up.weight": (12288, 1152), "redux_up.bias": (12288,),
                            "redux_down.weight": (4096, 12288), "redux_down.bias": (4096,)}))
    assert (redux.kind, redux.architecture, redux.base_model) == ("ip-adapter", "flux1-redux", "flux1")
    xlabs = {"ip_adapter_proj_model.proj.weight": (12288, 768), "ip_adapter_proj_model.norm.weight": (3072,),
             "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight": (3072, 4096),
             "double_blocks.0.processor.ip_adapter_double_stream_v_proj.weight": (3072, 4096)}
    _check(detect(_header(xlabs)), "ip-adapter", "flux1", image_encoder="ViT-L/14", layout="xlabs")
    # The same adapter in the h94-style layout diffusers loads: to_k_ip maps T5's 4096 into FLUX.1's 3072.
    flux = {"image_proj.proj.weight": (16384, 768), "image_proj.proj.bias": (16384,), "image_proj.norm.weight": (4096,),
            **{f"ip_adapter.{i}.to_{kv}_ip.{p}": (3072, 4096) if p == "weight" else (3072,)
               for i in range(19) for kv in "kv" for p in ("weight", "bias")}}
    _check(detect(_header(flux)), "ip-adapter", "flux1", "plain", image_encoder="ViT-L/14", tokens=4, layers=19)
    # InstantX's SD3.5-Large adapter: a time-aware Resampler over SigLIP features, joint-attention widths.
    sd35 = {"image_proj.latents": (1, 64, 1280), "image_proj.proj_in.weight": (1280, 1152),
            "image_proj.proj_out.weight": (2432, 1280), "image_proj.time_embedding.linear_1.weight": (1280, 320),
            **{f"ip_adapter.{i}.{name}": shape for i in range(38) for name, shape in (
                ("norm_ip.linear.weight", (4864, 1280)), ("to_k_ip.weight", (2432, 2432)),
                ("to_v_ip.weight", (2432, 2432)))}}
    _check(detect(_header(sd35)), "ip-adapter", "sd3", "plus", image_encoder="SigLIP so400m/14", tokens=64)


@pytest.mark.parametrize("encoder", ["ViT-L/14", "ViT-H/14", "ViT-bigG/14", "SigLIP so400m/14"])
def test_clip_vision_encoders_say_which_vit(encoder: str) -> None:
    width, depth, patch, image, projection, _ = ax.VISION_ENCODERS[encoder]
    detection = detect(_header(ax.clip_vision_shapes(encoder)))
    _check(detection, "clip-vision", None, encoder, hidden_size=width, layers=depth, projection_dim=projection)
    if encoder.startswith("SigLIP"):  # saved alone by newer transformers: no vision_model. prefix
        bare = {k.removeprefix("vision_model."): v for k, v in ax.clip_vision_shapes(encoder).items()}
        _check(detect(_header(bare)), "clip-vision", None, encoder, image_size=image - image % patch)
    if encoder == "ViT-H/14":
        open_clip = detect(_header(ax.clip_vision_shapes(encoder, layout="open_clip")))
        _check(open_clip, "clip-vision", None, encoder, layout="open_clip", image_size=image)


@pytest.mark.parametrize("layout", ["original", "comfyui", "diffusers"])
@pytest.mark.parametrize("latent", [4, 16])
def test_taesd_is_a_preview_decoder_not_a_vae(layout: str, latent: int) -> None:
    shapes = ax.taesd_shapes("decoder", latent=latent, layout=layout)
    if layout != "original":  # these ship encoder and decoder in one file
        shapes |= ax.taesd_shapes("encoder", latent=latent, layout=layout)
    detection = detect(_header(shapes))
    _check(detection, "preview-decoder", None, "taesd", latent_channels=latent)
    assert detection.details["families"] == (["sd1", "sd2", "sdxl"] if latent == 4 else ["sd3", "flux1"])
    encoder = detect(_header(ax.taesd_shapes("encoder", latent=latent)))
    _check(encoder, "preview-decoder", None, "taesd", part="encoder", latent_channels=latent)


def test_vae_approx_and_hypernetwork_headers() -> None:
    _check(detect(_header(ax.vae_approx_shapes(4))), "preview-decoder", None, "vae-approx", latent_channels=4)
    _check(detect(_header(ax.vae_approx_shapes(16))), "preview-decoder", None, "vae-approx", latent_channels=16)
    for widths, base in (((768, 320, 640, 1280), "sd1"), ((1024, 320, 640, 1280), "sd2")):
        layers = {f"{w}.{i}.linear.{j}.{p}": ((2 * w, w) if j == 0 else (w, 2 * w)) if p == "weight" else
                  ((2 * w,) if j == 0 else (w,))
                  for w in widths for i in (0, 1) for j in (0, 1) for p in ("weight", "bias")}
        _check(detect(_header(layers)), "hypernetwork", base, widths=sorted(widths))
    novelai = {f"768.{i}.linear{j}.{p}": (768, 768) if p == "weight" else (768,)
               for i in (0, 1) for j in (1, 2) for p in ("weight", "bias")}
    _check(detect(_header(novelai)), "hypernetwork", "sd1")


def test_a_realesrgan_x4plus_header_is_told_by_spandrel_without_memory() -> None:
    shapes = {f"params_ema.{k}": tuple(v.shape) for k, v in
              ax.esrgan_state(4, layout="new", filters=64, blocks=1).items()}
    # Real RRDB count (23 blocks of 64 filters): the shapes of one block, repeated.
    block = {k: v for k, v in shapes.items() if k.startswith("params_ema.body.0.")}
    for index in range(1, 23):
        shapes |= {k.replace("body.0.", f"body.{index}."): v for k, v in block.items()}
    detection = detect(_header(shapes))
    _check(detection, "upscaler", None, "ESRGAN", scale=4, purpose="SR")
    assert detection.details["tags"] == ["64nf", "23nb"]
    assert "from shapes" in detection.evidence[0]


@pytest.mark.parametrize("arch, variant, scale", [("swinir", "SwinIR", 2), ("hat", "HAT", 4), ("dat", "DAT", 3)])
def test_transformer_upscalers_get_architecture_and_scale(arch: str, variant: str, scale: int) -> None:
    shapes = {k: tuple(v.shape) for k, v in ax.transformer_upscaler_state(arch, scale).items()}
    _check(detect(_header(shapes)), "upscaler", None, variant, scale=scale)


def test_an_upscaler_too_large_to_build_is_still_an_upscaler(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdhub.models import detect_upscaler

    monkeypatch.setattr(detect_upscaler, "MAX_PARAMETERS", 1000)  # DAT needs numbers, so it would be built
    shapes = {k: tuple(v.shape) for k, v in ax.transformer_upscaler_state("dat", 2).items()}
    detection = detect(_header(shapes))
    assert (detection.kind, detection.details) == ("upscaler", {})
    assert "too large to build" in detection.evidence[0]


def test_without_spandrel_esrgan_files_are_still_upscalers(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdhub.models import detect_upscaler

    monkeypatch.setattr(detect_upscaler, "_spandrel", lambda: None)
    monkeypatch.setattr(detect_upscaler, "_SPANDREL_MISSING", "spandrel is not installed")
    for layout in ("old", "new"):
        detection = detect(_header({k: tuple(v.shape) for k, v in ax.esrgan_state(4, layout=layout).items()}))
        _check(detection, "upscaler", None, "ESRGAN")
        assert "scale unknown: spandrel is not installed" in detection.evidence


def test_spandrel_leaves_no_stand_in_torchvision_behind() -> None:
    detect(_header({k: tuple(v.shape) for k, v in ax.compact_state(2).items()}))
    assert importlib.util.find_spec("spandrel") is not None
    stand_in = sys.modules.get("torchvision")
    assert stand_in is None or stand_in.__spec__ is not None  # a real torchvision, or none


# ---- tiny real files --------------------------------------------------------------------------


def _write_files(folder: Path) -> dict[str, tuple[Path, str, str | None, str | None]]:
    """file label -> (path, kind, family, variant)."""
    files = {
        "cn-sd1.pth": (ax.write_shapes(folder / "control_sd15_canny.pth", ax.controlnet_shapes("sd1")),
                       "controlnet", "sd1", "controlnet"),
        "cn-sdxl.safetensors": (ax.write_shapes(folder / "controlnet-sdxl.safetensors",
                                                ax.controlnet_shapes("sdxl", layout="diffusers"), dtype=torch.float16),
                                "controlnet", "sdxl", "controlnet"),
        "t2i.pth": (ax.write_shapes(folder / "t2iadapter_canny_sd15v2.pth", ax.t2i_adapter_shapes("sd1")),
                    "controlnet", "sd1", "t2i-adapter"),
        "control-lora.safetensors": (ax.write_shapes(folder / "control-lora-canny-rank4.safetensors",
                                                     ax.control_lora_shapes()), "controlnet", "sdxl", "control-lora"),
        "ip.bin": (ax.ip_adapter(folder / "ip-adapter_sd15.bin"), "ip-adapter", "sd1", "plain"),
        "ip-faceid.bin": (ax.ip_adapter(folder / "ip-adapter-faceid_sdxl.bin", "sdxl", "face-id"),
                          "ip-adapter", "sdxl", "face-id"),
        "clip-vision.safetensors": (ax.write_shapes(folder / "clip_vision_tiny.safetensors",
                                                    ax.clip_vision_shapes("tiny")), "clip-vision", None, None),
        "esrgan.pth": (ax.upscaler(folder / "4x_tiny_esrgan.pth", "esrgan", 4), "upscaler", None, "ESRGAN"),
        "realesrgan.pth": (ax.upscaler(folder / "RealESRGAN_x2plus.pth", "realesrgan", 2), "upscaler", None, "ESRGAN"),
        "compact.pth": (ax.upscaler(folder / "realesr-general-x4v3.pth", "compact", 4), "upscaler", None,
                        "RealESRGAN Compact"),
        "taesd.safetensors": (ax.write_shapes(folder / "taesdxl_decoder.safetensors", ax.taesd_shapes("decoder")),
                              "preview-decoder", None, "taesd"),
        "vae-approx.pt": (ax.write_shapes(folder / "model.pt", ax.vae_approx_shapes()), "preview-decoder", None,
                          "vae-approx"),
        "hypernetwork.pt": (ax.hypernetwork(folder / "anime_3.pt"), "hypernetwork", "sd1", None),
        "cn-sd2.safetensors": (ax.write_shapes(folder / "controlnet-sd21.safetensors", ax.controlnet_shapes("sd2"),
                                               dtype=torch.float16), "controlnet", "sd2", "controlnet"),
        "cn-flux.safetensors": (ax.write_shapes(folder / "flux-controlnet-canny.safetensors",
                                                ax.flux_controlnet_shapes("instantx"), dtype=torch.bfloat16),
                                "controlnet", "flux1", None),
        "cn-flux-xlabs.safetensors": (ax.write_shapes(folder / "flux-canny-controlnet-v3.safetensors",
                                                      ax.flux_controlnet_shapes("xlabs"), dtype=torch.bfloat16),
                                      "controlnet", "flux1", None),
        "cn-sd3.safetensors": (ax.write_shapes(folder / "sd3-controlnet-canny.safetensors",
                                               ax.sd3_controlnet_shapes(width=1536, blocks=1), dtype=torch.float16),
                               "controlnet", "sd3", None),
        "redux.safetensors": (families.write_flux_redux(folder / "flux1-redux-dev.safetensors"), "ip-adapter",
                              "flux1", None),
        "swinir.pth": (ax.upscaler(folder / "2x_tiny_swinir.pth", "swinir", 2), "upscaler", None, "SwinIR"),
        "dat.pth": (ax.upscaler(folder / "4x_tiny_dat.pth", "dat", 4), "upscaler", None, "DAT"),
    }
    return files


@pytest.fixture(scope="module")
def aux_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, str | None, str | None]]:
    return _write_files(tmp_path_factory.mktemp("aux"))


def test_every_tiny_file_inspects_and_hashes_as_its_kind(aux_files) -> None:
    for label, (path, kind, base, variant) in aux_files.items():
        report = sdhub.inspect(path)
        assert (report.kind, report.base_model) == (kind, base), (label, report.detection.evidence)
        if variant is not None:
            assert report.detection.variant == variant, label
        # One component named for the kind, no "unrecognised tensors" warning on a model sdhub recognised.
        assert [c.name for c in report.components] == [kind], label
        assert "unknown_keys" not in report.problem_codes(), label
        assert report.to_dict()["details"] == report.detection.details
        hashes = sdhub.hash(path)
        assert (hashes.kind, hashes.not_a_model) == (kind, None), label
        assert len(hashes.to_dict()["sha256"]) == 64, label
    esrgan = sdhub.inspect(aux_files["esrgan.pth"][0]).detection
    assert esrgan.details["scale"] == 4
    assert sdhub.inspect(aux_files["realesrgan.pth"][0]).detection.details["scale"] == 2


def test_the_safe_reader_sees_the_nested_ip_adapter_and_the_hypernetwork(aux_files) -> None:
    with open_model(aux_files["ip.bin"][0]) as model:
        assert any(name.startswith("image_proj.") for name in model.tensors)
        assert "ip_adapter.1.to_k_ip.weight" in model.tensors
    with open_model(aux_files["hypernetwork.pt"][0]) as model:
        assert set(model.tensors) == {f"768.{i}.linear.0.{p}" for i in (0, 1) for p in ("weight", "bias")}
        assert model.report.extras["name"] == "tiny-hypernet"


@pytest.mark.parametrize("label", ["cn-sd1.pth", "t2i.pth", "ip.bin", "ip-faceid.bin", "esrgan.pth", "realesrgan.pth",
                                   "compact.pth", "swinir.pth", "dat.pth", "vae-approx.pt", "hypernetwork.pt"])
def test_pickled_kinds_convert_with_verify_and_keep_their_kind(aux_files, tmp_path: Path, label: str) -> None:
    path, kind, base, variant = aux_files[label]
    out = tmp_path / (path.stem + ".safetensors")
    sdhub.convert(path, out, verify=True)
    after = sdhub.inspect(out)
    assert (after.kind, after.base_model, after.detection.variant) == (kind, base, variant)
    if kind == "upscaler":
        assert after.detection.details["scale"] == sdhub.inspect(path).detection.details["scale"]


@pytest.mark.parametrize("layout", ["sdhub", "a1111", "comfyui", "stabilitymatrix"])
def test_scan_catalogues_each_kind_in_its_folder(tmp_path: Path, aux_files, layout: str) -> None:
    home = init_home(tmp_path / layout, layout)
    placed = {}
    for label, (path, kind, base, _) in aux_files.items():
        target = home.folder(kind) / path.name  # A1111 keeps IP-Adapters beside ControlNets: detection tells them
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        placed[label] = (target, kind, base)
    with Catalog(home) as catalog:
        report = catalog.scan()
        assert report.errors == []
        for label, (target, kind, base) in placed.items():
            asset = catalog.find(str(target))
            assert (asset.kind, asset.base_model) == (kind, base), label


def test_inspect_cli_shows_the_upscaler_scale_and_the_controlnet_variant(aux_files, run_cli) -> None:
    shown = run_cli("inspect", aux_files["compact.pth"][0])
    assert shown.exit_code == 0, shown.stderr
    assert "RealESRGAN Compact, x4" in shown.stdout
    shown = run_cli("inspect", aux_files["t2i.pth"][0], "--json")
    data = json.loads(shown.stdout)
    assert (data["kind"], data["variant"], data["base_model"]) == ("controlnet", "t2i-adapter", "sd1")
    assert data["details"]["hint_channels"] == 192


@pytest.mark.parametrize("broken", [
    {"control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (), "controlnet_blocks.0.weight": (3,)},
    {"image_proj.proj.weight": (8,), "image_proj.norm.weight": (0,), "ip_adapter.1.to_k_ip.weight": (320,)},
    {"vision_model.embeddings.patch_embedding.weight": (1280, 3), "visual.conv1.weight": ()},
    {"adapter.conv_in.weight": (320,), "conv_in.weight": (), "label_emb.0.0.weight": ()},
    {"model.0.weight": (), "conv_first.weight": (64,)},
])
def test_malformed_shapes_in_auxiliary_layouts_do_not_crash_detection(broken: dict[str, tuple[int, ...]]) -> None:
    headers = [ax.controlnet_shapes("sd1"), ax.controlnet_shapes("sdxl", layout="diffusers"), ax.control_lora_shapes(),
               ax.flux_controlnet_shapes(), ax.sd3_controlnet_shapes(), ax.t2i_adapter_shapes("sd1"),
               ax.t2i_adapter_shapes("sdxl", layout="diffusers"), ax.ip_adapter_shapes("sd1", "plain"),
               ax.clip_vision_shapes("tiny"), ax.clip_vision_shapes("tiny", layout="open_clip"),
               {k: tuple(v.shape) for k, v in ax.esrgan_state(4).items()},
               {k: tuple(v.shape) for k, v in ax.esrgan_state(4, layout="new").items()}]
    for shapes in headers:
        damaged = {**shapes, **{name: shape for name, shape in broken.items() if name in shapes}}
        assert detect(_header(damaged), {}).kind  # a verdict, never an exception


def _meta_header(model: Any) -> dict:
    return {name: (tensor.dtype, tuple(tensor.shape)) for name, tensor in model.state_dict().items()}


def test_flux_and_sd3_controlnets_built_by_diffusers_at_their_published_sizes() -> None:
    """Every tensor diffusers' own ControlNet classes hold, at the published configs (InstantX FLUX.1 Canny and
    Union, InstantX SD3 Canny, Stability's SD3.5 Large ControlNets), built on the meta device."""
    from diffusers import FluxControlNetModel, SD3ControlNetModel

    flux = dict(in_channels=64, num_layers=5, num_single_layers=10, attention_head_dim=128, num_attention_heads=24,
                joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True)
    sd3 = dict(sample_size=128, patch_size=2, in_channels=16, attention_head_dim=64, joint_attention_dim=4096,
               pooled_projection_dim=2048, out_channels=16)
    with torch.device("meta"):
        canny = FluxControlNetModel(**flux)
        union = FluxControlNetModel(**flux, num_mode=10)
        sd3_medium = SD3ControlNetModel(**sd3, num_layers=6, num_attention_heads=24, caption_projection_dim=1536,
                                        pos_embed_max_size=192)
        sd35_large = SD3ControlNetModel(**sd3, num_layers=19, num_attention_heads=38, caption_projection_dim=2432,
                                        pos_embed_max_size=None, pos_embed_type=None, use_pos_embed=False,
                                        force_zeros_for_pooled_projection=False)
    _check(detect(_meta_header(canny)), "controlnet", "flux1", layout="diffusers", blocks=5)
    _check(detect(_meta_header(union)), "controlnet", "flux1", union=True)
    _check(detect(_meta_header(sd3_medium)), "controlnet", "sd3", layout="diffusers", blocks=6)
    large = detect(_meta_header(sd35_large))
    assert (large.kind, large.architecture, large.base_model) == ("controlnet", "sd3.5-large", "sd3")


def test_upscalers_are_told_without_torch_load_or_spandrels_file_loader(aux_files, monkeypatch: pytest.MonkeyPatch
                                                                       ) -> None:
    """The pickles are read by sdhub's safe reader; spandrel only ever sees names and shapes."""
    from sdhub.models.detect_upscaler import _spandrel

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model file was loaded by torch or spandrel")

    spandrel = _spandrel()
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", refuse)
    for label in ("esrgan.pth", "realesrgan.pth", "compact.pth", "swinir.pth", "dat.pth"):
        path, kind, base, variant = aux_files[label]
        report = sdhub.inspect(path)
        assert (report.kind, report.detection.variant) == (kind, variant), label
        assert report.detection.details["scale"] in (2, 4), label
