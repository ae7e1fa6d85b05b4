"""LoRA-family networks and embeddings for every family, in the file layouts real tools write.

The modules a LoRA patches are listed with their real names and weight shapes (SD1/SD2/SDXL UNets,
FLUX.1 and SD3/SD3.5 transformers, CLIP-L, OpenCLIP-H, CLIP-G and T5-XXL text encoders), so that
``lora_shapes`` gives a real-size header (name -> shape, nothing allocated) and ``write_lora`` a small
real file: the first block of each part at its real width, with a small rank.

    from sdhub.testing import lora_layouts
    lora_layouts.write_lora(tmp / "flux-lokr.safetensors", "flux1", "lokr")
    shapes = lora_layouts.lora_shapes("sdxl", "kohya", size="full")   # every real name and shape, no memory
    lora_layouts.write_lora(tmp / "lora.pt", "sd1", "lora-diffusion")  # a torch.save'd list of tensors

Formats (``LORA_FORMATS``): kohya, locon, loha, lokr, dora, ia3, glora, full (LyCORIS, in kohya's
``lora_unet_``/``lora_te*_`` names), peft (diffusers/ai-toolkit ``unet.``/``transformer.`` + lora_A/B),
comfyui (``diffusion_model.`` + BFL/SAI names + lora_A/B), xlabs (Flux), attn-proc (old diffusers
``pytorch_lora_weights.bin``), lora-diffusion (cloneofsimo's ``.pt`` list or ``.safetensors``).
Module names come from the public sources of those tools (diffusers, sd-scripts, LyCORIS, ComfyUI,
x-flux, lora_diffusion); shapes from the models' published configs.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from sdhub.testing import writers

Shapes = dict[str, tuple[int, ...]]
FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux1")
#: The SD3 variants a network can be built for (``family="sd3"`` is SD3 medium).
SD3_VARIANTS = {"sd3": ("sd3-medium", 1536, 24, 0), "sd3-medium": ("sd3-medium", 1536, 24, 0),
                "sd3.5-medium": ("sd3.5-medium", 1536, 24, 13), "sd3.5-large": ("sd3.5-large", 2432, 38, 0)}
LORA_FORMATS = ("kohya", "locon", "loha", "lokr", "dora", "ia3", "glora", "full", "peft", "comfyui", "xlabs",
                "attn-proc", "lora-diffusion")
#: What each format yields as ``Detection.lora_flavour``.
FLAVOUR_OF_FORMAT = {"comfyui": "peft", "attn-proc": "diffusers-attn-proc"}
TEXT_ENCODERS = {"clip-l": (768, 12, 3072), "openclip-h": (1024, 23, 4096), "clip-g": (1280, 32, 5120),
                 "t5xxl": (4096, 24, 10240)}
#: The text encoders of each family, in the order the tools number them.
FAMILY_TEXT_ENCODERS = {"sd1": ("clip-l",), "sd2": ("openclip-h",), "sdxl": ("clip-l", "clip-g"),
                        "sd3": ("clip-l", "clip-g", "t5xxl"), "flux1": ("clip-l", "t5xxl")}


@dataclass(frozen=True)
class Module:
    """One module a network may patch: its part, its name in the model, and its weight's shape."""

    part: str  # "unet" (the diffusion model) or a text encoder: "clip-l", "openclip-h", "clip-g", "t5xxl"
    name: str  # diffusers/transformers name for UNets and text encoders; BFL/SAI name for Flux/SD3
    shape: tuple[int, ...]
    ldm_name: str | None = None  # SGM name of an SDXL UNet module (what kohya uses)

    @property
    def block(self) -> str:
        """The block the module sits in ("down_blocks.1.attentions.0.transformer_blocks.0", "double_blocks.0")."""
        found = re.match(r"(.*?(?:transformer_blocks|layers|double_blocks|single_blocks|joint_blocks|block)\.\d+)",
                         self.name)
        return found.group(1) if found else self.name


# ---- the modules of each model -------------------------------------------------------------------


