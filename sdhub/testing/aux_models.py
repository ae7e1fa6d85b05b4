"""Tiny auxiliary models in their real published layouts: ControlNets (and T2I-Adapters, control-LoRAs,
LLLite, Flux and SD3 ControlNets), IP-Adapters, CLIP vision encoders, upscalers, preview decoders and
hypernetworks.

``*_shapes`` functions give name -> shape without allocating anything (``size="full"`` is the real
model's shapes, for header tests); the writers save a tiny file the way the real tool does: safetensors,
or a real ``torch.save`` pickle where the tool ships pickles (``.pth`` ControlNets and upscalers,
``.bin`` IP-Adapters as nested ``{"image_proj": ..., "ip_adapter": ...}``, ``.pt`` hypernetworks and
VAE-approx). Widths that detection reads (cross-attention, hint channels, latent channels) stay real
in the tiny files; the rest is shrunk.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sdhub.testing import writers

Shapes = dict[str, tuple[int, ...]]
SIZES = ("tiny", "full")


# ---- UNet ControlNets (SD1, SD2, SDXL) -------------------------------------------------------


@dataclass(frozen=True)
class _UNetConfig:
    channels: int
    mults: tuple[int, ...]
    res_blocks: int
    attention: dict[int, int] = field(default_factory=dict)  # level -> transformer depth
    context: int = 768
    linear_proj: bool = False
    adm: int | None = None
    mid_depth: int = 1


_CONFIGS = {
    ("sd1", "full"): _UNetConfig(320, (1, 2, 4, 4), 2, {0: 1, 1: 1, 2: 1}, 768),
    ("sd2", "full"): _UNetConfig(320, (1, 2, 4, 4), 2, {0: 1, 1: 1, 2: 1}, 1024, linear_proj=True),
    ("sdxl", "full"): _UNetConfig(320, (1, 2, 4), 2, {1: 2, 2: 10}, 2048, linear_proj=True, adm=2816, mid_depth=10),
    ("sd1", "tiny"): _UNetConfig(8, (1, 2), 1, {0: 1, 1: 1}, 768),
    ("sd2", "tiny"): _UNetConfig(8, (1, 2), 1, {0: 1, 1: 1}, 1024, linear_proj=True),
    ("sdxl", "tiny"): _UNetConfig(8, (1, 2), 1, {1: 1}, 2048, linear_proj=True, adm=2816),
}
_HINT = (16, 16, 32, 32, 96, 96, 256)  # the hint encoder's widths, before the last conv to the model width


def _config(base: str, size: str) -> _UNetConfig:
    if (base, size) not in _CONFIGS:
        raise ValueError(f"no ControlNet config for base {base!r}, size {size!r}")
    return _CONFIGS[(base, size)]


class _Names:
    """Collects name -> shape with a weight/bias helper."""

    def __init__(self) -> None:
        self.shapes: Shapes = {}

    def add(self, name: str, weight: tuple[int, ...], bias: bool = True) -> None:
        self.shapes[f"{name}.weight"] = weight
        if bias:
            self.shapes[f"{name}.bias"] = (weight[0],)


def controlnet_shapes(base: str = "sd1", *, layout: str = "original", size: str = "tiny") -> Shapes:
    """A UNet ControlNet's names and shapes: ``layout`` "original" (``control_model.*``) or "diffusers"."""
    cfg = _config(base, size)
    if layout == "original":
        return {f"control_model.{k}": v for k, v in _ldm_controlnet(cfg).items()}
    if layout == "diffusers":
        return _diffusers_controlnet(cfg)
    raise ValueError(f"unknown ControlNet layout {layout!r}")


def _ldm_resblock(n: _Names, p: str, i: int, o: int, emb: int) -> None:
    n.add(f"{p}.in_layers.0", (i,))
    n.add(f"{p}.in_layers.2", (o, i, 3, 3))
    n.add(f"{p}.emb_layers.1", (o, emb))
    n.add(f"{p}.out_layers.0", (o,))
    n.add(f"{p}.out_layers.3", (o, o, 3, 3))
    if i != o:
        n.add(f"{p}.skip_connection", (o, i, 1, 1))


