"""What a model file is, from tensor names, shapes and metadata alone (no weights are read).

``detect`` answers kind (see ``kinds.KINDS``), architecture (sd1, sd2, sd2-v, sdxl, sdxl-refiner, sd3-medium,
sd3.5-medium, sd3.5-large, flux1-dev, flux1-schnell, flux1-fill...), the inpainting / instruct-pix2pix
variants, the LoRA flavour and the base model (family) a file belongs to, each with the evidence used.
Structure (which containers and layers exist) decides first; widths and metadata confirm or fill in
what structure cannot tell. This module holds the dispatcher, SD1/SD2/SDXL checkpoints and UNets alone
(kind diffusion-model when no text encoder or VAE comes with them: LDM names with or without
``model.diffusion_model.``, or diffusers') and VAEs (4 latent channels: SD1/SD2/SDXL; 16: SD3/FLUX.1);
FLUX.1/SD3 transformers are in ``detect_transformer``, text encoders in ``detect_text_encoder``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdhub.models.detect_control import detect_control
from sdhub.models.detect_embedding import detect_embedding
from sdhub.models.detect_hypernetwork import detect_hypernetwork
from sdhub.models.detect_image_models import detect_clip_vision, detect_ip_adapter, detect_preview_decoder
from sdhub.models.detect_lora import detect_lora
from sdhub.models.detect_text_encoder import detect_text_encoder
from sdhub.models.detect_transformer import detect_transformer
from sdhub.models.kinds import OTHER
from sdhub.models.detection import (  # noqa: F401  (re-exported: what callers import from here)
    CROSS_ATTENTION_BASE, INPUT_CHANNEL_VARIANTS, PREDICTION_METADATA_KEY,
    UNET_PREFIX, Detection, ADM_INPUT, ADM_WIDTH_ARCH, INPUT_CONV, LATENT_FAMILIES, dimension, family,
    shape_of as _shape)


def detect(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None, *,
           sidecar_config: str | None = None) -> Detection:
    """Classify a model from ``{name: TensorInfo or (dtype, shape)}`` and its safetensors metadata.

    ``sidecar_config`` is the text of the A1111 ``<name>.yaml`` beside the file, if any: the only
    place most SD2 768-v checkpoints say they predict v.
    """
    metadata = metadata or {}
    names = list(tensors)
    if "control_model.zero_convs.0.0.weight" in tensors and (control := detect_control(tensors)):
        # ControlNet 1.0's full files (control_sd15_canny.pth) carry a whole SD1 model beside control_model.
        if any(name.startswith(UNET_PREFIX) for name in names):
            control.evidence.append("a whole SD model is saved beside it (ControlNet 1.0's full files); "
                                    "only control_model is the ControlNet")
        return control
    if any(name.startswith(UNET_PREFIX) for name in names):
        return detect_transformer(tensors, metadata) or _detect_checkpoint(tensors, metadata, sidecar_config)
    # Before LoRAs and VAEs: control-LoRAs, Face ID adapters and TAESD reuse their key names.
    if auxiliary := (detect_control(tensors) or detect_ip_adapter(tensors) or detect_clip_vision(tensors)
                     or detect_preview_decoder(tensors) or detect_hypernetwork(tensors)):
        return auxiliary
    if diffusion := detect_transformer(tensors, metadata) or _detect_bare_unet(tensors, metadata, sidecar_config):
        return diffusion
    if lora := detect_lora(tensors, metadata):
        return lora
    if embedding := detect_embedding(tensors):
        return embedding
    if text_encoder := detect_text_encoder(tensors):  # before VAEs: a whole T5 has encoder. and decoder.
        return text_encoder
    if _is_vae(names):
        return _detect_vae(tensors, names)
    if upscaler := _detect_upscaler(tensors):  # last: it asks spandrel, imported on first use
        return upscaler
    return Detection(OTHER, evidence=["no tensors of a kind sdhub knows (UNet, transformer, VAE, LoRA, "
                                      "embedding, text encoder, ControlNet, adapter, upscaler...)"])


def _detect_upscaler(tensors: Mapping[str, Any]) -> Detection | None:
    # Every upscaler architecture has convolutions; without a 4-D kernel there is no need to import
    # torch and spandrel (2.5 s) only to hear no.
    if not any(len(_shape(info)) == 4 for info in tensors.values()):
        return None
    from sdhub.models.detect_upscaler import detect_upscaler

    return detect_upscaler(tensors)


def _detect_checkpoint(tensors: Mapping[str, Any], metadata: Mapping[str, str], sidecar_config: str | None
                       ) -> Detection:
    names = set(tensors)
    evidence: list[str] = []
    architecture: str | None = None
    if any(n.startswith("conditioner.embedders.1.model.") for n in names):
        architecture = "sdxl"
        evidence.append("two text encoders (conditioner.embedders.0 CLIP-L, conditioner.embedders.1 OpenCLIP-bigG)")
    elif any(n.startswith("conditioner.embedders.0.model.") for n in names):
        architecture = "sdxl-refiner"
        evidence.append("only OpenCLIP-bigG as conditioner.embedders.0 (SDXL refiner layout)")
    elif any(n.startswith("cond_stage_model.model.") for n in names):
        architecture = "sd2"
        evidence.append("OpenCLIP text encoder under cond_stage_model.model (SD2 layout)")
    elif any(n.startswith("cond_stage_model.transformer.") for n in names):
        architecture = "sd1"
        evidence.append("CLIP text encoder under cond_stage_model.transformer (SD1 layout)")
    # Without a text encoder or a VAE beside it, the UNet is a diffusion model alone.
    kind = "checkpoint" if architecture or any(n.startswith("first_stage_model.") for n in names) else "diffusion-model"

    levels = 4 if UNET_PREFIX + "input_blocks.11.0.in_layers.0.weight" in tensors else 3
    architecture, foreign = _unet_family(tensors, names, UNET_PREFIX, ADM_INPUT, levels, architecture, evidence)
    detection = Detection(kind, architecture=architecture, evidence=evidence)
    _input_channel_variant(detection, tensors, INPUT_CONV)
    if architecture == "sd2" and (reason := _v_prediction_marker(tensors, metadata, sidecar_config)):
        detection.architecture = "sd2-v"
        evidence.append(reason)
    if architecture is None and foreign is None:
        evidence.append("UNet present but the text encoder layout is not one sdhub knows" if kind == "checkpoint"
                        else "a UNet alone whose family sdhub cannot tell")
    elif kind == "diffusion-model":
        evidence.append("no text encoder or VAE beside the UNet: a diffusion model alone")
    detection.base_model = family(detection.architecture)
    return detection


def _unet_family(tensors: Mapping[str, Any], names: set[str], prefix: str, adm_key: str, levels: int,
                 architecture: str | None, evidence: list[str]) -> tuple[str | None, str | None]:
    """The family a UNet's own tensors (names under ``prefix``) tell, LDM or diffusers names alike:
    (architecture, why it belongs to no SD family or None). ``architecture`` is what the text
    encoders said, if anything; the vector input ``adm_key`` tells SDXL from its refiner by width."""
    foreign = _foreign_unet(names, prefix)
    if foreign is not None:
        evidence.append(foreign)
    elif adm_key in tensors:
        adm_width = dimension(tensors[adm_key], -1)
        label = adm_key[len(prefix):].split(".")[0]
        if architecture is None and (architecture := _sdxl_by_adm_width(adm_width, levels)) is None:
            foreign = (f"a vector input ({label}) of width {adm_width}, not SDXL's 2816 or its refiner's 2560: "
                       "a UNet of a model sdhub does not know")
            evidence.append(foreign)
        else:
            evidence.append(f"UNet has SDXL's size/crop vector input ({label}, width {adm_width}) and {levels} levels")
    elif architecture is None:
        proj_in = next((n for n in sorted(names) if n.startswith(prefix) and n.endswith(".proj_in.weight")), None)
        if proj_in is not None:
            architecture = _sd1_or_sd2(_shape(tensors[proj_in]), evidence)
    if foreign is None:
        architecture = _confirm_cross_width(_cross_attention_width(tensors, prefix), architecture, evidence)
    return architecture, foreign


def _input_channel_variant(detection: Detection, tensors: Mapping[str, Any], conv_in_key: str) -> None:
    """Inpainting or instruct-pix2pix, from the UNet's input channels (only for a family sdhub knows)."""
    if conv_in_key in tensors and detection.architecture is not None:
        channels = dimension(tensors[conv_in_key], 1)
        if channels in INPUT_CHANNEL_VARIANTS:
            detection.variant, held = INPUT_CHANNEL_VARIANTS[channels]
            detection.evidence.append(f"UNet input has {channels} channels ({held}): {detection.variant}")


