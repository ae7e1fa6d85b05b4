"""What a model file is, from tensor names, shapes and metadata alone (no weights are read).

``detect`` answers kind (checkpoint, lora, embedding, vae, unknown), architecture (sd1, sd2,
sd2-v, sdxl, sdxl-refiner), the inpainting / instruct-pix2pix variants, the LoRA flavour and the
base model a LoRA or embedding fits, each with the evidence used. Structure (which containers and
layers exist) decides first; widths and metadata confirm or fill in what structure cannot tell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any

from sdhub.models.components import TEXT_ENCODER, TEXT_ENCODER_2, UNET, component_of

KINDS = ("checkpoint", "lora", "embedding", "vae", "unknown")
ARCHITECTURES = ("sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner")
LORA_FLAVOURS = ("kohya", "locon", "loha", "lokr", "peft")

#: Where sdhub records, in files it writes, that a model predicts v (SD2 768-v has no flag of its own).
PREDICTION_METADATA_KEY = "sdhub.prediction"
UNET_PREFIX = "model.diffusion_model."
_INPUT_CONV = UNET_PREFIX + "input_blocks.0.0.weight"
_ADM_INPUT = UNET_PREFIX + "label_emb.0.0.weight"

# Real text-encoder widths: CLIP ViT-L (SD1, SDXL's first), OpenCLIP ViT-H (SD2), ViT-bigG (SDXL's second).
_TEXT_WIDTH_BASE = {768: "sd1", 1024: "sd2"}
_SDXL_WIDTHS = (768, 1280)
#: The base model a UNet's cross-attention width belongs to (the text embedding it attends to).
CROSS_ATTENTION_BASE = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
#: UNet input channels beyond a plain model's 4 latent ones: the variant they make and what they hold.
INPUT_CHANNEL_VARIANTS = {9: ("inpainting", "latent + mask + masked image"),
                          8: ("instruct-pix2pix", "latent + image latent")}
# SDXL's ADM input: pooled bigG (1280) + 6 (base) or 5 (refiner) Fourier features of 256.
_ADM_WIDTH_ARCH = {2816: "sdxl", 2560: "sdxl-refiner"}

_KOHYA_BASE_VERSIONS = (
    ("sdxl", "sdxl"), ("sd_v2", "sd2"), ("sd_v1", "sd1"), ("v2", "sd2"), ("v1", "sd1"), ("flux", "flux1"),
    ("sd3", "sd3"),
)
_MODELSPEC_BASES = (
    ("stable-diffusion-xl-v1-refiner", "sdxl-refiner"), ("stable-diffusion-xl", "sdxl"),
    ("stable-diffusion-v2", "sd2"), ("stable-diffusion-v1", "sd1"), ("flux-1", "flux1"),
    ("stable-diffusion-v3", "sd3"),
)
#: Hidden widths of the MM-DiT transformers' attention (what a LoRA's down factor takes in).
_TRANSFORMER_WIDTH_BASE = {3072: "flux1", 1536: "sd3", 2432: "sd3"}


@dataclass
class Detection:
    """The verdict on one file; ``evidence`` says, in words, what it rests on."""

    kind: str
    architecture: str | None = None
    variant: str | None = None  # "inpainting" | "instruct-pix2pix"
    base_model: str | None = None  # the family a checkpoint, LoRA or embedding belongs to: sd1 | sd2 | sdxl
    lora_flavour: str | None = None
    embedding_vectors: int | None = None
    evidence: list[str] = field(default_factory=list)

    @property
    def inpainting(self) -> bool:
        return self.variant == "inpainting"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "inpainting": self.inpainting}


def family(architecture: str | None) -> str | None:
    """'sd1', 'sd2' or 'sdxl' for an architecture name."""
    if architecture is None:
        return None
    return architecture.split("-")[0]


def _shape(info: Any) -> tuple[int, ...]:
    shape = info[1] if isinstance(info, tuple) else info.shape
    return tuple(int(size) for size in shape)


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
    if flavour := _lora_flavour(names):
        return _detect_lora(tensors, metadata, flavour)
    if embedding := _detect_embedding(tensors):
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

    if _ADM_INPUT in tensors:
        adm_width = _shape(tensors[_ADM_INPUT])[-1]
        from_adm = _ADM_WIDTH_ARCH.get(adm_width)
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
    if _INPUT_CONV in tensors:
        channels = _shape(tensors[_INPUT_CONV])[1]
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


# ---- LoRA -----------------------------------------------------------------------------------


def _lora_flavour(names: list[str]) -> str | None:
    if any(".hada_w" in n for n in names):
        return "loha"
    if any(".lokr_w" in n for n in names):
        return "lokr"
    if any(n.endswith((".lora_A.weight", ".lora_B.weight")) or ".lora.down." in n for n in names):
        return "peft"
    if any(n.endswith(".lora_down.weight") for n in names):
        return "kohya"
    return None


def _detect_lora(tensors: Mapping[str, Any], metadata: Mapping[str, str], flavour: str) -> Detection:
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
    for prefix, base in _MODELSPEC_BASES:
        if spec.startswith(prefix):
            evidence.append(f"metadata modelspec.architecture = {spec!r}")
            return base
    version = metadata.get("ss_base_model_version", "").lower()
    for prefix, base in _KOHYA_BASE_VERSIONS:
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
            if base := _TRANSFORMER_WIDTH_BASE.get(width):
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
            if base := _TEXT_WIDTH_BASE.get(width):
                evidence.append(f"text encoder width {width} ({base}; a text encoder alone is weak evidence)")
                return base
    evidence.append("base model not recognised from metadata or shapes")
    return None


# ---- embeddings ---------------------------------------------------------------------------


def _detect_embedding(tensors: Mapping[str, Any]) -> Detection | None:
    names = set(tensors)
    if {"clip_l", "clip_g"} <= names:
        vectors = _shape(tensors["clip_g"])[0]
        return Detection("embedding", base_model="sdxl", embedding_vectors=vectors,
                         evidence=["clip_l and clip_g vectors (SDXL embedding)"])
    params = [n for n in names if n.startswith("string_to_param.")]
    if len(params) == 1:
        return _embedding_from_vectors(tensors[params[0]], "A1111 string_to_param")
    if names == {"emb_params"}:
        return _embedding_from_vectors(tensors["emb_params"], "emb_params tensor")
    if len(names) == 1:
        (name,) = names
        shape = _shape(tensors[name])
        if 1 <= len(shape) <= 2 and shape[-1] in _TEXT_WIDTH_BASE:
            return _embedding_from_vectors(tensors[name], f"single learned vector {name!r} (diffusers learned_embeds)")
    return None


def _embedding_from_vectors(info: Any, source: str) -> Detection:
    shape = _shape(info)
    width = shape[-1]
    vectors = shape[0] if len(shape) == 2 else 1
    base = _TEXT_WIDTH_BASE.get(width)
    evidence = [f"{source}: {vectors} vector(s) of width {width}"]
    evidence.append(f"width {width} fits {base}" if base else f"width {width} matches no known text encoder")
    return Detection("embedding", base_model=base, embedding_vectors=vectors, evidence=evidence)


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