def _transformer(n: _Names, p: str, ch: int, depth: int, cfg: _UNetConfig, diffusers: bool) -> None:
    proj = (ch, ch) if cfg.linear_proj else (ch, ch, 1, 1)
    n.add(f"{p}.norm", (ch,))
    n.add(f"{p}.proj_in", proj)
    for k in range(depth):
        b = f"{p}.transformer_blocks.{k}"
        for attn, width in (("attn1", ch), ("attn2", cfg.context)):
            n.add(f"{b}.{attn}.to_q", (ch, ch), bias=False)
            n.add(f"{b}.{attn}.to_k", (ch, width), bias=False)
            n.add(f"{b}.{attn}.to_v", (ch, width), bias=False)
            n.add(f"{b}.{attn}.to_out.0", (ch, ch))
        n.add(f"{b}.ff.net.0.proj", (8 * ch, ch))
        n.add(f"{b}.ff.net.2", (ch, 4 * ch))
        for norm in ("norm1", "norm2", "norm3"):
            n.add(f"{b}.{norm}", (ch,))
    n.add(f"{p}.proj_out", proj)


def _ldm_controlnet(cfg: _UNetConfig) -> Shapes:
    n = _Names()
    c, emb = cfg.channels, 4 * cfg.channels
    n.add("time_embed.0", (emb, c))
    n.add("time_embed.2", (emb, emb))
    if cfg.adm:
        n.add("label_emb.0.0", (emb, cfg.adm))
        n.add("label_emb.0.2", (emb, emb))
    n.add("input_blocks.0.0", (c, 4, 3, 3))
    widths = (3, *_HINT, c)
    for i in range(len(widths) - 1):
        n.add(f"input_hint_block.{2 * i}", (widths[i + 1], widths[i], 3, 3))
    n.add("zero_convs.0.0", (c, c, 1, 1))
    index, ch = 1, c
    for level, mult in enumerate(cfg.mults):
        for _ in range(cfg.res_blocks):
            _ldm_resblock(n, f"input_blocks.{index}.0", ch, c * mult, emb)
            ch = c * mult
            if level in cfg.attention:
                _transformer(n, f"input_blocks.{index}.1", ch, cfg.attention[level], cfg, False)
            n.add(f"zero_convs.{index}.0", (ch, ch, 1, 1))
            index += 1
        if level != len(cfg.mults) - 1:
            n.add(f"input_blocks.{index}.0.op", (ch, ch, 3, 3))
            n.add(f"zero_convs.{index}.0", (ch, ch, 1, 1))
            index += 1
    _ldm_resblock(n, "middle_block.0", ch, ch, emb)
    _transformer(n, "middle_block.1", ch, cfg.mid_depth, cfg, False)
    _ldm_resblock(n, "middle_block.2", ch, ch, emb)
    n.add("middle_block_out.0", (ch, ch, 1, 1))
    return n.shapes


def _diffusers_resnet(n: _Names, p: str, i: int, o: int, emb: int) -> None:
    n.add(f"{p}.norm1", (i,))
    n.add(f"{p}.conv1", (o, i, 3, 3))
    n.add(f"{p}.time_emb_proj", (o, emb))
    n.add(f"{p}.norm2", (o,))
    n.add(f"{p}.conv2", (o, o, 3, 3))
    if i != o:
        n.add(f"{p}.conv_shortcut", (o, i, 1, 1))