#: SDXL base UNets have three levels, the refiner's four (what tells them apart at any width).
_SDXL_BY_LEVELS = {3: "sdxl", 4: "sdxl-refiner"}
#: The narrowest vector input an SDXL can have: a pooled text embedding and five 256-wide Fourier features.
_MIN_SDXL_ADM_WIDTH = 5 * 256
#: Modules of UNets built on SD's but of other models: video (SVD's temporal layers), Kolors (ChatGLM
#: projection), DeepFloyd-style image conditioning.
_FOREIGN_UNET_MODULES = {"time_stack.": "temporal layers (time_stack): a video UNet such as SVD",
                         "time_mixer.": "temporal layers (time_mixer): a video UNet such as SVD",
                         "encoder_hid_proj.": "a projection of another text encoder (encoder_hid_proj, as Kolors "
                                              "has)"}


def _sdxl_by_adm_width(adm_width: int | None, levels: int) -> str | None:
    """SDXL base or refiner from the vector input's width; tiny test UNets (and a malformed shape that
    gives no width) fall back on their levels."""
    if adm_width in ADM_WIDTH_ARCH:
        return ADM_WIDTH_ARCH[adm_width]
    # Real SDXL-family widths are 2816 and 2560; another real width (Kolors' 5632) is another model, while
    # sdhub's tiny test SDXLs use widths below any real model's.
    return _SDXL_BY_LEVELS.get(levels) if adm_width is None or adm_width < _MIN_SDXL_ADM_WIDTH else None


