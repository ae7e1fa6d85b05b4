"""Models that see or draw images beside the diffusion model: IP-Adapters, CLIP vision encoders, preview decoders.

- IP-Adapter (h94's layout, ``.bin`` pickles of ``{"image_proj": {...}, "ip_adapter": {...}}``, which the
  safe reader flattens to ``image_proj.*`` / ``ip_adapter.*``, as the ``.safetensors`` releases name them):
  the family from the width ``ip_adapter.N.to_k_ip`` takes in (the UNet's cross-attention width), the
  variant from the image projection (linear: plain; Resampler: plus; MLP: full-face; 512-wide face
  embedding: Face ID), and the CLIP vision encoder it needs from the projection's input width.
  XLabs' Flux IP-Adapter and Flux Redux are told by their own keys.
- CLIP vision (transformers ``vision_model.encoder.layers``, open_clip ``visual.transformer.resblocks``):
  which ViT (L/14, H/14, bigG/14, B) or SigLIP, from the hidden width, depth and patch size.
- Preview decoders: TAESD (original ``N.conv.M`` Sequential, ComfyUI's ``taesd_decoder.``, diffusers'
  ``decoder.layers.N``) and A1111's VAE-approx (``conv1`` .. ``conv8``), with their latent channels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from sdhub.models.detection import (
    CROSS_ATTENTION_BASE, LATENT_FAMILIES, TRANSFORMER_WIDTH_BASE, Detection, shape_of as _shape, tolerates_malformed_shapes)

#: CLIP vision encoders by hidden width (with the patch size they are published with).
VIT_BY_WIDTH = {768: "ViT-B", 1024: "ViT-L", 1280: "ViT-H", 1664: "ViT-bigG"}
#: The image-embedding width an IP-Adapter projection takes in -> the encoder it was trained with.
#: Plain adapters take the projected embedding, plus/full-face ones the penultimate hidden states.
IMAGE_EMBEDDING_ENCODER = {768: "ViT-L/14", 1024: "ViT-H/14", 1280: "ViT-bigG/14"}
HIDDEN_STATE_ENCODER = {1024: "ViT-L/14", 1280: "ViT-H/14", 1664: "ViT-bigG/14", 1152: "SigLIP so400m/14"}
_TO_K_IP = re.compile(r"^ip_adapter\.\d+\.to_k_ip\.weight$")


@tolerates_malformed_shapes("ip-adapter")
def detect_ip_adapter(tensors: Mapping[str, Any]) -> Detection | None:
    """An IP-Adapter (or Flux Redux) verdict, or None."""
    names = set(tensors)
    if {"redux_up.weight", "redux_down.weight"} <= names:
        width = _shape(tensors["redux_up.weight"])[-1]
        return Detection("ip-adapter", architecture="flux1-redux", base_model="flux1", variant="redux",
                         evidence=[f"redux_up / redux_down projections (Flux Redux image prompt, image features "
                                   f"{width} wide)"],
                         details={"image_encoder": "SigLIP" if width == 1152 else f"width {width}"})
    if any(n.startswith("ip_adapter_proj_model.") for n in names) and any(
            ".ip_adapter_double_stream_k_proj." in n for n in names):
        proj = next((n for n in sorted(names)
                     if n.startswith("ip_adapter_proj_model.") and n.endswith("proj.weight")), None)
        width = _shape(tensors[proj])[-1] if proj else None
        details = {"image_encoder": IMAGE_EMBEDDING_ENCODER[width]} if width in IMAGE_EMBEDDING_ENCODER else {}
        return Detection("ip-adapter", base_model="flux1", variant="plain",
                         evidence=["ip_adapter_proj_model and double-stream k/v projections (XLabs Flux IP-Adapter)"],
                         details={"layout": "xlabs", **details})
    if not (any(n.startswith("image_proj.") for n in names) and any(n.startswith("ip_adapter.") for n in names)):
        return None
    evidence = ["image_proj and ip_adapter tensors (IP-Adapter)"]
    details: dict[str, Any] = {}
    variant, encoder = _ip_projection(tensors, names, evidence, details)
    if encoder:
        details["image_encoder"] = encoder
    base = None
    to_k = [n for n in names if _TO_K_IP.match(n)]
    if to_k:
        out_width, in_width = _shape(tensors[min(to_k, key=_layer_number)])[:2]
        details["layers"] = len(to_k)
        base = CROSS_ATTENTION_BASE.get(in_width)
        if base is not None:
            evidence.append(f"to_k_ip takes the {in_width}-wide text context ({base})")
        elif (base := TRANSFORMER_WIDTH_BASE.get(out_width)) is not None:
            evidence.append(f"to_k_ip writes {out_width}-wide transformer attention ({base})")
        else:
            evidence.append(f"to_k_ip width {in_width} matches no known model")
    if any(".to_q_lora." in n or ".to_k_lora." in n for n in names):
        evidence.append("attention LoRA weights beside the adapter (Face ID)")
    return Detection("ip-adapter", base_model=base, variant=variant, evidence=evidence, details=details)


def _layer_number(name: str) -> int:
    return int(name.split(".")[1])


def _ip_projection(tensors: Mapping[str, Any], names: set[str], evidence: list[str], details: dict[str, Any]
                   ) -> tuple[str | None, str | None]:
    """The adapter variant and the image encoder it needs, from its image projection."""
    if any(n.startswith("image_proj.perceiver_resampler.") for n in names):
        evidence.append("perceiver resampler over a face embedding (Face ID plus)")
        return "face-id-plus", "ViT-H/14"
    if "image_proj.latents" in names:
        tokens = _shape(tensors["image_proj.latents"])[1]
        details["tokens"] = tokens
        width = _shape(tensors["image_proj.proj_in.weight"])[-1] if "image_proj.proj_in.weight" in names else None
        evidence.append(f"Resampler projection with {tokens} query tokens (plus)")
        return "plus", HIDDEN_STATE_ENCODER.get(width) if width else None
    if "image_proj.proj.0.weight" in names:
        width = _shape(tensors["image_proj.proj.0.weight"])[-1]
        if width == 512:
            evidence.append("MLP projection of a 512-wide face embedding (Face ID, insightface)")
            return "face-id", None
        evidence.append(f"MLP projection of {width}-wide hidden states (full-face)")
        return "full-face", HIDDEN_STATE_ENCODER.get(width)
    if "image_proj.proj.weight" in names:
        out_width, width = _shape(tensors["image_proj.proj.weight"])[:2]
        norm = _shape(tensors["image_proj.norm.weight"])[0] if "image_proj.norm.weight" in names else None
        if norm:
            details["tokens"] = out_width // norm
        evidence.append(f"linear projection of a {width}-wide image embedding (plain)")
        return "plain", IMAGE_EMBEDDING_ENCODER.get(width)
    return None, None


@tolerates_malformed_shapes("clip-vision")
def detect_clip_vision(tensors: Mapping[str, Any]) -> Detection | None:
    """A CLIP (or SigLIP) vision encoder verdict, or None."""
    for prefix, layers_at, patch_key, layout in (
            ("vision_model.", "vision_model.encoder.layers.", "vision_model.embeddings.patch_embedding.weight",
             "transformers"),
            ("visual.", "visual.transformer.resblocks.", "visual.conv1.weight", "open_clip"),
            # A vision model saved on its own by newer transformers drops the vision_model. prefix.
            ("", "encoder.layers.", "embeddings.patch_embedding.weight", "transformers")):
        if patch_key not in tensors:
            continue
        depth = len({n[len(layers_at):].split(".", 1)[0] for n in tensors if n.startswith(layers_at)})
        if depth == 0:
            continue
        width, _, patch, _ = _shape(tensors[patch_key])
        siglip = layout == "transformers" and f"{prefix}embeddings.class_embedding" not in tensors
        positions = _positions(tensors, prefix, layout)
        tokens = positions - (0 if siglip else 1) if positions else None
        side = math.isqrt(tokens) * patch if tokens and math.isqrt(tokens) ** 2 == tokens else None
        name = _vision_name(width, patch, depth, siglip)
        evidence = [f"{layout} vision tower ({layers_at}N), {depth} layers of width {width}, patch {patch}"]
        if siglip:
            evidence.append("no class embedding (SigLIP)")
        details: dict[str, Any] = {"encoder": name, "hidden_size": width, "layers": depth, "patch_size": patch,
                                   "layout": layout}
        if side:
            details["image_size"] = side
        projection = _projection_width(tensors, layout)
        if projection:
            details["projection_dim"] = projection
        if any(n.startswith(("text_model.", "transformer.resblocks.")) for n in tensors):
            evidence.append("also holds a text tower (a whole CLIP model)")
        return Detection("clip-vision", variant=name, evidence=evidence, details=details)
    return None


def _positions(tensors: Mapping[str, Any], prefix: str, layout: str) -> int | None:
    key = (f"{prefix}embeddings.position_embedding.weight" if layout == "transformers"
           else "visual.positional_embedding")
    return _shape(tensors[key])[0] if key in tensors else None


def _projection_width(tensors: Mapping[str, Any], layout: str) -> int | None:
    if layout == "transformers" and "visual_projection.weight" in tensors:
        return _shape(tensors["visual_projection.weight"])[0]
    if layout == "open_clip" and "visual.proj" in tensors:
        return _shape(tensors["visual.proj"])[-1]
    return None


def _vision_name(width: int, patch: int, depth: int, siglip: bool) -> str:
    if siglip:
        return f"SigLIP so400m/{patch}" if width == 1152 else f"SigLIP (width {width})/{patch}"
    base = VIT_BY_WIDTH.get(width)
    return f"{base}/{patch}" if base else f"ViT (width {width}, {depth} layers)/{patch}"


# ---- preview decoders -----------------------------------------------------------------------

_TAESD_NAME = re.compile(r"^(?:(?P<part>taesd_decoder|taesd_encoder|decoder\.layers|encoder\.layers)\.)?"
                         r"(?P<index>\d+)\.(?:conv\.\d+\.)?(?:weight|bias)$")
_VAE_APPROX = {f"conv{i}.{p}" for i in range(1, 9) for p in ("weight", "bias")}


@tolerates_malformed_shapes("preview-decoder")
def detect_preview_decoder(tensors: Mapping[str, Any]) -> Detection | None:
    """A TAESD or A1111 VAE-approx verdict, or None."""
    names = set(tensors)
    if names == _VAE_APPROX:
        latent = _shape(tensors["conv1.weight"])[1]
        return _preview("vae-approx", latent, ["conv1..conv8 only (A1111's VAE-approx preview decoder)"],
                        {"part": "decoder"})
    return _taesd(tensors, names)


def _taesd(tensors: Mapping[str, Any], names: set[str]) -> Detection | None:
    extras = {"vae_scale", "vae_shift"}  # ComfyUI's taesd3 / taef1 files carry the latent scale beside the weights
    parts: dict[str, dict[int, str]] = {}
    for name in names - extras:
        match = _TAESD_NAME.match(name)
        if match is None:
            return None
        parts.setdefault(match["part"] or "", {})[int(match["index"])] = name
    if not parts or not any(".conv." in n for n in names):
        return None
    latent: int | None = None
    found: list[str] = []
    for part, layers in sorted(parts.items()):
        first = layers[min(layers)].rsplit(".", 1)[0] + ".weight"
        last = layers[max(layers)].rsplit(".", 1)[0] + ".weight"
        if first not in tensors or last not in tensors:
            return None
        first_shape, last_shape = _shape(tensors[first]), _shape(tensors[last])
        if len(first_shape) != 4 or len(last_shape) != 4:
            return None
        if first_shape[1] == 3 and part in ("", "taesd_encoder", "encoder.layers"):
            found.append("encoder")
            latent = latent or last_shape[0]
        elif last_shape[0] == 3 and part in ("", "taesd_decoder", "decoder.layers"):
            found.append("decoder")
            latent = latent or first_shape[1]
        else:
            return None
    layout = {"": "original", "taesd_decoder": "ComfyUI", "taesd_encoder": "ComfyUI"}.get(
        next(iter(parts)), "diffusers AutoencoderTiny")
    what = " and ".join(sorted(set(found), reverse=True))
    return _preview("taesd", latent, [f"TAESD {what} ({layout} layout: small Sequential convolution blocks)"],
                    {"part": what, "layout": layout})


def _preview(variant: str, latent: int | None, evidence: list[str], details: dict[str, Any]) -> Detection:
    families = LATENT_FAMILIES.get(latent or 0)
    if latent is not None:
        details["latent_channels"] = latent
        if families:
            details["families"] = list(families)
        evidence.append(f"{latent} latent channels" + (f" ({' / '.join(families)}; the layout is the same for each)"
                                                       if families else " (no known family)"))
    return Detection("preview-decoder", variant=variant, evidence=evidence, details=details)