def _unet_modules(family: str, *, convolutions: bool = False) -> list[Module]:
    """Attention (and with ``convolutions`` resnet) modules of the SD1/SD2/SDXL UNet, diffusers names."""
    context = {"sd1": 768, "sd2": 1024, "sdxl": 2048}[family]
    linear_projections = family != "sd1"
    if family == "sdxl":
        channels = (320, 640, 1280)
        down = {1: (2, 2), 2: (2, 10)}  # block: (attentions, transformer depth)
        up = {0: (3, 10, 1280), 1: (3, 2, 640)}
        mid_depth = 10
    else:
        channels = (320, 640, 1280, 1280)
        down = {0: (2, 1), 1: (2, 1), 2: (2, 1)}
        up = {1: (3, 1, 1280), 2: (3, 1, 640), 3: (3, 1, 320)}
        mid_depth = 1
    modules: list[Module] = []

    def attention(prefix: str, width: int, depth: int, ldm: str | None) -> None:
        projection = (width, width) if linear_projections else (width, width, 1, 1)
        names = [("proj_in", projection)]
        for index in range(depth):
            block = f"transformer_blocks.{index}"
            names += [(f"{block}.attn1.to_q", (width, width)), (f"{block}.attn1.to_k", (width, width)),
                      (f"{block}.attn1.to_v", (width, width)), (f"{block}.attn1.to_out.0", (width, width)),
                      (f"{block}.attn2.to_q", (width, width)), (f"{block}.attn2.to_k", (width, context)),
                      (f"{block}.attn2.to_v", (width, context)), (f"{block}.attn2.to_out.0", (width, width)),
                      (f"{block}.ff.net.0.proj", (8 * width, width)), (f"{block}.ff.net.2", (width, 4 * width))]
        names.append(("proj_out", projection))
        for name, shape in names:
            modules.append(Module("unet", f"{prefix}.{name}", shape, f"{ldm}.{name}" if ldm else None))

    # SGM (LDM) numbering of SDXL's blocks: input_blocks 1-8 in threes per level, output_blocks 0-8.
    for block, (count, depth) in down.items():
        for index in range(count):
            ldm = f"input_blocks.{3 * block + index + 1}.1" if family == "sdxl" else None
            attention(f"down_blocks.{block}.attentions.{index}", channels[block], depth, ldm)
    for block, (count, depth, width) in up.items():
        for index in range(count):
            ldm = f"output_blocks.{3 * block + index}.1" if family == "sdxl" else None
            attention(f"up_blocks.{block}.attentions.{index}", width, depth, ldm)
    attention("mid_block.attentions.0", channels[-1], mid_depth, "middle_block.1" if family == "sdxl" else None)
    if convolutions:
        previous = channels[0]
        for block, width in enumerate(channels):
            for index in range(2):
                in_width = previous if index == 0 else width
                modules.append(Module("unet", f"down_blocks.{block}.resnets.{index}.conv1", (width, in_width, 3, 3)))
                modules.append(Module("unet", f"down_blocks.{block}.resnets.{index}.conv2", (width, width, 3, 3)))
            previous = width
    return modules


def _text_modules(encoder: str) -> list[Module]:
    """Attention and MLP linears of a text encoder, transformers names (without ``text_model.``)."""
    width, layers, inner = TEXT_ENCODERS[encoder]
    modules: list[Module] = []
    for index in range(layers):
        if encoder == "t5xxl":
            block = f"encoder.block.{index}.layer"
            names = [(f"{block}.0.SelfAttention.{p}", (width, width)) for p in "qkvo"]
            names += [(f"{block}.1.DenseReluDense.wi_0", (inner, width)),
                      (f"{block}.1.DenseReluDense.wi_1", (inner, width)),
                      (f"{block}.1.DenseReluDense.wo", (width, inner))]
        else:
            block = f"encoder.layers.{index}"
            names = [(f"{block}.self_attn.{p}_proj", (width, width)) for p in ("q", "k", "v", "out")]
            names += [(f"{block}.mlp.fc1", (inner, width)), (f"{block}.mlp.fc2", (width, inner))]
        modules += [Module(encoder, name, shape) for name, shape in names]
    return modules


def _flux_modules() -> list[Module]:
    """FLUX.1's transformer linears in BFL's names (kohya, ComfyUI, XLabs and LyCORIS patch these)."""
    width, mlp = 3072, 12288
    modules: list[Module] = []
    for index in range(19):
        block = f"double_blocks.{index}"
        for stream in ("img", "txt"):
            modules += [Module("unet", f"{block}.{stream}_mod.lin", (6 * width, width)),
                        Module("unet", f"{block}.{stream}_attn.qkv", (3 * width, width)),
                        Module("unet", f"{block}.{stream}_attn.proj", (width, width)),
                        Module("unet", f"{block}.{stream}_mlp.0", (mlp, width)),
                        Module("unet", f"{block}.{stream}_mlp.2", (width, mlp))]
    for index in range(38):
        block = f"single_blocks.{index}"
        modules += [Module("unet", f"{block}.linear1", (3 * width + mlp, width)),
                    Module("unet", f"{block}.linear2", (width, width + mlp)),
                    Module("unet", f"{block}.modulation.lin", (3 * width, width))]
    return modules