def _foreign_unet(names: Any, prefix: str) -> str | None:
    """Why a UNet with SD's names belongs to no SD family (video, another text encoder), or None."""
    for module, reason in _FOREIGN_UNET_MODULES.items():
        if any(module in name for name in names if name.startswith(prefix)):
            return reason + "; not a family sdhub knows"
    return None
_REFINER_CROSS_WIDTH = 1280


def _sd1_or_sd2(proj_in_shape: tuple[int, ...], evidence: list[str]) -> str:
    linear = len(proj_in_shape) == 2
    evidence.append("no text encoder; UNet attention projections are "
                    + ("linear (SD2 style)" if linear else "1x1 convolutions (SD1 style)"))
    return "sd2" if linear else "sd1"


def _confirm_cross_width(cross_width: int | None, architecture: str | None, evidence: list[str]) -> str | None:
    """The cross-attention width confirms the family (or fills it in); a width of another family is a warning."""
    known = CROSS_ATTENTION_BASE.get(cross_width) if cross_width is not None else None
    if architecture == "sdxl-refiner" and cross_width == _REFINER_CROSS_WIDTH:
        evidence.append(f"cross-attention width {cross_width} (OpenCLIP-bigG alone: the SDXL refiner's)")
        return architecture
    if known is None:
        return architecture
    expected = family(architecture)
    if expected is not None and known != expected:
        evidence.append(f"warning: cross-attention width {cross_width} is {known}'s, not {expected}'s")
        return architecture
    evidence.append(f"cross-attention width {cross_width} ({known})")
    return architecture or known


def _cross_attention_width(tensors: Mapping[str, Any], prefix: str) -> int | None:
    for name in sorted(tensors):
        if name.startswith(prefix) and name.endswith("attn2.to_k.weight"):
            return _shape(tensors[name])[-1]
    return None


