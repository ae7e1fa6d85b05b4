"""LoRA and LyCORIS files: their flavour and the base model they were trained on, with the evidence."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sdhub.models.components import TEXT_ENCODER, TEXT_ENCODER_2, UNET, component_of
from sdhub.models.detection import (CROSS_ATTENTION_BASE, Detection, KOHYA_BASE_VERSIONS, MODELSPEC_BASES,
                                    TEXT_WIDTH_BASE, TRANSFORMER_WIDTH_BASE, family, shape_of as _shape)

def lora_flavour(names: list[str]) -> str | None:
    if any(".hada_w" in n for n in names):
        return "loha"
    if any(".lokr_w" in n for n in names):
        return "lokr"
    if any(n.endswith((".lora_A.weight", ".lora_B.weight")) or ".lora.down." in n for n in names):
        return "peft"
    if any(n.endswith(".lora_down.weight") for n in names):
        return "kohya"
    return None


def detect_lora(tensors: Mapping[str, Any], metadata: Mapping[str, str], flavour: str) -> Detection:
    evidence: list[str] = []
    names = list(tensors)
    if flavour == "kohya":
        module = metadata.get("ss_network_module", "")
        algo = _network_args(metadata).get("algo", "")
        convs = [n for n in names if n.endswith("lora_down.weight") and len(_shape(tensors[n])) == 4
                 and _shape(tensors[n])[2:] != (1, 1)]
        if convs or ("lycoris" in module and algo in ("locon", "lora")):
            flavour = "locon"
            evidence.append("LoRA factors on 3x3 convolutions (LoCon)" if convs
                            else f"network module {module} with algo {algo}")
        else:
            evidence.append("kohya lora_down/lora_up/alpha tensors")
    else:
        evidence.append({"loha": "LyCORIS LoHa tensors (hada_w1_a/hada_w1_b/...)",
                         "lokr": "LyCORIS LoKr tensors (lokr_w1/lokr_w2)",
                         "peft": "diffusers/PEFT lora_A/lora_B tensors"}[flavour])
    # The diffusion model's part (and a second text encoder, SDXL's alone) is the strongest evidence; a
    # metadata claim, then a CLIP-L part (shared by SD1, SDXL and Flux), decide only when it says nothing.
    base = _lora_base_from_diffusion_part(tensors, evidence)
    claimed = _base_from_metadata(metadata, evidence)
    if base and claimed and family(claimed) != family(base):
        evidence.append(f"warning: the metadata says {family(claimed)}, the tensors say {base}; the tensors win")
    base = base or claimed or _lora_base_weak_evidence(tensors, evidence)
    return Detection("lora", base_model=family(base), architecture=None, lora_flavour=flavour, evidence=evidence)


def _network_args(metadata: Mapping[str, str]) -> dict[str, str]:
    try:
        args = json.loads(metadata.get("ss_network_args", "{}"))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in args.items()} if isinstance(args, dict) else {}


def _base_from_metadata(metadata: Mapping[str, str], evidence: list[str]) -> str | None:
    spec = metadata.get("modelspec.architecture", "").lower()
    for prefix, base in MODELSPEC_BASES:
        if spec.startswith(prefix):
            evidence.append(f"metadata modelspec.architecture = {spec!r}")
            return base
    version = metadata.get("ss_base_model_version", "").lower()
    for prefix, base in KOHYA_BASE_VERSIONS:
        if version.startswith(prefix):
            evidence.append(f"metadata ss_base_model_version = {version!r}")
            return base
    if metadata.get("ss_v2", "").lower() == "true":
        evidence.append("metadata ss_v2 = True")
        return "sd2"
    return None


_DOWN_FACTOR = re.compile(r"(lora_down|lora_a|lora\.down|hada_w1_a)")
#: Block names of the SD1/SD2/SDXL UNets (diffusers and LDM), whose attentions also sit in "transformer_blocks".
_UNET_BLOCKS = re.compile(r"(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)")


def _lora_base_from_diffusion_part(tensors: Mapping[str, Any], evidence: list[str]) -> str | None:
    """The family of the UNet or transformer a LoRA's diffusion-model part was trained on, from its shapes."""
    names = sorted(tensors)
    for name in names:
        lowered = name.lower()
        if (re.search(r"(double_blocks|single_blocks|single_transformer_blocks|joint_blocks|transformer_blocks)"
                     r".*(attn|qkv|to_q)", lowered) and _DOWN_FACTOR.search(lowered)
                and not _UNET_BLOCKS.search(lowered)):
            width = _shape(tensors[name])[-1]
            if base := TRANSFORMER_WIDTH_BASE.get(width):
                if "double_blocks" in lowered or "single" in lowered:
                    base = "flux1"
                elif "joint_blocks" in lowered:
                    base = "sd3"
                evidence.append(f"transformer attention width {width} ({base})")
                return base
    components = {component_of(name) for name in names}
    for name in names:
        lowered = name.lower()
        if UNET in components and re.search(r"attn2[._]to_[kv]", lowered) and _DOWN_FACTOR.search(lowered):
            width = _shape(tensors[name])[-1]
            if base := CROSS_ATTENTION_BASE.get(width):
                evidence.append(f"cross-attention input width {width} ({base})")
                return base
    if TEXT_ENCODER_2 in components:
        evidence.append("LoRA for two text encoders (te1/te2): SDXL")
        return "sdxl"
    return None


def _lora_base_weak_evidence(tensors: Mapping[str, Any], evidence: list[str]) -> str | None:
    """Weaker guesses, for a LoRA whose shapes and metadata say nothing clearer."""
    # SD1's UNet projects in and out of attention with 1x1 convolutions, SD2's with linear layers.
    for name in sorted(tensors):
        if re.search(r"proj_in[._](lora_down|lora_a|lora\.down)", name.lower()):
            linear = len(_shape(tensors[name])) == 2
            evidence.append("UNet attention projections are " + ("linear (SD2)" if linear else "1x1 convolutions (SD1)"))
            return "sd2" if linear else "sd1"
    for name in sorted(tensors):
        lowered = name.lower()
        if component_of(name) == TEXT_ENCODER and "q_proj" in lowered and _DOWN_FACTOR.search(lowered):
            width = _shape(tensors[name])[-1]
            if base := TEXT_WIDTH_BASE.get(width):
                evidence.append(f"text encoder width {width} ({base}; a text encoder alone is weak evidence)")
                return base
    evidence.append("base model not recognised from metadata or shapes")
    return None