def _flux_diffusers_modules() -> list[Module]:
    """FLUX.1's transformer linears in diffusers' names (what ai-toolkit and diffusers' trainers patch)."""
    width, mlp = 3072, 12288
    modules: list[Module] = []
    for index in range(19):
        block = f"transformer_blocks.{index}"
        attention = [f"attn.{p}" for p in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj",
                                           "to_out.0", "to_add_out")]
        modules += [Module("unet", f"{block}.{name}", (width, width)) for name in attention]
        for suffix in ("", "_context"):
            modules += [Module("unet", f"{block}.norm1{suffix}.linear", (6 * width, width)),
                        Module("unet", f"{block}.ff{suffix}.net.0.proj", (mlp, width)),
                        Module("unet", f"{block}.ff{suffix}.net.2", (width, mlp))]
    for index in range(38):
        block = f"single_transformer_blocks.{index}"
        modules += [Module("unet", f"{block}.attn.{p}", (width, width)) for p in ("to_q", "to_k", "to_v")]
        modules += [Module("unet", f"{block}.proj_mlp", (mlp, width)),
                    Module("unet", f"{block}.proj_out", (width, width + mlp)),
                    Module("unet", f"{block}.norm.linear", (3 * width, width))]
    return modules


def _sd3_modules(variant: str, *, diffusers: bool) -> list[Module]:
    """SD3/SD3.5's MM-DiT linears: SAI names (``joint_blocks``) or diffusers' (``transformer_blocks``)."""
    _, width, depth, dual = SD3_VARIANTS[variant]
    modules: list[Module] = []
    for index in range(depth):
        last = index == depth - 1  # the last block's context stream only feeds the image stream's attention
        if diffusers:
            block = f"transformer_blocks.{index}"
            names = [(f"{block}.attn.{p}", (width, width)) for p in ("to_q", "to_k", "to_v", "to_out.0")]
            names += [(f"{block}.attn.{p}", (width, width)) for p in ("add_q_proj", "add_k_proj", "add_v_proj")]
            names += [(f"{block}.norm1.linear", ((9 if index < dual else 6) * width, width)),
                      (f"{block}.norm1_context.linear", ((2 if last else 6) * width, width)),
                      (f"{block}.ff.net.0.proj", (4 * width, width)), (f"{block}.ff.net.2", (width, 4 * width))]
            if not last:
                names += [(f"{block}.attn.to_add_out", (width, width)),
                          (f"{block}.ff_context.net.0.proj", (4 * width, width)),
                          (f"{block}.ff_context.net.2", (width, 4 * width))]
            if index < dual:
                names += [(f"{block}.attn2.{p}", (width, width)) for p in ("to_q", "to_k", "to_v", "to_out.0")]
        else:
            block = f"joint_blocks.{index}"
            names = []
            for stream in ("x_block", "context_block"):
                names.append((f"{block}.{stream}.attn.qkv", (3 * width, width)))
                if stream == "context_block" and last:
                    names.append((f"{block}.{stream}.adaLN_modulation.1", (2 * width, width)))
                    continue
                rows = 9 if stream == "x_block" and index < dual else 6
                names += [(f"{block}.{stream}.attn.proj", (width, width)),
                          (f"{block}.{stream}.mlp.fc1", (4 * width, width)),
                          (f"{block}.{stream}.mlp.fc2", (width, 4 * width)),
                          (f"{block}.{stream}.adaLN_modulation.1", (rows * width, width))]
            if index < dual:
                names += [(f"{block}.x_block.attn2.qkv", (3 * width, width)),
                          (f"{block}.x_block.attn2.proj", (width, width))]
        modules += [Module("unet", name, shape) for name, shape in names]
    return modules