def _diffusers_controlnet(cfg: _UNetConfig) -> Shapes:
    n = _Names()
    c, emb = cfg.channels, 4 * cfg.channels
    n.add("conv_in", (c, 4, 3, 3))
    n.add("time_embedding.linear_1", (emb, c))
    n.add("time_embedding.linear_2", (emb, emb))
    if cfg.adm:
        n.add("add_embedding.linear_1", (emb, cfg.adm))
        n.add("add_embedding.linear_2", (emb, emb))
    n.add("controlnet_cond_embedding.conv_in", (_HINT[0], 3, 3, 3))
    for i in range(len(_HINT) - 1):
        n.add(f"controlnet_cond_embedding.blocks.{i}", (_HINT[i + 1], _HINT[i], 3, 3))
    n.add("controlnet_cond_embedding.conv_out", (c, _HINT[-1], 3, 3))
    zero = [c]
    ch = c
    for level, mult in enumerate(cfg.mults):
        for r in range(cfg.res_blocks):
            _diffusers_resnet(n, f"down_blocks.{level}.resnets.{r}", ch, c * mult, emb)
            ch = c * mult
            if level in cfg.attention:
                _transformer(n, f"down_blocks.{level}.attentions.{r}", ch, cfg.attention[level], cfg, True)
            zero.append(ch)
        if level != len(cfg.mults) - 1:
            n.add(f"down_blocks.{level}.downsamplers.0.conv", (ch, ch, 3, 3))
            zero.append(ch)
    for index, width in enumerate(zero):
        n.add(f"controlnet_down_blocks.{index}", (width, width, 1, 1))
    n.add("controlnet_mid_block", (ch, ch, 1, 1))
    _transformer(n, "mid_block.attentions.0", ch, cfg.mid_depth, cfg, True)
    _diffusers_resnet(n, "mid_block.resnets.0", ch, ch, emb)
    _diffusers_resnet(n, "mid_block.resnets.1", ch, ch, emb)
    return n.shapes


def control_lora_shapes(*, size: str = "tiny", rank: int = 4) -> Shapes:
    """Stability's SDXL control-LoRA: low-rank ``up``/``down`` for the UNet's convolutions and linears, full
    weights for what the ControlNet adds (hint encoder, zero convs), and the ``lora_controlnet`` marker."""
    full = _ldm_controlnet(_config("sdxl", size))
    shapes: Shapes = {"lora_controlnet": (0,)}
    for name, shape in full.items():
        added = name.startswith(("input_hint_block.", "zero_convs.", "middle_block_out."))
        if added or not name.endswith(".weight") or len(shape) < 2:
            shapes[name] = shape
            continue
        stem = name[: -len(".weight")]
        shapes[f"{stem}.up"] = (shape[0], rank, *([1] * (len(shape) - 2)))
        shapes[f"{stem}.down"] = (rank, *shape[1:])
    return shapes


