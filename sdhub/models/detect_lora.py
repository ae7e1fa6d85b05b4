"""LoRA and LyCORIS files: their flavour (file layout or LyCORIS algorithm) and the base model they
were trained on, with the evidence.

Every layout names a patched module and stores factors for it. The factors multiply out to the
module's weight, so its input width is known whatever the algorithm (a LoKr's Kronecker factors,
a LoHa's Hadamard pairs, a full diff) and the width of a well-known module tells the family: the
UNet's cross-attention keys take in the text embedding (768 SD1, 1024 SD2, 2048 SDXL), the MM-DiT
transformers' attention takes their hidden width (3072 Flux, 1536/2432 SD3), and each text encoder
has its own (768 CLIP-L, 1024 OpenCLIP-H, 1280 CLIP-G, 4096 T5-XXL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdhub.models.detection import (CROSS_ATTENTION_BASE, FLUX_BLOCKS, FLUX_WIDTH, KOHYA_BASE_VERSIONS, MODELSPEC_BASES,
                                    TRANSFORMER_WIDTH_ARCHITECTURE, Detection, family, shape_of as _shape)

#: LoRA flavours (the LyCORIS algorithm, or the layout of a plain LoRA) and what each is.
LORA_FLAVOUR_DESCRIPTIONS: dict[str, str] = {
    "kohya": "kohya sd-scripts LoRA (lora_down/lora_up/alpha)",
    "locon": "LyCORIS LoCon (LoRA factors on convolutions too)",
    "loha": "LyCORIS LoHa (hada_w1_a/hada_w1_b/hada_w2_a/hada_w2_b)",
    "lokr": "LyCORIS LoKr (Kronecker factors lokr_w1/lokr_w2)",
    "dora": "DoRA (LoRA factors with a weight-decomposition magnitude)",
    "ia3": "LyCORIS (IA)^3 (a scaling vector per module)",
    "glora": "LyCORIS GLoRA (a1/a2/b1/b2)",
    "full": "LyCORIS full fine-tune difference (diff/diff_b)",
    "peft": "diffusers/PEFT LoRA (lora_A/lora_B)",
    "diffusers": "older diffusers LoRA (lora.down/lora.up)",
    "diffusers-attn-proc": "diffusers attention-processor LoRA (processor.to_q_lora.down/up)",
    "lora-diffusion": "cloneofsimo lora_diffusion LoRA (up/down pairs by position)",
    "xlabs": "XLabs Flux LoRA (processor.qkv_lora/proj_lora)",
}

# (regex on the part after the module name, role). The module name is what comes before.
_ROLE = re.compile(
    r"^(?P<module>.+?)\.(?P<role>"
    r"lora_down\.weight|lora_up\.weight|lora_mid\.weight|lora_A\.weight|lora_B\.weight"
    r"|lora\.down\.weight|lora\.up\.weight|lora_linear_layer\.down\.weight|lora_linear_layer\.up\.weight"
    r"|hada_w1_a|hada_w1_b|hada_w2_a|hada_w2_b|hada_t1|hada_t2"
    r"|lokr_w1|lokr_w1_a|lokr_w1_b|lokr_w2|lokr_w2_a|lokr_w2_b|lokr_t2"
    r"|a1\.weight|a2\.weight|b1\.weight|b2\.weight|bm\.weight"
    r"|diff|diff_b|on_input|dora_scale|lora_magnitude_vector(?:\.weight)?|alpha|weight)$")
#: Modules whose own names end in ``_lora``: diffusers attention processors and XLabs processors.
_PROCESSOR_FACTOR = re.compile(r"^(?P<module>.+\.processor\.\w+_lora\d?)\.(?P<role>down|up)\.weight$")
_LORA_DIFFUSION_SAFETENSORS = re.compile(r"^(?P<model>[A-Za-z_][\w]*):(?P<index>\d+):(?P<role>up|down)$")

_DOWN_ROLES = {"lora_down.weight": "down", "lora_A.weight": "down", "lora.down.weight": "down",
               "lora_linear_layer.down.weight": "down", "down": "down"}
_UP_ROLES = {"lora_up.weight": "up", "lora_B.weight": "up", "lora.up.weight": "up",
             "lora_linear_layer.up.weight": "up", "up": "up"}

#: UNet block names (diffusers and LDM/SGM), whose attentions also sit in "transformer_blocks".
_UNET_BLOCKS = re.compile(r"(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)")
#: Attention projections of the MM-DiT transformers (BFL, SAI, diffusers, kohya and XLabs names).
_FLUX_ATTENTION = re.compile(r"(double_blocks_\d+_(img|txt)_attn_qkv|single_blocks_\d+_linear1"
                             r"|(double|single)_blocks_\d+_processor_qkv)")
_SD3_ATTENTION = re.compile(r"joint_blocks_\d+_(x|context)_block_attn2?_qkv")
_DIFFUSERS_TRANSFORMER_ATTENTION = re.compile(
    r"(single_transformer_blocks|transformer_blocks)_\d+_attn2?_(to_[qkv]|add_[qkv]_proj)$")
_CROSS_ATTENTION_KV = re.compile(r"attn2_to_[kv]$")
_TEXT_ATTENTION = re.compile(r"((q|k|v)_proj|selfattention_[qkv])$")
_TEXT_MODULE = re.compile(r"(^|_)(lora_te\d?|text_encoder(_\d)?|te\d?)_|text_model|encoder_layers_\d|encoder_block_\d")

#: Text encoders by the width of their attention: the families each belongs to.
TEXT_ENCODER_WIDTHS = {768: "CLIP-L", 1024: "OpenCLIP-H", 1280: "CLIP-G", 4096: "T5-XXL"}


@dataclass
class _Module:
    """One patched module: its name (lowercase, separators as ``_``) and the shapes of its factors."""

    name: str
    factors: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def weight_shape(self) -> tuple[int, int] | None:
        """(out, in) of the weight the factors multiply out to (a convolution's in counts its channels)."""
        f = self.factors
        if "down" in f and "up" in f and len(f["down"]) >= 2:
            return f["up"][0], f["down"][1]
        if "hada_w1_a" in f and "hada_w1_b" in f:
            return f["hada_w1_a"][0], f["hada_w1_b"][1]
        w1 = f.get("lokr_w1") or _product(f.get("lokr_w1_a"), f.get("lokr_w1_b"))
        w2 = f.get("lokr_w2")
        if w2 is None and "lokr_w2_a" in f and "lokr_w2_b" in f:
            # With a Tucker core (lokr_t2) w2_a is stored transposed: (rank, out).
            a = f["lokr_w2_a"][::-1] if "lokr_t2" in f else f["lokr_w2_a"]
            w2 = (a[0], f["lokr_w2_b"][1])
        if w1 is not None and w2 is not None and len(w1) >= 2 and len(w2) >= 2:
            return w1[0] * w2[0], w1[1] * w2[1]
        if "diff" in f and len(f["diff"]) >= 2:
            return f["diff"][0], f["diff"][1]
        if "a2.weight" in f and "b1.weight" in f:
            return f["b1.weight"][0], f["a2.weight"][1]
        if "on_input" in f and len(f.get("weight", ())) == 1 and _TEXT_ATTENTION.search(self.name):
            # (IA)^3 keeps one vector, of the input or the output width: the same for square projections.
            return f["weight"][0], f["weight"][0]
        return None

    @property
    def input_width(self) -> int | None:
        shape = self.weight_shape()
        return shape[1] if shape else None


def _product(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> tuple[int, int] | None:
    return (a[0], b[1]) if a is not None and b is not None and len(a) == 2 and len(b) >= 2 else None


def _normalise(module: str) -> str:
    name = module.lower().replace(".", "_").replace(":", "_")
    name = re.sub(r"_processor_(to_[qkv]|to_out)_lora$", r"_\1", name)
    return re.sub(r"_lora_linear_layer$|_lora$", "", name)


def detect_lora(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> Detection | None:
    """The verdict on a LoRA-family file, or None when its tensors are not one."""
    found = _read_layout(tensors, metadata)
    if found is None:
        return None
    flavour, modules, evidence = found
    base, architecture, candidates = _base_model(modules, metadata, evidence)
    details: dict[str, Any] = {"families": sorted(candidates)} if base is None and candidates else {}
    # Trainers (OneTrainer, kohya) can bundle the embeddings trained with the LoRA: bundle_emb.<name>.<encoder>.
    if bundled := sorted({name.split(".")[1] for name in tensors if name.startswith("bundle_emb.") and
                          name.count(".") >= 2}):
        details["bundled_embeddings"] = bundled
        evidence.append(f"with {len(bundled)} bundled embedding(s): {', '.join(bundled)}")
    return Detection("lora", base_model=family(base), architecture=architecture, lora_flavour=flavour,
                     evidence=evidence, details=details)


def _read_layout(tensors: Mapping[str, Any], metadata: Mapping[str, str]
                 ) -> tuple[str, list[_Module], list[str]] | None:
    """The flavour, the patched modules and the evidence for them; None for a file that is no LoRA."""
    names = list(tensors)
    if names and all(name.isdigit() for name in names):
        return _lora_diffusion_list(tensors)
    modules: dict[str, _Module] = {}
    processors: set[str] = set()
    lora_diffusion: set[str] = set()
    for name in names:
        if match := _LORA_DIFFUSION_SAFETENSORS.match(name):
            model, index, role = match.group("model", "index", "role")
            lora_diffusion.add(model)
            modules.setdefault(f"{model}:{index}", _Module(f"{model}_{index}")).factors[role] = _shape(tensors[name])
            continue
        match = _PROCESSOR_FACTOR.match(name) or _ROLE.match(name)
        if match is None:
            continue
        module, role = match.group("module", "role")
        if match.re is _PROCESSOR_FACTOR:
            processors.add(module)
        role = _DOWN_ROLES.get(role) or _UP_ROLES.get(role) or role
        modules.setdefault(module, _Module(_normalise(module))).factors[role] = _shape(tensors[name])
    # ``alpha``, ``weight`` and ``dora_scale`` say nothing alone: a module needs factors of its own.
    lora_modules = [m for m in modules.values() if _has_factors(m.factors)]
    if not lora_modules:
        return None
    roles = {role for m in lora_modules for role in m.factors}
    evidence: list[str] = []
    if lora_diffusion:
        flavour = "lora-diffusion"
        targets = {model: metadata.get(model) for model in sorted(lora_diffusion)}
        evidence.append("cloneofsimo lora_diffusion tensors (" + ", ".join(
            f"{model}:N:up/down" + (f" for {target}" if target else "") for model, target in targets.items()) + ")")
    elif any(r.startswith("hada_") for r in roles):
        flavour = "loha"
        evidence.append("LyCORIS LoHa tensors (hada_w1_a/hada_w1_b/hada_w2_a/hada_w2_b)")
    elif any(r.startswith("lokr_") for r in roles):
        flavour = "lokr"
        evidence.append("LyCORIS LoKr tensors (" + "/".join(sorted(r for r in roles if r.startswith("lokr_"))) + ")")
    elif "a1.weight" in roles and "b1.weight" in roles:
        flavour = "glora"
        evidence.append("LyCORIS GLoRA tensors (a1/a2/b1/b2)")
    elif "on_input" in roles:
        flavour = "ia3"
        evidence.append("LyCORIS (IA)^3 tensors (weight + on_input per module)")
    elif "diff" in roles:
        flavour = "full"
        evidence.append("LyCORIS full-weight differences (diff" + ("/diff_b" if "diff_b" in roles else "") + ")")
    elif processors:
        xlabs = any(re.search(r"\.processor\.(qkv|proj)_lora\d?$", p) for p in processors)
        flavour = "xlabs" if xlabs else "diffusers-attn-proc"
        evidence.append("XLabs processor LoRA (processor.qkv_lora/proj_lora down/up)" if xlabs else
                        "diffusers attention-processor LoRA (processor.to_q_lora.down/up, as "
                        "train_text_to_image_lora.py wrote it)")
    else:
        flavour, line = _plain_flavour(names, tensors, metadata, roles)
        evidence.append(line)
    if flavour in ("loha", "lokr", "locon") and ("dora_scale" in roles):
        evidence.append("with DoRA weight decomposition (dora_scale)")
    return flavour, lora_modules, evidence


#: Sets of roles that make a module a network's: each algorithm's factors (a lone ``weight`` or ``alpha`` does not).
_FACTOR_SETS = ({"down", "up"}, {"hada_w1_a", "hada_w1_b"}, {"lokr_w1"}, {"lokr_w1_a", "lokr_w1_b"}, {"diff"},
                {"a1.weight", "b1.weight"}, {"weight", "on_input"})


def _has_factors(factors: dict[str, tuple[int, ...]]) -> bool:
    return any(needed <= factors.keys() for needed in _FACTOR_SETS)


def _plain_flavour(names: list[str], tensors: Mapping[str, Any], metadata: Mapping[str, str], roles: set[str]
                   ) -> tuple[str, str]:
    """kohya, LoCon, DoRA, PEFT or older diffusers: all store a down and an up factor per module."""
    if "dora_scale" in roles or any(r.startswith("lora_magnitude_vector") for r in roles):
        return "dora", "DoRA: LoRA factors with a magnitude vector (dora_scale / lora_magnitude_vector)"
    if any(n.endswith((".lora_A.weight", ".lora_B.weight")) for n in names):
        layout = ("ComfyUI/BFL names (diffusion_model.*)" if any(n.startswith("diffusion_model.") for n in names)
                  else "diffusers/PEFT names")
        return "peft", f"lora_A/lora_B tensors, {layout}"
    if any(".lora.down." in n or ".lora_linear_layer." in n for n in names):
        return "diffusers", "diffusers LoRA layers (lora.down/lora.up: LoRACompatibleLinear)"
    module = metadata.get("ss_network_module", "")
    algo = _network_args(metadata).get("algo", "")
    convs = [n for n in names if n.endswith("lora_down.weight") and len(_shape(tensors[n])) == 4
             and _shape(tensors[n])[2:] != (1, 1)]
    if convs:
        return "locon", "LoRA factors on 3x3 convolutions (LoCon)"
    if "lycoris" in module and algo in ("locon", "lora"):
        return "locon", f"network module {module} with algo {algo}"
    return "kohya", "kohya lora_down/lora_up/alpha tensors"


def _lora_diffusion_list(tensors: Mapping[str, Any]) -> tuple[str, list[_Module], list[str]] | None:
    """A torch.save'd list of tensors: cloneofsimo's .pt holds (up, down) pairs of each patched Linear."""
    shapes = [_shape(tensors[str(index)]) for index in range(len(tensors))] if all(
        str(index) in tensors for index in range(len(tensors))) else []
    if not shapes or len(shapes) % 2 or any(len(s) != 2 for s in shapes):
        return None
    modules = []
    for index in range(0, len(shapes), 2):
        up, down = shapes[index], shapes[index + 1]
        if up[1] != down[0] or down[0] > min(up[0], down[1]):
            return None  # not an (up, down) pair sharing a small rank
        modules.append(_Module(f"position_{index // 2}", {"up": up, "down": down}))
    ranks = sorted({m.factors["down"][0] for m in modules})
    evidence = [f"a list of {len(modules)} (up, down) tensor pairs of rank {'/'.join(map(str, ranks))}: "
                "cloneofsimo lora_diffusion .pt"]
    return "lora-diffusion", modules, evidence


def _network_args(metadata: Mapping[str, str]) -> dict[str, str]:
    try:
        args = json.loads(metadata.get("ss_network_args", "{}"))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in args.items()} if isinstance(args, dict) else {}


# ---- base model --------------------------------------------------------------------------------


@dataclass
class _TextVerdict:
    """What a LoRA's text-encoder part says: the families its encoders fit, and a guess among them."""

    candidates: set[str]
    guess: str | None


def _base_model(modules: list[_Module], metadata: Mapping[str, str], evidence: list[str]
                ) -> tuple[str | None, str | None, set[str]]:
    """(family, exact architecture when the shapes prove it, the families a text-encoder part fits).

    The diffusion model's part is the strongest evidence; a text-encoder part that only one family
    has (CLIP-L with T5: Flux) comes next; then a metadata claim; a lone CLIP text part last.
    """
    diffusion, architecture = _from_diffusion_part(modules, evidence)
    text = _from_text_part(modules, evidence)
    claimed = _base_from_metadata(metadata, evidence)
    claimed_family = family(claimed)
    if diffusion is not None:
        if claimed_family and claimed_family != diffusion:
            evidence.append(f"warning: the metadata says {claimed_family}, the tensors say {diffusion}; "
                            "the tensors win")
        if text is not None and text.candidates and diffusion not in text.candidates:
            evidence.append(f"warning: the text-encoder part fits {', '.join(sorted(text.candidates))}, "
                            f"not {diffusion}")
        return diffusion, architecture, set()
    if text is not None and len(text.candidates) == 1:
        (only,) = text.candidates
        if claimed_family and claimed_family != only:
            evidence.append(f"warning: the metadata says {claimed_family}, the text encoders say {only}; "
                            "the tensors win")
        return only, None, set()
    if claimed is not None:
        if text is not None and claimed_family not in text.candidates:
            evidence.append(f"warning: the metadata says {claimed_family}, but the text encoders fit "
                            f"{', '.join(sorted(text.candidates))}")
            return text.guess, None, set()
        return claimed_family, None, set()
    if text is not None and text.guess is not None:
        return text.guess, None, set()
    if guess := _unet_projection_guess(modules, evidence):
        return guess, None, set()
    evidence.append("base model not recognised from metadata or shapes")
    return None, None, text.candidates if text is not None else set()


def _from_diffusion_part(modules: list[_Module], evidence: list[str]) -> tuple[str | None, str | None]:
    """The family of the UNet or transformer the LoRA patches, from its names and input widths."""
    if reason := _other_transformer(modules):
        evidence.append(reason)
        return None, None
    for module in modules:
        name = module.name
        if _FLUX_ATTENTION.search(name):
            structure: str | None = "flux1"
        elif _SD3_ATTENTION.search(name):
            structure = "sd3"
        elif (_DIFFUSERS_TRANSFORMER_ATTENTION.search(name) and not _UNET_BLOCKS.search(name)
              and not _TEXT_MODULE.search(name)):
            structure = "flux1" if "single_transformer_blocks" in name else None
        else:
            continue
        width = module.input_width
        by_width = TRANSFORMER_WIDTH_ARCHITECTURE.get(width or 0)
        if structure and by_width and family(by_width) != structure:
            evidence.append(f"warning: {structure} block names, but attention width {width} is {by_width}'s")
            by_width = None
        base = structure or family(by_width)
        if base is None:
            continue
        blocks = {"flux1": "Flux double/single blocks", "sd3": "SD3 joint blocks"}.get(structure or "")
        width_words = (f"attention input width {width}" + (f" ({by_width})" if by_width else "")
                       if width else "attention widths not stored")
        evidence.append(f"{blocks}, {width_words}" if blocks else f"MM-DiT transformer blocks, {width_words}")
        architecture = by_width if by_width and by_width != base else None
        if base == "sd3" and width == 1536 and any(_is_dual_attention(m.name) for m in modules):
            architecture = "sd3.5-medium"
            evidence.append("a second attention (attn2) in the joint blocks: SD3.5 medium (MMDiT-X)")
        return base, architecture
    for module in modules:  # a network of other layers still shows its blocks
        structure = ("flux1" if re.search(r"(^|_)(double|single)_blocks_\d", module.name)
                     else "sd3" if re.search(r"(^|_)joint_blocks_\d", module.name) else None)
        if structure:
            evidence.append("Flux double/single blocks" if structure == "flux1" else "SD3 joint blocks")
            return structure, None
    for module in modules:
        if _CROSS_ATTENTION_KV.search(module.name) and _UNET_BLOCKS.search(module.name):
            width = module.input_width
            if base := CROSS_ATTENTION_BASE.get(width or 0):
                evidence.append(f"cross-attention input width {width} ({base})")
                return base, None
    # lora_diffusion names its modules by position only: a UNet's widths start at 320, and the text
    # embedding its cross-attention takes in is the one other width among the down factors.
    widths = {m.input_width for m in modules if _POSITIONAL.match(m.name) and not m.name.startswith("text_")}
    if 320 in widths:
        for width in (2048, 1024, 768):
            if width in widths:
                base = CROSS_ATTENTION_BASE[width]
                evidence.append(f"UNet input widths from 320 up, with the text embedding's {width} ({base})")
                return base, None
    return None, None


_POSITIONAL = re.compile(r"^(position|unet|text_encoder)_\d+$")
#: FLUX.1's block counts under each of its names.
_FLUX_BLOCK_COUNTS = {"transformer_blocks": FLUX_BLOCKS[0], "single_transformer_blocks": FLUX_BLOCKS[1],
                      "double_blocks": FLUX_BLOCKS[0], "single_blocks": FLUX_BLOCKS[1]}
_BLOCK_INDEX = re.compile(r"(?:^|_)(single_transformer_blocks|transformer_blocks|double_blocks|single_blocks)_(\d+)_")
#: Projections whose input is the transformer's hidden state (so their input width is its width).
_TAKES_HIDDEN_STATE = re.compile(r"(to_[qkv]|attn_qkv|add_[qkv]_proj|linear1)$")
#: Module names of other diffusion transformers that share FLUX.1's width and diffusers' block names
#: (Qwen-Image's img_mlp/txt_mlp, HunyuanVideo's token_refiner, AuraFlow's register tokens...).
_OTHER_TRANSFORMER_MODULES = re.compile(r"transformer_blocks_\d+_(img|txt)_(mlp|mod)|token_refiner|"
                                        r"joint_transformer_blocks|register_tokens")


def _other_transformer(modules: list[_Module]) -> str | None:
    """Why the transformer a LoRA patches is neither FLUX.1 nor SD3 although it has their block names:
    modules they lack, FLUX.1's width with more blocks than FLUX.1 has, or a width beyond FLUX.1's."""
    for module in modules:
        if _UNET_BLOCKS.search(module.name) or _TEXT_MODULE.search(module.name):
            continue
        if found := _OTHER_TRANSFORMER_MODULES.search(module.name):
            return f"module {found.group(0)}: a transformer of a model family sdhub does not know"
        block = _BLOCK_INDEX.search(module.name)
        if block is None:
            continue
        kind, index = block.group(1), int(block.group(2))
        width = module.input_width if _TAKES_HIDDEN_STATE.search(module.name) else None
        if width is not None and width > FLUX_WIDTH:
            return f"{kind} {width} wide, wider than FLUX.1's {FLUX_WIDTH}: a model family sdhub does not know"
        # SD3's diffusers names share "transformer_blocks" and go deeper (24, 38) at its own widths.
        if index >= _FLUX_BLOCK_COUNTS[kind] and (kind != "transformer_blocks" or width == FLUX_WIDTH):
            return (f"{kind} {index}: more than FLUX.1's {_FLUX_BLOCK_COUNTS[kind]}, a transformer of a model "
                    "family sdhub does not know")
    return None


def _is_dual_attention(name: str) -> bool:
    return bool(re.search(r"(joint_blocks_\d+_x_block_attn2_|transformer_blocks_\d+_attn2_)", name))


def _from_text_part(modules: list[_Module], evidence: list[str]) -> _TextVerdict | None:
    """Which text encoders the LoRA patches (by attention width) and the families that have them."""
    widths: dict[str, int] = {}
    plain_name = False
    positional = [m for m in modules if _POSITIONAL.match(m.name)]
    unet_positions = any(m.input_width == 320 for m in positional if not m.name.startswith("text_"))
    for module in modules:
        if _POSITIONAL.match(module.name):
            if unet_positions and not module.name.startswith("text_"):
                continue
            plain_name = True  # lora_diffusion trains the one CLIP of SD1/SD2
        elif not _TEXT_MODULE.search(module.name) or not _TEXT_ATTENTION.search(module.name):
            continue
        width = module.input_width
        encoder = TEXT_ENCODER_WIDTHS.get(width or 0) or _encoder_by_name(module.name)
        if encoder is not None:
            widths.setdefault(encoder, width or 0)
            plain_name = plain_name or module.name.startswith(("lora_te_", "text_encoder_text_model"))
    if not widths:
        return None
    encoders = set(widths)
    described = " + ".join(f"{e} ({widths[e] or 'by name'})" for e in sorted(encoders, key=_ENCODER_ORDER.index))
    if encoders == {"OpenCLIP-H"}:
        verdict = _TextVerdict({"sd2"}, "sd2")
    elif encoders == {"CLIP-L"}:
        # Every family but SD2 has a CLIP-L; one encoder named plainly (lora_te_, text_encoder.) is SD1's,
        # where SDXL, SD3 and Flux number theirs (lora_te1_).
        verdict = _TextVerdict({"sd1", "sdxl", "sd3", "flux1"}, "sd1" if plain_name else None)
    elif "T5-XXL" in encoders:
        if "CLIP-G" in encoders:
            verdict = _TextVerdict({"sd3"}, "sd3")
        elif "CLIP-L" in encoders:
            verdict = _TextVerdict({"flux1"}, "flux1")
        else:
            verdict = _TextVerdict({"flux1", "sd3"}, None)
    else:
        # CLIP-G: SDXL's second encoder; SD3 has it too (an SD3 LoRA that left T5 alone looks the same).
        verdict = _TextVerdict({"sdxl", "sd3"}, "sdxl")
    fits = " or ".join(sorted(verdict.candidates))
    guess = f"; taken as {verdict.guess}" if verdict.guess and len(verdict.candidates) > 1 else ""
    evidence.append(f"text encoder{'s' if len(encoders) > 1 else ''} {described}: fits {fits}{guess}")
    return verdict


_ENCODER_ORDER = ("CLIP-L", "OpenCLIP-H", "CLIP-G", "T5-XXL")


def _encoder_by_name(name: str) -> str | None:
    """The text encoder a module's name says it is in, for widths no real encoder has (tiny test models)."""
    if "selfattention" in name or name.startswith(("lora_te3_", "text_encoder_3_")):
        return "T5-XXL"
    if name.startswith(("lora_te2_", "text_encoder_2_")):
        return "CLIP-G"
    if name.startswith("lora_te1_"):
        return "CLIP-L"
    return None


def _unet_projection_guess(modules: list[_Module], evidence: list[str]) -> str | None:
    """Weaker guesses, for a UNet LoRA whose shapes and metadata say nothing clearer."""
    for module in modules:
        if re.search(r"(input_blocks|output_blocks|middle_block)_\d", module.name) and module.name.startswith(
                "lora_unet_"):
            evidence.append("kohya names the UNet modules by their SGM paths (input_blocks...), as only for SDXL")
            return "sdxl"
    # SD1's UNet projects in and out of attention with 1x1 convolutions, SD2's with linear layers.
    for module in modules:
        if module.name.endswith("proj_in") and "down" in module.factors:
            linear = len(module.factors["down"]) == 2
            evidence.append("UNet attention projections are " + ("linear (SD2)" if linear else "1x1 convolutions (SD1)"))
            return "sd2" if linear else "sd1"
    return None


def _base_from_metadata(metadata: Mapping[str, str], evidence: list[str]) -> str | None:
    """The base model the file's metadata claims (modelspec, then kohya's ss_* entries)."""
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
    v2 = metadata.get("ss_v2", "").lower()
    if v2 == "true":
        evidence.append("metadata ss_v2 = True")
        return "sd2"
    if v2 == "false" and not version:
        # kohya wrote ss_v2 before ss_base_model_version existed (SDXL and later always write both).
        evidence.append("metadata ss_v2 = False without ss_base_model_version (kohya's SD1 metadata)")
        return "sd1"
    return None