def target_modules(family: str, fmt: str, *, text_encoders: bool = True, diffusion: bool = True) -> list[Module]:
    """The modules a network of format ``fmt`` for ``family`` patches, in the model's own names."""
    _check(family, fmt)
    base = "sd3" if family in SD3_VARIANTS else family
    modules: list[Module] = []
    if diffusion:
        if base == "flux1":
            modules += _flux_diffusers_modules() if fmt == "peft" else _flux_modules()
            if fmt == "xlabs":
                modules = [m for m in modules if re.search(r"double_blocks\.\d+\.(img|txt)_attn\.(qkv|proj)$", m.name)]
        elif base == "sd3":
            variant = family if family in SD3_VARIANTS else "sd3"
            modules += _sd3_modules(variant, diffusers=fmt == "peft")
        else:
            modules += _unet_modules(base, convolutions=fmt == "locon")
            if fmt in ("attn-proc", "lora-diffusion"):
                modules = [m for m in modules if re.search(r"attn[12]\.(to_[qkv]|to_out\.0)$", m.name)
                           or (fmt == "lora-diffusion" and m.name.endswith("ff.net.0.proj"))]
        if fmt == "full":  # a full difference is as big as the weight: the UNet's attention only
            modules = [m for m in modules if re.search(r"attn1\.to_q$|attn2\.to_[kv]$", m.name)]
    if text_encoders and fmt not in ("xlabs", "attn-proc", "comfyui", "full"):
        for encoder in FAMILY_TEXT_ENCODERS[base]:
            text = _text_modules(encoder)
            if fmt == "lora-diffusion":  # lora_diffusion patches CLIPAttention only
                text = [m for m in text if "self_attn" in m.name]
            modules += text
    return modules


def _check(family: str, fmt: str) -> None:
    if family not in FAMILIES and family not in SD3_VARIANTS:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES + tuple(SD3_VARIANTS))}")
    if fmt not in LORA_FORMATS:
        raise ValueError(f"unknown LoRA format {fmt!r}; expected one of {', '.join(LORA_FORMATS)}")
    base = "sd3" if family in SD3_VARIANTS else family
    if fmt == "xlabs" and base != "flux1":
        raise ValueError("XLabs LoRAs exist for FLUX.1 only")
    if fmt in ("attn-proc", "lora-diffusion") and base not in ("sd1", "sd2"):
        raise ValueError(f"{fmt} LoRAs exist for SD1 and SD2 only")
    if fmt == "comfyui" and base not in ("flux1", "sd3"):
        raise ValueError("the comfyui format here is the Flux/SD3 diffusion_model.* layout")


# ---- names in each file layout -------------------------------------------------------------------

_KOHYA_TEXT = {"sd1": {"clip-l": "lora_te"}, "sd2": {"openclip-h": "lora_te"},
               "sdxl": {"clip-l": "lora_te1", "clip-g": "lora_te2"},
               "sd3": {"clip-l": "lora_te1", "clip-g": "lora_te2", "t5xxl": "lora_te3"},
               "flux1": {"clip-l": "lora_te1", "t5xxl": "lora_te3"}}
_DIFFUSERS_TEXT = {"sd1": {"clip-l": "text_encoder"}, "sd2": {"openclip-h": "text_encoder"},
                   "sdxl": {"clip-l": "text_encoder", "clip-g": "text_encoder_2"},
                   "sd3": {"clip-l": "text_encoder", "clip-g": "text_encoder_2", "t5xxl": "text_encoder_3"},
                   "flux1": {"clip-l": "text_encoder", "t5xxl": "text_encoder_2"}}


def _module_file_name(module: Module, family: str, fmt: str) -> str:
    """The module's name as ``fmt`` writes it (before the factor suffixes)."""
    base = "sd3" if family in SD3_VARIANTS else family
    text_path = module.name if module.part == "t5xxl" else f"text_model.{module.name}"
    if fmt == "peft":
        if module.part == "unet":
            return ("unet." if base in ("sd1", "sd2", "sdxl") else "transformer.") + module.name
        return f"{_DIFFUSERS_TEXT[base][module.part]}.{text_path}"
    if fmt == "comfyui":
        return f"diffusion_model.{module.name}"
    if fmt == "xlabs":
        stream = "1" if ".img_attn." in module.name else "2"
        kind = "qkv" if module.name.endswith("qkv") else "proj"
        return re.sub(r"\.(img|txt)_attn\.(qkv|proj)$", f".processor.{kind}_lora{stream}", module.name)
    if fmt == "attn-proc":
        found = re.match(r"(.*)\.(attn[12])\.(to_[qkv]|to_out)(\.0)?$", module.name)
        assert found is not None
        return f"{found.group(1)}.{found.group(2)}.processor.{found.group(3)}_lora"
    # kohya sd-scripts and LyCORIS: lora_unet_ + the path with dots as underscores
    if module.part == "unet":
        path = module.ldm_name if base == "sdxl" and module.ldm_name else module.name
        return "lora_unet_" + path.replace(".", "_")
    return f"{_KOHYA_TEXT[base][module.part]}_{text_path.replace('.', '_')}"