def lllite_shapes(*, modules: int = 2, cond_emb: int = 16, mlp: int = 8) -> Shapes:
    """kohya's ControlNet-LLLite (SDXL): a conditioning encoder and down/mid/up per attention projection."""
    shapes: Shapes = {}
    for m in range(modules):
        p = f"lllite_unet_input_blocks_4_1_transformer_blocks_{m}_attn1_to_q"
        shapes |= {f"{p}.conditioning1.0.weight": (cond_emb // 2, 3, 4, 4),
                   f"{p}.conditioning1.0.bias": (cond_emb // 2,),
                   f"{p}.conditioning1.2.weight": (cond_emb, cond_emb // 2, 2, 2),
                   f"{p}.conditioning1.2.bias": (cond_emb,),
                   f"{p}.down.0.weight": (mlp, 640), f"{p}.down.0.bias": (mlp,),
                   f"{p}.mid.0.weight": (mlp, mlp + cond_emb), f"{p}.mid.0.bias": (mlp,),
                   f"{p}.up.0.weight": (640, mlp), f"{p}.up.0.bias": (640,)}
    return shapes


def flux_controlnet_shapes(layout: str = "instantx", *, size: str = "tiny") -> Shapes:
    """Flux ControlNets: "instantx" (diffusers FluxControlNetModel names) or "xlabs" (BFL names)."""
    width, blocks, single = (3072, 5, 10) if size == "full" else (3072, 1, 1)
    ff = 4 * width if size == "full" else 8
    n = _Names()
    if layout == "xlabs":
        n.add("img_in", (width, 64))
        n.add("txt_in", (width, 4096))
        n.add("time_in.in_layer", (width, 256))
        n.add("vector_in.in_layer", (width, 768))
        n.add("pos_embed_input", (width, 64))
        for i in range(len(_HINT) + 1):
            widths = (3, *_HINT, 16)
            n.add(f"input_hint_block.{2 * i}", (widths[i + 1], widths[i], 3, 3))
        for b in range(2 if size == "full" else 1):
            n.add(f"double_blocks.{b}.img_attn.qkv", (3 * width, width))
            n.add(f"double_blocks.{b}.img_mlp.0", (ff, width))
            n.add(f"double_blocks.{b}.txt_attn.qkv", (3 * width, width))
            n.add(f"controlnet_blocks.{b}", (width, width))
        return n.shapes
    if layout != "instantx":
        raise ValueError(f"unknown Flux ControlNet layout {layout!r}")
    n.add("x_embedder", (width, 64))
    n.add("controlnet_x_embedder", (width, 64))
    n.add("context_embedder", (width, 4096))
    n.add("time_text_embed.timestep_embedder.linear_1", (width, 256))
    for b in range(blocks):
        n.add(f"transformer_blocks.{b}.attn.to_q", (width, width))
        n.add(f"transformer_blocks.{b}.ff.net.0.proj", (ff, width))
        n.add(f"controlnet_blocks.{b}", (width, width))
    for b in range(single):
        n.add(f"single_transformer_blocks.{b}.attn.to_q", (width, width))
        n.add(f"controlnet_single_blocks.{b}", (width, width))
    return n.shapes


def sd3_controlnet_shapes(*, width: int = 1536, blocks: int = 1) -> Shapes:
    """An SD3 / SD3.5 ControlNet in diffusers' SD3ControlNetModel names (width 1536 medium, 2432 large)."""
    n = _Names()
    n.add("pos_embed.proj", (width, 16, 2, 2))
    n.add("pos_embed_input.proj", (width, 16, 2, 2))
    n.add("time_text_embed.timestep_embedder.linear_1", (width, 256))
    n.add("time_text_embed.text_embedder.linear_1", (width, 2048))
    for b in range(blocks):
        n.add(f"transformer_blocks.{b}.attn.to_q", (width, width))
        n.add(f"controlnet_blocks.{b}", (width, width))
    return n.shapes


def t2i_adapter_shapes(base: str = "sd1", *, layout: str = "original", size: str = "tiny", hint: int = 3) -> Shapes:
    """A T2I-Adapter: TencentARC's ``conv_in`` + ``body.N`` or diffusers' ``adapter.body.N.resnets.M``."""
    unshuffle = 8 if base == "sd1" else 16
    cin = hint * unshuffle * unshuffle
    channels = (320, 640, 1280, 1280) if size == "full" else (8, 16, 16, 16)
    n = _Names()
    pre = "adapter." if layout == "diffusers" else ""
    n.add(f"{pre}conv_in", (channels[0], cin, 3, 3))
    ch = channels[0]
    for level, width in enumerate(channels):
        for r in range(2):
            p = f"adapter.body.{level}.resnets.{r}" if layout == "diffusers" else f"body.{2 * level + r}"
            if r == 0 and width != ch:
                n.add(f"adapter.body.{level}.in_conv" if layout == "diffusers" else f"{p}.in_conv", (width, ch, 1, 1))
            n.add(f"{p}.block1", (width, width, 3, 3))
            n.add(f"{p}.block2", (width, width, 1, 1))
            ch = width
    return n.shapes


# ---- IP-Adapters ----------------------------------------------------------------------------

_IP_WIDTHS = {"sd1": (768, 16), "sdxl": (2048, 70)}  # cross-attention width, attention processors with to_k_ip


def ip_adapter_parts(base: str = "sd1", variant: str = "plain", *, size: str = "tiny") -> dict[str, Shapes]:
    """An IP-Adapter's two state dicts, as h94's ``.bin`` holds them: ``image_proj`` and ``ip_adapter``."""
    context, layers = _IP_WIDTHS[base]
    layers = layers if size == "full" else 2
    inner = 320 if size == "full" else 8
    # Tiny files keep the widths detection reads (image embedding in, text context out) and shrink the rest.
    full = size == "full"
    tokens = 4 if full else 1
    proj: Shapes
    if variant == "plain":  # ViT-H projected embedding (1024) for SD1; bigG's (1280) for SDXL
        embed = 1024 if base == "sd1" else 1280
        proj = {"proj.weight": (tokens * context, embed), "proj.bias": (tokens * context,), "norm.weight": (context,),
                "norm.bias": (context,)}
    elif variant == "plus":  # Resampler over ViT-H hidden states (1280)
        dim = (context if base == "sd1" else 1280) if full else 8
        proj = {"latents": (1, 16, dim), "proj_in.weight": (dim, 1280), "proj_in.bias": (dim,),
                "proj_out.weight": (context, dim), "proj_out.bias": (context,), "norm_out.weight": (context,),
                "norm_out.bias": (context,), "layers.0.0.norm1.weight": (dim,), "layers.0.0.to_q.weight": (dim, dim),
                "layers.0.0.to_kv.weight": (2 * dim, dim), "layers.0.0.to_out.weight": (dim, dim),
                "layers.0.1.0.weight": (dim,), "layers.0.1.1.weight": (4 * dim, dim),
                "layers.0.1.3.weight": (dim, 4 * dim)}
    elif variant == "full-face":  # an MLP over ViT-H hidden states (1280)
        hidden = 1280 if full else 16
        proj = {"proj.0.weight": (hidden, 1280), "proj.0.bias": (hidden,), "proj.2.weight": (context, hidden),
                "proj.2.bias": (context,), "norm.weight": (context,), "norm.bias": (context,)}
    elif variant == "face-id":  # an MLP over insightface's 512-wide face embedding
        hidden = 1024 if full else 16
        proj = {"proj.0.weight": (hidden, 512), "proj.0.bias": (hidden,), "proj.2.weight": (tokens * context, hidden),
                "proj.2.bias": (tokens * context,), "norm.weight": (context,), "norm.bias": (context,)}
    else:
        raise ValueError(f"unknown IP-Adapter variant {variant!r}")
    adapter: Shapes = {}
    for index in range(layers):
        number = 2 * index + 1  # h94 numbers the cross-attention processors 1, 3, 5...
        adapter[f"{number}.to_k_ip.weight"] = (inner, context)
        adapter[f"{number}.to_v_ip.weight"] = (inner, context)
        if variant == "face-id":
            for proj_name in ("to_q_lora", "to_k_lora", "to_v_lora"):
                adapter[f"{number}.{proj_name}.down.weight"] = (4, inner)
                adapter[f"{number}.{proj_name}.up.weight"] = (inner, 4)
    return {"image_proj": proj, "ip_adapter": adapter}


def ip_adapter_shapes(base: str = "sd1", variant: str = "plain", *, size: str = "tiny") -> Shapes:
    """The same, flattened as the ``.safetensors`` releases (and sdhub's reader) name them."""
    return {f"{part}.{k}": v for part, shapes in ip_adapter_parts(base, variant, size=size).items()
            for k, v in shapes.items()}


# ---- CLIP vision ----------------------------------------------------------------------------

#: Real CLIP vision towers: hidden width, layers, patch, image size, projection, MLP width.
VISION_ENCODERS = {
    "ViT-L/14": (1024, 24, 14, 224, 768, 4096),
    "ViT-H/14": (1280, 32, 14, 224, 1024, 5120),
    "ViT-bigG/14": (1664, 48, 14, 224, 1280, 8192),
    "SigLIP so400m/14": (1152, 27, 14, 384, None, 4304),
    "tiny": (32, 2, 14, 28, 16, 64),
}


def clip_vision_shapes(encoder: str = "ViT-H/14", *, layout: str = "transformers") -> Shapes:
    """A CLIP vision tower: transformers' ``vision_model.*`` (SigLIP: no class token) or open_clip's ``visual.*``."""
    width, depth, patch, image, projection, mlp = VISION_ENCODERS[encoder]
    siglip = encoder.startswith("SigLIP")
    grid = (image // patch) ** 2
    n = _Names()
    if layout == "open_clip":
        shapes: Shapes = {"visual.class_embedding": (width,), "visual.positional_embedding": (grid + 1, width),
                          "visual.conv1.weight": (width, 3, patch, patch), "visual.proj": (width, projection or width)}
        for norm in ("visual.ln_pre", "visual.ln_post"):
            n.add(norm, (width,))
        for layer in range(depth):
            p = f"visual.transformer.resblocks.{layer}"
            shapes[f"{p}.attn.in_proj_weight"] = (3 * width, width)
            shapes[f"{p}.attn.in_proj_bias"] = (3 * width,)
            n.add(f"{p}.attn.out_proj", (width, width))
            n.add(f"{p}.ln_1", (width,))
            n.add(f"{p}.ln_2", (width,))
            n.add(f"{p}.mlp.c_fc", (mlp, width))
            n.add(f"{p}.mlp.c_proj", (width, mlp))
        return shapes | n.shapes
    e = "vision_model.embeddings"
    shapes = {f"{e}.patch_embedding.weight": (width, 3, patch, patch),
              f"{e}.position_embedding.weight": (grid + (0 if siglip else 1), width)}
    if siglip:
        shapes[f"{e}.patch_embedding.bias"] = (width,)
        shapes["vision_model.head.probe"] = (1, 1, width)
        n.add("vision_model.head.layernorm", (width,))
    else:
        shapes[f"{e}.class_embedding"] = (width,)
        n.add("vision_model.pre_layrnorm", (width,))
        if projection:
            n.add("visual_projection", (projection, width), bias=False)
    n.add("vision_model.post_layernorm", (width,))
    for layer in range(depth):
        p = f"vision_model.encoder.layers.{layer}"
        for proj_name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            n.add(f"{p}.self_attn.{proj_name}", (width, width))
        n.add(f"{p}.layer_norm1", (width,))
        n.add(f"{p}.layer_norm2", (width,))
        n.add(f"{p}.mlp.fc1", (mlp, width))
        n.add(f"{p}.mlp.fc2", (width, mlp))
    return shapes | n.shapes


# ---- preview decoders and hypernetworks -----------------------------------------------------


def taesd_shapes(part: str = "decoder", *, latent: int = 4, layout: str = "original") -> Shapes:
    """TAESD's encoder or decoder (64 wide, as published): "original" (``taesd_decoder.pth``),
    "comfyui" (``taesd_decoder.``-prefixed) or "diffusers" (AutoencoderTiny ``decoder.layers.N``)."""
    width = 64
    layers: list[tuple[str, tuple[int, ...], bool]] = []  # (sub-name, weight shape, has bias)

    def block() -> None:
        layers.append(("block", (width, width, 3, 3), True))

    if part == "decoder":
        if layout != "diffusers":
            layers.append(("none", (), False))  # the Clamp at index 0 has no weights
        layers.append(("conv", (width, latent, 3, 3), True))
        layers.append(("none", (), False))  # ReLU
        for stage in range(3):
            for _ in range(3):
                block()
            layers.append(("none", (), False))  # Upsample
            layers.append(("conv", (width, width, 3, 3), False))
        block()
        layers.append(("conv", (3, width, 3, 3), True))
    elif part == "encoder":
        layers.append(("conv", (width, 3, 3, 3), True))
        block()
        for _ in range(3):
            layers.append(("conv", (width, width, 3, 3), False))  # stride-2 conv
            for _ in range(3):
                block()
        layers.append(("conv", (latent, width, 3, 3), True))
    else:
        raise ValueError(f"unknown TAESD part {part!r}")
    prefix = {"original": "", "comfyui": f"taesd_{part}.", "diffusers": f"{part}.layers."}[layout]
    shapes: Shapes = {}
    for index, (sort, shape, bias) in enumerate(layers):
        p = f"{prefix}{index}"
        if sort == "conv":
            shapes[f"{p}.weight"] = shape
            if bias:
                shapes[f"{p}.bias"] = (shape[0],)
        elif sort == "block":
            for sub in (0, 2, 4):
                shapes[f"{p}.conv.{sub}.weight"] = shape
                shapes[f"{p}.conv.{sub}.bias"] = (shape[0],)
    return shapes


def vae_approx_shapes(latent: int = 4) -> Shapes:
    """A1111's VAE-approx (``models/VAE-approx/model.pt``): eight convolutions, latent -> RGB."""
    widths = (latent, 8, 16, 32, 64, 32, 16, 8, 3)
    kernels = (7, 5, 3, 3, 3, 3, 3, 3)
    shapes: Shapes = {}
    for i in range(8):
        shapes[f"conv{i + 1}.weight"] = (widths[i + 1], widths[i], kernels[i], kernels[i])
        shapes[f"conv{i + 1}.bias"] = (widths[i + 1],)
    return shapes


def hypernetwork_state(widths: tuple[int, ...] = (768,), structure: tuple[float, ...] = (1, 1), seed: int = 0
                       ) -> dict[Any, Any]:
    """An A1111 hypernetwork as its trainer saves it: int width -> [k module, v module] state dicts, plus settings."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[Any, Any] = {}
    for width in widths:
        modules = []
        for _ in range(2):
            module: dict[str, torch.Tensor] = OrderedDict()  # what layer.state_dict() gives A1111
            for i in range(len(structure) - 1):
                out_f, in_f = int(width * structure[i + 1]), int(width * structure[i])
                module[f"linear.{i}.weight"] = torch.randn(out_f, in_f, generator=generator) * 0.01
                module[f"linear.{i}.bias"] = torch.zeros(out_f)
            modules.append(module)
        state[width] = modules
    state.update({"step": 1000, "name": "tiny-hypernet", "layer_structure": list(structure),
                  "activation_func": "linear",
                  "is_layer_norm": False, "weight_initialization": "Normal", "sd_checkpoint": "e1441589",
                  "sd_checkpoint_name": "v1-5-pruned-emaonly", "activate_output": False, "use_dropout": False,
                  "dropout_structure": [0.0] * len(structure), "last_layer_dropout": False, "optional_info": None})
    return state


# ---- upscalers ------------------------------------------------------------------------------


def esrgan_state(scale: int = 4, *, layout: str = "old", filters: int = 8, blocks: int = 1, seed: int = 0
                 ) -> dict[str, torch.Tensor]:
    """An ESRGAN RRDB network: "old" (``model.N`` / ``RDBn``: ESRGAN, 4x-UltraSharp...) or "new" (BasicSR's
    ``conv_first`` / ``body.N.rdbN``: RealESRGAN_x4plus)."""
    shapes: Shapes = {}
    gc = 32  # the RRDB growth channels: every published model (and spandrel) uses 32
    new = layout == "new"
    first, trunk = ("conv_first", "conv_body") if new else ("model.0", f"model.1.sub.{blocks}")
    shapes |= {f"{first}.weight": (filters, 3, 3, 3), f"{first}.bias": (filters,)}
    for b in range(blocks):
        for r in range(1, 4):
            for c in range(1, 6):
                inputs = filters + (c - 1) * gc
                out = gc if c < 5 else filters
                p = f"body.{b}.rdb{r}.conv{c}" if new else f"model.1.sub.{b}.RDB{r}.conv{c}.0"
                shapes |= {f"{p}.weight": (out, inputs, 3, 3), f"{p}.bias": (out,)}
    shapes |= {f"{trunk}.weight": (filters, filters, 3, 3), f"{trunk}.bias": (filters,)}
    ups = {2: 1, 4: 2, 8: 3}[scale]
    for u in range(ups):
        p = f"conv_up{u + 1}" if new else f"model.{3 * (u + 1)}"
        shapes |= {f"{p}.weight": (filters, filters, 3, 3), f"{p}.bias": (filters,)}
    hr, last = ("conv_hr", "conv_last") if new else (f"model.{3 * ups + 2}", f"model.{3 * ups + 4}")
    shapes |= {f"{hr}.weight": (filters, filters, 3, 3), f"{hr}.bias": (filters,),
               f"{last}.weight": (3, filters, 3, 3), f"{last}.bias": (3,)}
    return random_tensors(shapes, seed)


def compact_state(scale: int = 4, *, filters: int = 8, convs: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """RealESRGAN's SRVGGNetCompact (realesr-general-x4v3, 2x/4x Compact models): ``body.N`` convs and PReLUs."""
    shapes: Shapes = {"body.0.weight": (filters, 3, 3, 3), "body.0.bias": (filters,), "body.1.weight": (filters,)}
    index = 2
    for _ in range(convs):
        shapes |= {f"body.{index}.weight": (filters, filters, 3, 3), f"body.{index}.bias": (filters,),
                   f"body.{index + 1}.weight": (filters,)}
        index += 2
    shapes |= {f"body.{index}.weight": (3 * scale * scale, filters, 3, 3), f"body.{index}.bias": (3 * scale * scale,)}
    return random_tensors(shapes, seed)


def transformer_upscaler_state(arch: str = "swinir", scale: int = 2, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny SwinIR, HAT or DAT (pixel-shuffle upsampler), built by spandrel's own architecture classes."""
    from sdhub.models.detect_upscaler import _spandrel  # spandrel imported with its torchvision stand-ins

    if _spandrel() is None:
        raise RuntimeError("the transformer upscaler factory needs spandrel")
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.meshgrid's indexing notice, from the architectures' code
        model = _transformer_upscaler(arch, scale)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _transformer_upscaler(arch: str, scale: int) -> Any:
    if arch == "swinir":
        from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

        return SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=scale,
                      upsampler="pixelshuffle", mlp_ratio=2)
    if arch == "hat":
        from spandrel.architectures.HAT.__arch.HAT import HAT

        return HAT(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=scale,
                   upsampler="pixelshuffle", mlp_ratio=2, compress_ratio=3, squeeze_factor=3)
    if arch == "dat":
        from spandrel.architectures.DAT.__arch.DAT import DAT

        return DAT(img_size=16, embed_dim=12, depth=[1], num_heads=[2], split_size=[2, 4], upscale=scale,
                   expansion_factor=2)
    raise ValueError(f"unknown transformer upscaler {arch!r}")


def random_tensors(shapes: Shapes, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Seeded small random tensors of ``shapes`` (zero-size markers stay empty)."""
    generator = torch.Generator().manual_seed(seed)
    # An OrderedDict, as module.state_dict() gives and the tools' torch.save pickles hold.
    return OrderedDict((name, (torch.randn(shape, generator=generator) * 0.02).to(dtype))
                       for name, shape in shapes.items())


# ---- writers --------------------------------------------------------------------------------


def write(path: str | Path, state: dict[str, Any], *, fmt: str | None = None) -> Path:
    """Save ``state`` as the file name says: ``.safetensors`` (flat tensors) or a real ``torch.save`` pickle
    (``.pth``/``.pt``/``.bin``/``.ckpt``; nested dicts and int keys kept as they are)."""
    path = Path(path)
    fmt = fmt or ("safetensors" if path.suffix == ".safetensors" else "pickle")
    if fmt == "safetensors":
        return writers.save_tensors(path, {k: v.contiguous() for k, v in state.items()})
    return writers.save_pickle(path, state)


def write_shapes(path: str | Path, shapes: Shapes, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Random tensors of ``shapes`` written to ``path`` (format from its suffix)."""
    return write(path, random_tensors(shapes, seed, dtype))


def ip_adapter(path: str | Path, base: str = "sd1", variant: str = "plain", *, seed: int = 0) -> Path:
    """A tiny IP-Adapter: ``.bin`` as h94 ships it (nested ``image_proj`` / ``ip_adapter`` dicts), or
    ``.safetensors`` with the flattened names."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return write_shapes(path, ip_adapter_shapes(base, variant), seed=seed, dtype=torch.float16)
    parts = ip_adapter_parts(base, variant)  # h94's releases are fp16
    return write(path, {part: random_tensors(shapes, seed, torch.float16) for part, shapes in parts.items()})


def hypernetwork(path: str | Path, widths: tuple[int, ...] = (768,), *, seed: int = 0) -> Path:
    """A tiny A1111 hypernetwork ``.pt`` (real torch.save of the trainer's dict)."""
    return write(path, hypernetwork_state(widths, seed=seed), fmt="pickle")


def upscaler(path: str | Path, arch: str = "esrgan", scale: int = 4, *, seed: int = 0) -> Path:
    """A tiny upscaler ``.pth``: "esrgan" (old layout), "realesrgan" (BasicSR's ``params_ema`` wrapper),
    "compact" (SRVGGNetCompact ``params``), "swinir", "hat", "dat" (``params``)."""
    if arch == "esrgan":
        state: dict[str, Any] = esrgan_state(scale, seed=seed)
    elif arch == "realesrgan":
        state = {"params_ema": esrgan_state(scale, layout="new", seed=seed)}
    elif arch == "compact":
        state = {"params": compact_state(scale, seed=seed)}
    elif arch in ("swinir", "hat", "dat"):
        state = {"params": transformer_upscaler_state(arch, scale, seed=seed)}
    else:
        raise ValueError(f"unknown upscaler arch {arch!r}")
    path = Path(path)
    return write(path, state if path.suffix != ".safetensors" else _flat(state))


def _flat(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    (inner,) = [v for v in state.values() if isinstance(v, dict)] or [state]
    return inner
