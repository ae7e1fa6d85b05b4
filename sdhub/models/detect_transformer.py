"""FLUX.1 and SD3/SD3.5 transformers (MM-DiTs), alone or in an all-in-one checkpoint, in every published layout.

Layouts: BFL's original names (``double_blocks.N.img_attn.qkv``, ``single_blocks.N.linear1``), Stability's
(``joint_blocks.N.x_block.attn.qkv``), either bare (``flux1-dev.safetensors``) or under ComfyUI's
``model.diffusion_model.`` (its all-in-one checkpoints add ``text_encoders.clip_l/clip_g/t5xxl.`` and the
VAE under ``vae.`` or ``first_stage_model.``), and diffusers' (``transformer_blocks.N.attn.to_q``,
``single_transformer_blocks``). Structure decides the variant; widths and depths only confirm:

- FLUX.1: ``guidance_in`` (guidance distillation) is dev's, schnell has none; what ``img_in`` takes per token
  against what ``final_layer`` gives back tells Fill (x6: latent + masked image + packed mask) and the
  Depth/Canny models (x2: latent + control latent), which share one structure.
- SD3: MMDiT-X's second attention (``x_block.attn2``) is SD3.5 Medium's; q/k RMS norms (``ln_q``) without it
  are SD3.5 Large's (and Large Turbo's); neither is SD3 Medium.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sdhub.models.detection import (FLUX_BLOCKS, FLUX_WIDTH, UNET_PREFIX, Detection, count_indices, dimension,
                                    shape_of as _shape)

#: Real SD3 sizes: (hidden width, blocks) -> what they are (FLUX.1's: detection.FLUX_WIDTH, FLUX_BLOCKS).
SD3_SIZES = {(1536, 24): ("sd3-medium", "sd3.5-medium"), (2432, 38): ("sd3.5-large",)}
SD35_MEDIUM_POSITIONS = 384 * 384  # SD3.5 Medium's larger position table (SD3 Medium and Large: 192 x 192)
#: Prefixes of the parts an all-in-one checkpoint holds beside the transformer.
TEXT_ENCODER_PREFIXES = {"clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5xxl": "T5-XXL"}
VAE_PREFIXES = ("vae.", "first_stage_model.")
_METADATA_VARIANTS = ("depth", "canny")


def detect_transformer(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Detection | None:
    """A FLUX.1 or SD3/SD3.5 verdict (kind checkpoint or diffusion-model), or None when the tensors hold neither."""
    metadata = metadata or {}
    for prefix in (UNET_PREFIX, ""):
        inner = _under(tensors, prefix)
        if not inner:
            continue
        found = _flux(inner, metadata) or _sd3(inner)
        if found is not None:
            return _with_kind(found, tensors, prefix)
    return None


def _under(tensors: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if not prefix:
        return dict(tensors)
    return {name[len(prefix):]: info for name, info in tensors.items() if name.startswith(prefix)}


def _with_kind(detection: Detection, tensors: Mapping[str, Any], prefix: str) -> Detection:
    """A checkpoint when text encoders or a VAE come with the transformer, a diffusion model otherwise."""
    names = list(tensors)
    encoders = [label for key, label in TEXT_ENCODER_PREFIXES.items()
                if any(n.startswith(f"text_encoders.{key}.") for n in names)]
    vae_prefix = next((p for p in VAE_PREFIXES if any(n.startswith(p + "decoder.") for n in names)), None)
    where = f"under {prefix}" if prefix else "with bare names"
    detection.evidence.insert(0, f"transformer {where} ({detection.details['layout']} layout)")
    if encoders or vae_prefix:
        detection.kind = "checkpoint"
        parts = [f"text encoders {', '.join(encoders)} under text_encoders." if encoders else "no text encoders"]
        if vae_prefix:
            latent = _vae_latent_channels(tensors, vae_prefix)
            parts.append(f"VAE under {vae_prefix}" + (f" ({latent} latent channels)" if latent else ""))
        else:
            parts.append("no VAE")
        detection.evidence.append("all-in-one checkpoint: " + "; ".join(parts))
        detection.details["text_encoders"] = encoders
    else:
        detection.evidence.append("no text encoders or VAE beside it: a diffusion model alone")
    return detection


def _vae_latent_channels(tensors: Mapping[str, Any], prefix: str) -> int | None:
    conv = tensors.get(prefix + "decoder.conv_in.weight")
    return dimension(conv, 1) if conv is not None else None


def _blocks_with(names: Any, pattern: str) -> list[int]:
    """The block numbers whose tensor names match ``pattern`` (its group 1), in order."""
    regex = re.compile(pattern)
    return sorted(int(m.group(1)) for n in names if (m := regex.match(n)))


# ---- FLUX.1 ---------------------------------------------------------------------------------


def _flux(inner: Mapping[str, Any], metadata: Mapping[str, str]) -> Detection | None:
    if "double_blocks.0.img_attn.qkv.weight" in inner and "img_in.weight" in inner:
        layout, image_in, image_out = "BFL", "img_in.weight", "final_layer.linear.weight"
        guidance = "guidance_in.in_layer.weight" in inner
        blocks = (count_indices(inner, r"double_blocks\.(\d+)\."), count_indices(inner, r"single_blocks\.(\d+)\."))
        distilled_guidance = any(n.startswith("distilled_guidance_layer.") for n in inner)
        timestep = "time_in.in_layer.weight" in inner
    elif "single_transformer_blocks.0.attn.to_q.weight" in inner and "x_embedder.weight" in inner:
        layout, image_in, image_out = "diffusers", "x_embedder.weight", "proj_out.weight"
        guidance = "time_text_embed.guidance_embedder.linear_1.weight" in inner
        blocks = (count_indices(inner, r"transformer_blocks\.(\d+)\."), count_indices(inner, r"single_transformer_blocks\.(\d+)\."))
        distilled_guidance = any(n.startswith("distilled_guidance_layer.") for n in inner)
        timestep = "time_text_embed.timestep_embedder.linear_1.weight" in inner
    else:
        return None
    if len(_shape(inner[image_in])) != 2:
        return None
    width, taken = _shape(inner[image_in])
    given = dimension(inner[image_out], 0) if image_out in inner else None
    evidence = [f"FLUX.1 structure: {blocks[0]} double-stream and {blocks[1]} single-stream blocks, width {width}"]
    details: dict[str, Any] = {"layout": layout.lower(), "hidden_size": width,
                               "double_blocks": blocks[0], "single_blocks": blocks[1]}
    if distilled_guidance or not timestep:
        # Chroma and its kin keep FLUX.1's blocks but replace its modulation inputs: not a FLUX.1 model.
        evidence.append("no FLUX.1 timestep embedder (time_in)" if not timestep else
                        "distilled_guidance_layer instead of FLUX.1's modulation inputs (a Chroma-style model)")
        evidence.append("a FLUX.1-derived transformer sdhub does not know; its family is not FLUX.1's")
        return Detection("diffusion-model", evidence=evidence, details=details)
    modulation = ("double_blocks.0.img_mod.lin.weight" if layout == "BFL"
                  else "transformer_blocks.0.norm1.linear.weight")
    if width > FLUX_WIDTH or (blocks[0] and modulation not in inner):
        # FLUX.2 keeps FLUX.1's block names but is wider and shares one modulation across its blocks.
        evidence.append(f"width {width}, wider than FLUX.1's {FLUX_WIDTH}" if width > FLUX_WIDTH else
                        f"no modulation inside the double-stream blocks ({modulation}), which FLUX.1 has")
        evidence.append("a FLUX-like transformer of another family (such as FLUX.2); not FLUX.1")
        return Detection("diffusion-model", evidence=evidence, details=details)
    architecture, variant = flux_variant(taken, given, guidance, evidence, metadata)
    if width == FLUX_WIDTH and blocks == FLUX_BLOCKS:
        evidence.append(f"width {FLUX_WIDTH} with {blocks[0]}+{blocks[1]} blocks: FLUX.1's real size")
    elif width == FLUX_WIDTH:
        evidence.append(f"FLUX.1's width {FLUX_WIDTH} with fewer blocks than its {FLUX_BLOCKS[0]}+{FLUX_BLOCKS[1]} "
                        "(a pruned FLUX.1 such as Flux.1 Lite)")
    return Detection("diffusion-model", architecture=architecture, variant=variant, base_model="flux1",
                     evidence=evidence, details=details)


def flux_variant(taken: int, given: int | None, guidance: bool, evidence: list[str], metadata: Mapping[str, str]
                 ) -> tuple[str | None, str | None]:
    """(architecture, variant) of a FLUX.1 from what its image input takes and gives back per token."""
    ratio = taken / given if given else None
    evidence.append("guidance embedding (guidance_in): guidance-distilled like FLUX.1 dev" if guidance else
                    "no guidance embedding: timestep-distilled like FLUX.1 schnell")
    if ratio == 1:
        evidence.append(f"image input takes {taken} values per token, as many as it predicts")
        return ("flux1-dev" if guidance else "flux1-schnell"), None
    if ratio == 6:
        evidence.append(f"image input takes {taken} values per token, 6x the {given} it predicts "
                        "(latent + masked image + packed mask): FLUX.1 Fill")
        return "flux1-fill", "fill"
    if ratio == 2:
        evidence.append(f"image input takes {taken} values per token, 2x the {given} it predicts (latent + control "
                        "image latent): FLUX.1 Depth or Canny, which share one structure")
        claimed = " ".join(metadata.get(k, "") for k in ("modelspec.architecture", "modelspec.title")).lower()
        named = [v for v in _METADATA_VARIANTS if v in claimed]
        if len(named) == 1:
            evidence.append(f"metadata names it {named[0]}")
            return f"flux1-{named[0]}", named[0]
        evidence.append("the tensors cannot tell Depth from Canny; nothing in the metadata says which")
        return None, "depth-or-canny"
    evidence.append(f"image input takes {taken} values per token against {given} predicted: a variant sdhub "
                    "does not know")
    return None, None


# ---- SD3 / SD3.5 ----------------------------------------------------------------------------


def _sd3(inner: Mapping[str, Any]) -> Detection | None:
    if "joint_blocks.0.x_block.attn.qkv.weight" in inner and "x_embedder.proj.weight" in inner:
        layout, width_key, positions_key = "original", "x_embedder.proj.weight", "pos_embed"
        depth = count_indices(inner, r"joint_blocks\.(\d+)\.")
        dual = _blocks_with(inner, r"joint_blocks\.(\d+)\.x_block\.attn2\.qkv\.weight$")
        qk_norm = "joint_blocks.0.x_block.attn.ln_q.weight" in inner
    elif "transformer_blocks.0.attn.add_q_proj.weight" in inner and "pos_embed.proj.weight" in inner:
        layout, width_key, positions_key = "diffusers", "pos_embed.proj.weight", "pos_embed.pos_embed"
        depth = count_indices(inner, r"transformer_blocks\.(\d+)\.")
        dual = _blocks_with(inner, r"transformer_blocks\.(\d+)\.attn2\.to_q\.weight$")
        qk_norm = "transformer_blocks.0.attn.norm_q.weight" in inner
    else:
        return None
    width = dimension(inner[width_key], 0)
    positions = dimension(inner[positions_key], 1) if positions_key in inner else None
    evidence = [f"SD3 MM-DiT structure: {depth} joint blocks, width {width}"]
    architecture = sd3_architecture(dual, qk_norm, width, depth, evidence)
    if positions == SD35_MEDIUM_POSITIONS:
        evidence.append("384x384 position table (SD3.5 Medium's)")
    details = {"layout": layout, "hidden_size": width, "joint_blocks": depth}
    return Detection("diffusion-model", architecture=architecture, base_model="sd3", evidence=evidence,
                     details=details)


def sd3_architecture(dual: list[int], qk_norm: bool, width: int | None, depth: int, evidence: list[str]) -> str:
    """The SD3 variant from its structure (blocks with a second attention, q/k norms); real sizes confirm."""
    if dual:
        architecture = "sd3.5-medium"
        evidence.append(f"MMDiT-X second attention (x_block.attn2) in blocks {dual[0]}-{dual[-1]}: SD3.5 Medium")
    elif qk_norm:
        architecture = "sd3.5-large"
        evidence.append("q/k RMS norms (ln_q, ln_k) without a second attention: SD3.5 Large (or Large Turbo)")
    else:
        architecture = "sd3-medium"
        evidence.append("no q/k norms and no second attention: SD3 Medium")
    real = SD3_SIZES.get((width, depth))
    if real is not None:
        if architecture in real:
            evidence.append(f"width {width} with {depth} blocks confirms it")
        else:
            evidence.append(f"warning: width {width} with {depth} blocks is {' or '.join(real)}'s size, "
                            f"not {architecture}'s")
    return architecture