# ---- factors of each format ----------------------------------------------------------------------


def _kron_factors(size: int) -> tuple[int, int]:
    """LyCORIS' factorization(size, -1): the two factors of ``size`` nearest its square root (small first)."""
    first = int(math.isqrt(size))
    while size % first:
        first -= 1
    return first, size // first


def _factor_shapes(module: Module, fmt: str, rank: int) -> dict[str, tuple[int, ...]]:
    """Suffix -> shape of the tensors ``fmt`` stores for ``module``."""
    out_dim, in_dim, *kernel = module.shape
    ones = [1] * len(kernel)
    if fmt in ("kohya", "locon", "dora"):
        shapes = {"lora_down.weight": (rank, in_dim, *kernel), "lora_up.weight": (out_dim, rank, *ones), "alpha": ()}
        if fmt == "dora":
            shapes["dora_scale"] = (1, in_dim, *ones)
        return shapes
    if fmt in ("peft", "comfyui"):
        return {"lora_A.weight": (rank, in_dim, *kernel), "lora_B.weight": (out_dim, rank, *ones)}
    if fmt in ("xlabs", "attn-proc"):
        return {"down.weight": (rank, in_dim), "up.weight": (out_dim, rank)}
    if fmt == "loha":
        flat_in = in_dim * math.prod(kernel)
        return {"hada_w1_a": (out_dim, rank), "hada_w1_b": (rank, flat_in),
                "hada_w2_a": (out_dim, rank), "hada_w2_b": (rank, flat_in), "alpha": ()}
    if fmt == "lokr":
        (out_small, out_large), (in_small, in_large) = _kron_factors(out_dim), _kron_factors(in_dim)
        shapes: dict[str, tuple[int, ...]] = {"lokr_w1": (out_small, in_small)}
        if rank < max(out_large, in_large) / 2:
            shapes.update({"lokr_w2_a": (out_large, rank), "lokr_w2_b": (rank, in_large * math.prod(kernel))})
        else:
            shapes["lokr_w2"] = (out_large, in_large, *kernel)
        shapes["alpha"] = ()
        return shapes
    if fmt == "ia3":
        return {"weight": (out_dim,), "on_input": ()}
    if fmt == "glora":
        return {"a1.weight": (in_dim, rank), "a2.weight": (rank, in_dim), "b1.weight": (out_dim, rank),
                "b2.weight": (rank, in_dim), "alpha": ()}
    if fmt == "full":
        return {"diff": module.shape, "diff_b": (out_dim,)}
    raise ValueError(f"no factors for format {fmt!r}")


def lora_shapes(family: str, fmt: str, *, size: str = "full", rank: int | None = None,
                text_encoders: bool = True, diffusion: bool = True) -> Shapes:
    """Name -> shape of every tensor a ``fmt`` network for ``family`` holds, in file order.

    ``size='full'`` patches every module a real network does (rank 16 by default); ``'tiny'`` only the
    first block of each part, at real widths (rank 4), which is what ``write_lora`` writes.
    """
    if size not in ("tiny", "full"):
        raise ValueError(f"unknown size {size!r}; expected tiny or full")
    if fmt == "full" and size == "full":
        raise ValueError("a full-weight difference of every module is a whole model; use size='tiny'")
    rank = rank or (16 if size == "full" else 4)
    modules = target_modules(family, fmt, text_encoders=text_encoders, diffusion=diffusion)
    if size == "tiny":
        modules = _first_blocks(modules)
    if fmt == "lora-diffusion":
        return _lora_diffusion_shapes(modules, rank)
    shapes: Shapes = {}
    for module in modules:
        name = _module_file_name(module, family, fmt)
        for suffix, shape in _factor_shapes(module, fmt, rank).items():
            shapes[f"{name}.{suffix}"] = shape
    return shapes


