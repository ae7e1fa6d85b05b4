"""What a model file is, from tensor names, shapes and metadata alone (no weights are read).

``detect`` answers kind (checkpoint, lora, embedding, vae, unknown), architecture (sd1, sd2,
sd2-v, sdxl, sdxl-refiner), the inpainting / instruct-pix2pix variants, the LoRA flavour and the
base model a LoRA or embedding fits, each with the evidence used. Structure (which containers and
layers exist) decides first; widths and metadata confirm or fill in what structure cannot tell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdhub.models.detect_embedding import detect_embedding
from sdhub.models.detect_lora import detect_lora, lora_flavour
from sdhub.models.detection import (  # noqa: F401  (re-exported: what callers import from here)
    CROSS_ATTENTION_BASE, INPUT_CHANNEL_VARIANTS, PREDICTION_METADATA_KEY,
    UNET_PREFIX, Detection, ADM_INPUT, ADM_WIDTH_ARCH, INPUT_CONV, family, shape_of as _shape)


def detect(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None, *,
           sidecar_config: str | None = None) -> Detection:
    """Classify a model from ``{name: TensorInfo or (dtype, shape)}`` and its safetensors metadata.

    ``sidecar_config`` is the text of the A1111 ``<name>.yaml`` beside the file, if any: the only
    place most SD2 768-v checkpoints say they predict v.
    """
    metadata = metadata or {}
    names = list(tensors)
    if any(name.startswith(UNET_PREFIX) for name in names):
        return _detect_checkpoint(tensors, metadata, sidecar_config)
    if flavour := lora_flavour(names):
        return detect_lora(tensors, metadata, flavour)
    if embedding := detect_embedding(tensors):
        return embedding
    if _is_vae(names):
        return _detect_vae(tensors, names)
    return Detection("unknown", evidence=["no UNet, VAE, LoRA or embedding tensors recognised"])


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

    if ADM_INPUT in tensors:
        adm_width = _shape(tensors[ADM_INPUT])[-1]
        from_adm = ADM_WIDTH_ARCH.get(adm_width)
        if architecture is None:
            architecture = from_adm or "sdxl"
        evidence.append(f"UNet has SDXL's size/crop vector input (label_emb, width {adm_width})")
    elif architecture is None:
        proj_in = next((n for n in sorted(names) if n.startswith(UNET_PREFIX) and n.endswith(".proj_in.weight")), None)
        if proj_in is not None:
            linear = len(_shape(tensors[proj_in])) == 2
            architecture = "sd2" if linear else "sd1"
            evidence.append("no text encoder; UNet attention projections are "
                            + ("linear (SD2 style)" if linear else "1x1 convolutions (SD1 style)"))

    cross_width = _cross_attention_width(tensors)
    if cross_width is not None:
        known = CROSS_ATTENTION_BASE.get(cross_width)
        expected = family(architecture)
        if known is not None and expected is not None and known != expected:
            evidence.append(f"warning: cross-attention width {cross_width} is {known}'s, not {expected}'s")
        elif known is not None:
            evidence.append(f"cross-attention width {cross_width} ({known})")
            architecture = architecture or known

    detection = Detection("checkpoint", architecture=architecture, evidence=evidence)
    if INPUT_CONV in tensors:
        channels = _shape(tensors[INPUT_CONV])[1]
        if channels in INPUT_CHANNEL_VARIANTS:
            detection.variant, held = INPUT_CHANNEL_VARIANTS[channels]
            evidence.append(f"UNet input has {channels} channels ({held}): {detection.variant}")
    if architecture == "sd2" and (reason := _v_prediction_marker(tensors, metadata, sidecar_config)):
        detection.architecture = "sd2-v"
        evidence.append(reason)
    if architecture is None:
        evidence.append("UNet present but the text encoder layout is not one sdhub knows")
    detection.base_model = family(detection.architecture)
    return detection


def _cross_attention_width(tensors: Mapping[str, Any]) -> int | None:
    for name in sorted(tensors):
        if name.startswith(UNET_PREFIX) and name.endswith("attn2.to_k.weight"):
            return _shape(tensors[name])[-1]
    return None


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
    latent = next((_shape(tensors[n])[0] for n in names if n.endswith("post_quant_conv.weight")), None)
    if latent is not None:
        evidence.append(f"{latent} latent channels" + (" (SD1/SD2/SDXL family)" if latent == 4 else ""))
    return Detection("vae", evidence=evidence)


def read_sidecar_config(path: Path) -> str | None:
    """The A1111 ``<name>.yaml`` config beside a checkpoint, if there is one (small text only)."""
    sidecar = path.with_suffix(".yaml")
    try:
        if sidecar.is_file() and sidecar.stat().st_size < 1_000_000:
            return sidecar.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return None