def _detect_bare_unet(tensors: Mapping[str, Any], metadata: Mapping[str, str], sidecar_config: str | None
                      ) -> Detection | None:
    """A UNet alone without ``model.diffusion_model.``: LDM names, or diffusers' (``unet/`` of a pipeline)."""
    names = set(tensors)
    has = lambda prefix: any(n.startswith(prefix) for n in names)  # noqa: E731
    if {"input_blocks.0.0.weight", "time_embed.0.weight"} <= names and has("output_blocks."):
        detection = _detect_checkpoint({UNET_PREFIX + n: info for n, info in tensors.items()}, metadata,
                                       sidecar_config)
        detection.evidence.insert(0, "LDM UNet (input_blocks/middle_block/output_blocks) with bare names")
        return detection
    if {"conv_in.weight", "time_embedding.linear_1.weight"} <= names and has("up_blocks.") and has("down_blocks."):
        return _detect_diffusers_unet(tensors, names)
    return None


def _detect_diffusers_unet(tensors: Mapping[str, Any], names: set[str]) -> Detection:
    evidence = ["diffusers UNet (down_blocks/mid_block/up_blocks)"]
    levels = len({n.split(".")[1] for n in names if n.startswith("down_blocks.")})
    architecture, _ = _unet_family(tensors, names, "", "add_embedding.linear_1.weight", levels, None, evidence)
    detection = Detection("diffusion-model", architecture=architecture, evidence=evidence)
    _input_channel_variant(detection, tensors, "conv_in.weight")
    evidence.append("no text encoder or VAE beside the UNet: a diffusion model alone")
    detection.base_model = family(architecture)
    return detection


def _v_prediction_marker(tensors: Mapping[str, Any], metadata: Mapping[str, str], sidecar_config: str | None
                         ) -> str | None:
    """Why the file says it is a v-prediction model, if it does (there is no standard flag)."""
    if sidecar_config is not None and re.search(r"^\s*parameterization:\s*[\"']?v[\"']?\s*$", sidecar_config, re.M):
        return "sidecar .yaml config says parameterization: v"
    if metadata.get(PREDICTION_METADATA_KEY, "").lower() == "v":
        return f"metadata {PREDICTION_METADATA_KEY} = 'v' (written by sdhub)"
    if "v_pred" in tensors:
        return "file carries a 'v_pred' marker tensor: v-prediction"
    prediction = metadata.get("modelspec.prediction_type", "").lower()
    if prediction in ("v", "v_prediction", "v-prediction"):
        return f"metadata modelspec.prediction_type = {prediction!r}: v-prediction"
    architecture = metadata.get("modelspec.architecture", "").lower()
    if re.search(r"768-v\b|-v$", architecture):
        return f"metadata modelspec.architecture = {architecture!r}: v-prediction"
    return None


# ---- VAE ------------------------------------------------------------------------------------


def _is_vae(names: list[str]) -> bool:
    bare = [n.removeprefix("first_stage_model.") for n in names]
    return any(n.startswith("encoder.") for n in bare) and any(n.startswith("decoder.") for n in bare)


def _detect_vae(tensors: Mapping[str, Any], names: list[str]) -> Detection:
    layout = "diffusers" if any(".down_blocks." in n or n.startswith("encoder.down_blocks") for n in names) else "LDM"
    evidence = [f"encoder/decoder tensors without a UNet ({layout} naming)"]
    prefix = "first_stage_model." if any(n.startswith("first_stage_model.") for n in names) else ""
    # The decoder's first convolution takes the latent, in either naming, with or without quant convs.
    latent = dimension(tensors[prefix + "decoder.conv_in.weight"], 1) if prefix + "decoder.conv_in.weight" in tensors \
        else next((dimension(tensors[n], 0) for n in names if n.endswith("post_quant_conv.weight")), None)
    details: dict[str, Any] = {"layout": layout.lower()}
    if latent is not None:
        families = LATENT_FAMILIES.get(latent, ())
        details.update(latent_channels=latent, families=list(families))
        if latent == 16:
            evidence.append("16 latent channels: the SD3 / FLUX.1 VAE (the two share one structure, so the tensors "
                            "cannot tell which)")
        else:
            evidence.append(f"{latent} latent channels" + (" (SD1/SD2/SDXL family)" if latent == 4 else ""))
    return Detection("vae", evidence=evidence, details=details)


def read_sidecar_config(path: Path) -> str | None:
    """The A1111 ``<name>.yaml`` config beside a checkpoint, if there is one (small text only)."""
    sidecar = path.with_suffix(".yaml")
    try:
        if sidecar.is_file() and sidecar.stat().st_size < 1_000_000:
            return sidecar.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return None