def _first_blocks(modules: list[Module]) -> list[Module]:
    """The modules of the first block of each kind in each part (a UNet's first transformer block, Flux's
    first double and single block, a text encoder's first layer), at real widths."""
    first: dict[tuple[str, str], str] = {}
    kept = []
    for module in modules:
        last = re.search(r"(\w+)\.\d+$", module.block)  # "transformer_blocks", "double_blocks", "layers"...
        kind = (module.part, last.group(1) if last else re.sub(r"\d+", "N", module.block))
        if first.setdefault(kind, module.block) == module.block:
            kept.append(module)
    return kept


def _lora_diffusion_shapes(modules: list[Module], rank: int) -> Shapes:
    """lora_diffusion's safetensors names: ``unet:N:up``/``unet:N:down`` (and ``text_encoder:N:...``)."""
    shapes: Shapes = {}
    counters: dict[str, int] = {}
    for module in modules:
        model = "unet" if module.part == "unet" else "text_encoder"
        index = counters.get(model, 0)
        counters[model] = index + 1
        out_dim, in_dim = module.shape[:2]
        shapes[f"{model}:{index}:up"] = (out_dim, rank)
        shapes[f"{model}:{index}:down"] = (rank, in_dim)
    return shapes


# ---- metadata and files --------------------------------------------------------------------------

_KOHYA_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0", "sd3": "sd3", "flux1": "flux1"}
_MODELSPEC = {"sd1": "stable-diffusion-v1", "sd2": "stable-diffusion-v2-512", "sdxl": "stable-diffusion-xl-v1-base",
              "sd3": "stable-diffusion-3-medium", "flux1": "flux-1-dev"}
_NETWORK_MODULE = {"kohya": "networks.lora", "dora": "lycoris.kohya", "locon": "lycoris.kohya",
                   "loha": "lycoris.kohya", "lokr": "lycoris.kohya", "ia3": "lycoris.kohya",
                   "glora": "lycoris.kohya", "full": "lycoris.kohya"}


def lora_metadata(family: str, fmt: str, *, legacy: bool = False) -> dict[str, str]:
    """The header entries the tool writing ``fmt`` puts in a .safetensors file (all values strings).

    kohya and LyCORIS write ``ss_*`` training metadata (``legacy=True``: as before SDXL, ``ss_v2`` and no
    ``ss_base_model_version``); lora_diffusion names each model's target classes; the others write none.
    """
    base = "sd3" if family in SD3_VARIANTS else family
    if fmt == "lora-diffusion":
        return {"unet": json.dumps(["CrossAttention", "Attention", "GEGLU"]), "text_encoder": json.dumps(["CLIPAttention"])}
    if fmt not in _NETWORK_MODULE:
        return {}
    metadata = {"ss_network_module": _NETWORK_MODULE[fmt], "ss_network_dim": "4", "ss_network_alpha": "1.0",
                "ss_v2": str(base == "sd2"), "ss_output_name": f"{base}-{fmt}"}
    if fmt != "kohya":
        algo = {"dora": "lora", "full": "full"}.get(fmt, fmt)
        args = {"algo": algo, "conv_dim": "4", "conv_alpha": "1"}
        if fmt == "dora":
            args["dora_wd"] = "True"
        metadata["ss_network_args"] = json.dumps(args)
    if not legacy:
        metadata["ss_base_model_version"] = _KOHYA_VERSION[base]
        metadata["modelspec.sai_model_spec"] = "1.0.0"
        metadata["modelspec.architecture"] = f"{_MODELSPEC[base]}/lora"
    return metadata


def lora_tensors(family: str, fmt: str, *, seed: int = 0, dtype: torch.dtype = torch.float16,
                 text_encoders: bool = True, diffusion: bool = True) -> dict[str, torch.Tensor]:
    """The tiny network's tensors: seeded small values; alphas 1.0; ``on_input`` 0 (IA3 scales outputs)."""
    generator = torch.Generator().manual_seed(seed + 17)
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in lora_shapes(family, fmt, size="tiny", text_encoders=text_encoders,
                                   diffusion=diffusion).items():
        if name.endswith(".alpha"):
            tensors[name] = torch.tensor(1.0, dtype=dtype)
        elif name.endswith(".on_input"):
            tensors[name] = torch.tensor(0)
        else:
            tensors[name] = (torch.randn(shape, generator=generator) * 0.02).to(dtype)
    return tensors


