"""ControlNets and their relatives (T2I-Adapter, control-LoRA, ControlNet-LLLite), with the family each fits.

Layouts told apart (from the key names the tools publish them in):
- original (lllyasviel's ``.pth``): ``control_model.input_blocks...``, ``control_model.zero_convs``,
  ``control_model.input_hint_block`` (the prefix is dropped in some converted files);
- diffusers: ``controlnet_cond_embedding.*``, ``controlnet_down_blocks.N``, ``controlnet_mid_block``;
- Stability's control-LoRA: a ``lora_controlnet`` marker beside ``*.up`` / ``*.down`` factors;
- kohya's ControlNet-LLLite (SDXL only): ``lllite_unet_*`` modules;
- Flux: XLabs (``controlnet_blocks.N`` beside BFL ``double_blocks``; MistoLine's ``controlnet_blocks.N.linear``),
  InstantX / diffusers
  (``controlnet_x_embedder``, ``controlnet_single_blocks``); SD3 / SD3.5 (``controlnet_blocks.N`` beside
  ``pos_embed_input``);
- T2I-Adapter: TencentARC's ``conv_in`` + ``body.N.block1`` (light: ``body.N.in_conv``), diffusers'
  ``adapter.body.N.resnets.M``.
The family comes from the cross-attention (context) width where there is one, from the transformer
width for Flux and SD3, and from the hint's pixel-unshuffle factor for T2I-Adapters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sdhub.models.detection import (
    ADM_WIDTH_ARCH, CROSS_ATTENTION_BASE, TRANSFORMER_WIDTH_ARCHITECTURE, Detection, count_indices, family,
    shape_of as _shape, tolerates_malformed_shapes)

#: T2I-Adapter hint channels: RGB (3) or one channel, pixel-unshuffled by 8 (SD1) or 16 (SDXL).
T2I_HINT_CHANNELS = {192: ("sd1", "RGB hint unshuffled by 8"), 64: ("sd1", "one-channel hint unshuffled by 8"),
                     768: ("sdxl", "RGB hint unshuffled by 16"), 256: ("sdxl", "one-channel hint unshuffled by 16")}
_ATTN2_K = re.compile(r"attn2\.to_k(\.weight|\.down)$")


@tolerates_malformed_shapes("controlnet")
def detect_control(tensors: Mapping[str, Any]) -> Detection | None:
    """A ControlNet-kind verdict, or None when the tensors are none of these layouts."""
    names = set(tensors)
    if "lora_controlnet" in names:
        return _control_lora(tensors)
    if any(n.startswith("lllite_unet_") for n in names):
        return Detection("controlnet", architecture="sdxl", base_model="sdxl", variant="controlnet-lllite",
                         evidence=["kohya ControlNet-LLLite modules (lllite_unet_*): an SDXL-only control method"],
                         details={"layout": "kohya-lllite"})
    if "controlnet_x_embedder.weight" in names or any(n.startswith("controlnet_single_blocks.") for n in names):
        return _transformer_controlnet(tensors, "diffusers", "controlnet_x_embedder / controlnet_single_blocks "
                                       "(InstantX / diffusers Flux ControlNet)")
    if "controlnet_blocks.0.linear.weight" in names:
        return _transformer_controlnet(tensors, "mistoline", "controlnet_blocks.N.linear (MistoLine Flux ControlNet)")
    if "controlnet_blocks.0.weight" in names:
        if any(n.startswith("double_blocks.") for n in names):
            return _transformer_controlnet(tensors, "xlabs", "controlnet_blocks beside BFL double_blocks "
                                           "(XLabs Flux ControlNet)")
        if any(n.startswith(("pos_embed_input.", "pos_embed.")) for n in names):
            return _transformer_controlnet(tensors, "diffusers", "controlnet_blocks beside pos_embed_input "
                                           "(SD3 ControlNet)")
    if "controlnet_cond_embedding.conv_in.weight" in names or "controlnet_mid_block.weight" in names:
        return _unet_controlnet(tensors, "", "diffusers", "controlnet_cond_embedding and controlnet_down_blocks "
                                "(diffusers ControlNet)")
    for prefix in ("control_model.", ""):
        if f"{prefix}zero_convs.0.0.weight" in names and f"{prefix}input_hint_block.0.weight" in names:
            where = "control_model.zero_convs" if prefix else "zero_convs"
            return _unet_controlnet(tensors, prefix, "original",
                                    f"{where} and input_hint_block (original ControlNet layout)")
    return _t2i_adapter(tensors)


def _unet_controlnet(tensors: Mapping[str, Any], prefix: str, layout: str, found: str) -> Detection:
    names = sorted(tensors)
    evidence = [found]
    details: dict[str, Any] = {"layout": layout}
    architecture: str | None = None
    for adm in (f"{prefix}label_emb.0.0.weight", "add_embedding.linear_1.weight"):
        if adm in tensors:
            width = _shape(tensors[adm])[-1]
            architecture = ADM_WIDTH_ARCH.get(width, "sdxl")
            evidence.append(f"SDXL's size/crop vector input ({adm}, width {width})")
    cross = next((n for n in names if n.startswith(prefix) and n.endswith("attn2.to_k.weight")), None)
    if cross is not None:
        width = _shape(tensors[cross])[-1]
        known = CROSS_ATTENTION_BASE.get(width)
        if known is None:
            evidence.append(f"cross-attention width {width} matches no known text encoder")
        elif architecture is not None and family(architecture) != known:
            evidence.append(f"warning: cross-attention width {width} is {known}'s, not {family(architecture)}'s")
        else:
            evidence.append(f"cross-attention width {width} ({known})")
            architecture = architecture or known
    else:
        evidence.append("no cross-attention layers to tell the family from")
    if any(n.startswith(("task_embedding", "control_add_embedding", "controlnet_mode_embedder")) for n in names):
        details["union"] = True
        evidence.append("control-type embedding: a union (multi-condition) ControlNet")
    if "difference" in tensors:
        details["difference"] = True
        evidence.append("'difference' marker: its weights are added to the base model's at load time")
    hint = f"{prefix}input_hint_block.0.weight"
    if hint in tensors:
        details["hint_channels"] = _shape(tensors[hint])[1]
    return Detection("controlnet", architecture=architecture, base_model=family(architecture), variant="controlnet",
                     evidence=evidence, details=details)


def _transformer_controlnet(tensors: Mapping[str, Any], layout: str, found: str) -> Detection:
    evidence = [found]
    details: dict[str, Any] = {"layout": layout}
    width = next((_shape(tensors[key])[0] for key in ("controlnet_blocks.0.weight", "controlnet_blocks.0.linear.weight",
                                                       "controlnet_x_embedder.weight") if key in tensors), None)
    architecture = TRANSFORMER_WIDTH_ARCHITECTURE.get(width) if width is not None else None
    if architecture is None:
        evidence.append(f"transformer width {width} matches no known family")
    else:
        evidence.append(f"transformer width {width} ({family(architecture)})")
    if "controlnet_mode_embedder.weight" in tensors:
        details["union"] = True
        evidence.append("controlnet_mode_embedder: a union (multi-condition) ControlNet")
    if blocks := count_indices(tensors, r"controlnet_blocks\.(\d+)\."):
        details["blocks"] = blocks
    return Detection("controlnet", architecture=architecture, base_model=family(architecture), variant="controlnet",
                     evidence=evidence, details=details)


def _control_lora(tensors: Mapping[str, Any]) -> Detection:
    evidence = ["lora_controlnet marker with up/down factors (Stability control-LoRA)"]
    architecture: str | None = None
    if "label_emb.0.0.weight" in tensors:
        width = _shape(tensors["label_emb.0.0.weight"])[-1]
        architecture = ADM_WIDTH_ARCH.get(width, "sdxl")
        evidence.append(f"SDXL's size/crop vector input (label_emb, width {width})")
    cross = next((n for n in sorted(tensors) if _ATTN2_K.search(n)), None)
    if cross is not None:
        width = _shape(tensors[cross])[-1]
        known = CROSS_ATTENTION_BASE.get(width)
        if known is not None and (architecture is None or family(architecture) == known):
            evidence.append(f"cross-attention width {width} ({known})")
            architecture = architecture or known
    ranks = {_shape(tensors[n])[0] for n in tensors if n.endswith(".down") and len(_shape(tensors[n])) >= 2}
    details: dict[str, Any] = {"layout": "control-lora"}
    if len(ranks) == 1:
        details["rank"] = ranks.pop()
    return Detection("controlnet", architecture=architecture, base_model=family(architecture), variant="control-lora",
                     evidence=evidence, details=details)


def _t2i_adapter(tensors: Mapping[str, Any]) -> Detection | None:
    names = set(tensors)
    for prefix in ("adapter.", ""):
        diffusers = f"{prefix}body.0.resnets.0.block1.weight" in names
        full = f"{prefix}conv_in.weight" in names and (diffusers or f"{prefix}body.0.block1.weight" in names)
        light = f"{prefix}body.0.in_conv.weight" in names and (
            diffusers or f"{prefix}body.0.body.0.block1.weight" in names)
        if not (full or light):
            continue
        layout = "diffusers" if diffusers else "original"
        first = f"{prefix}conv_in.weight" if full else f"{prefix}body.0.in_conv.weight"
        channels = _shape(tensors[first])[1]
        kind = "light " if light and not full else ""
        evidence = [f"{first} and adapter body blocks ({kind}T2I-Adapter, {layout} layout)"]
        base, why = T2I_HINT_CHANNELS.get(channels, (None, None))
        evidence.append(f"hint input of {channels} channels: {why} ({base})" if base
                        else f"hint input of {channels} channels matches no known adapter")
        return Detection("controlnet", architecture=base, base_model=base, variant="t2i-adapter", evidence=evidence,
                         details={"layout": layout, "hint_channels": channels, "light": bool(light and not full)})
    return None