def write_lora(path: str | Path, family: str, fmt: str, *, seed: int = 0, dtype: torch.dtype = torch.float16,
               text_encoders: bool = True, diffusion: bool = True, metadata: dict[str, str] | None = None,
               legacy_metadata: bool = False) -> Path:
    """A tiny ``fmt`` network for ``family`` written as that tool writes it: ``.safetensors`` (with the tool's
    metadata, or ``metadata``), or for a ``.bin``/``.pt`` path a torch.save pickle (attn-proc: a dict, as
    ``save_attn_procs`` wrote ``pytorch_lora_weights.bin``; lora-diffusion: a list of (up, down) tensors)."""
    path = Path(path)
    tensors = lora_tensors(family, fmt, seed=seed, dtype=dtype, text_encoders=text_encoders, diffusion=diffusion)
    if path.suffix in (".pt", ".bin", ".ckpt", ".pth"):
        if fmt == "lora-diffusion":
            # save_lora_weight: one file per model, [up0, down0, up1, down1, ...]
            models = {name.split(":")[0] for name in tensors}
            if len(models) != 1:
                raise ValueError("a lora_diffusion .pt holds one model's pairs: pass text_encoders=False "
                                 "(the UNet's file) or diffusion=False (the text encoder's)")
            pairs = sorted(tensors, key=lambda n: (int(n.split(":")[1]), n.endswith(":down")))
            return writers.save_pickle(path, [tensors[name] for name in pairs])
        return writers.save_pickle(path, tensors)
    if metadata is None:
        metadata = lora_metadata(family, fmt, legacy=legacy_metadata)
    return writers.save_tensors(path, tensors, metadata or None)


# ---- embeddings ----------------------------------------------------------------------------------

#: The keys (and widths) of textual-inversion embeddings for the families with more than one text encoder,
#: as OneTrainer saves them: SDXL clip_l + clip_g, SD3 clip_l + clip_g + t5, FLUX.1 clip_l + t5.
EMBEDDING_KEYS = {"sd1": {"emb_params": 768}, "sd2": {"emb_params": 1024},
                  "sdxl": {"clip_l": 768, "clip_g": 1280},
                  "sd3": {"clip_l": 768, "clip_g": 1280, "t5": 4096},
                  "flux1": {"clip_l": 768, "t5": 4096}}


def embedding_shapes(family: str, vectors: int = 4, *, keys: tuple[str, ...] | None = None) -> Shapes:
    """Name -> shape of a real-width embedding of ``vectors`` vectors for ``family`` (``keys``: a subset)."""
    widths = EMBEDDING_KEYS[family]
    return {name: (vectors, width) for name, width in widths.items() if keys is None or name in keys}


def write_embedding(path: str | Path, family: str, vectors: int = 4, *, keys: tuple[str, ...] | None = None,
                    seed: int = 0) -> Path:
    """A real-width embedding: ``.safetensors``, or a torch.save ``.pt`` of the same dict (OneTrainer's ckpt form)."""
    path = Path(path)
    generator = torch.Generator().manual_seed(seed + 19)
    tensors = {name: torch.randn(shape, generator=generator) * 0.02
               for name, shape in embedding_shapes(family, vectors, keys=keys).items()}
    if path.suffix == ".pt":
        return writers.save_pickle(path, tensors)
    return writers.save_tensors(path, tensors)


def write_a1111_embedding(path: str | Path, family: str = "sd1", vectors: int = 4, *, seed: int = 0) -> Path:
    """A real-width A1111 textual-inversion ``.pt`` (``string_to_param`` + name/step/sd_checkpoint), SD1 or SD2."""
    path = Path(path)
    width = {"sd1": 768, "sd2": 1024}[family]
    generator = torch.Generator().manual_seed(seed + 23)
    vectors_tensor = (torch.randn(vectors, width, generator=generator) * 0.02).requires_grad_(True)
    checkpoint = {"sd1": ("6ce0161689", "v1-5-pruned-emaonly"), "sd2": ("ad2a33c361", "v2-1_768-ema-pruned")}[family]
    return writers.save_pickle(path, {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vectors_tensor},
        "name": path.stem,
        "step": 3000,
        "sd_checkpoint": checkpoint[0],
        "sd_checkpoint_name": checkpoint[1],
    })
