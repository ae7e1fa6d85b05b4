"""FLUX.1, SD3/SD3.5, UNets alone, text encoders and 16-channel VAEs in the key layouts they are published in.

Each family comes as a key -> shape map (``*_shapes``; ``size='full'`` gives the real shapes without allocating
anything, for "header" tests) and as tiny files written the way the real tools write them (``write_*``):

    from sdhub.testing import families
    families.write_flux(tmp / "flux1-dev.safetensors", "dev", layout="bfl")            # as BFL ships it
    families.write_flux_checkpoint(tmp / "flux1-dev-fp8.safetensors", "dev")             # ComfyUI's all-in-one
    families.write_sd3_checkpoint(tmp / "sd3.5_medium.safetensors", "sd3.5-medium")
    families.write_text_encoder(tmp / "t5xxl_fp8_e4m3fn.safetensors", "t5xxl", dtype=torch.float8_e4m3fn)

Tiny sizes shrink widths and depths but keep every name, so detection must work by structure. The tiny
transformers have configs diffusers accepts (``tiny_flux_config``, ``tiny_sd3_config``): SD3 files in the original
names and FLUX.1 files in diffusers' names load with ``from_single_file(path, config=...)``. FLUX.1 in BFL names
does not, at tiny size: diffusers' converter (``convert_flux_transformer_checkpoint_to_diffusers``, 0.42) fixes
the width at 3072. At full size, that converter (and SD3's) turns the original names given here into exactly
the names and shapes of diffusers' own models (tests/models/test_families.py checks it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from sdhub.testing import ldm_keys, layouts, tiny_configs, writers
from sdhub.testing.components import _quiet_seeded, diffusers_state_dicts

Shapes = dict[str, tuple[int, ...]]
SIZES = ("tiny", "full")

FLUX_VARIANTS = ("dev", "schnell", "fill", "depth", "canny")
#: FLUX.1 latent patches: 16 latent channels x 2 x 2 = 64 values per token.
FLUX_PATCH_CHANNELS = 64
#: What ``img_in`` takes per token: plain 64; Fill adds the masked image (64) and the 8x8-packed mask (256);
#: Depth and Canny add the control image's latent (64).
FLUX_IMAGE_INPUT = {"dev": 64, "schnell": 64, "fill": 384, "depth": 128, "canny": 128}
FLUX_LAYOUTS = ("bfl", "comfyui", "diffusers")
SD3_ARCHITECTURES = ("sd3-medium", "sd3.5-medium", "sd3.5-large")
SD3_LAYOUTS = ("original", "comfyui", "diffusers")
TEXT_ENCODERS = ("clip-l", "clip-g", "t5xxl")
UNET_LAYOUTS = ("ldm", "ldm-bare", "diffusers")

TIMESTEP_FEATURES = 256  # sinusoidal timestep (and guidance) features in both MM-DiTs
DIFFUSION_PREFIX = "model.diffusion_model."
COMFY_TEXT_PREFIX = "text_encoders."


# ---- sizes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FluxDims:
    hidden: int  # heads x head_dim
    head_dim: int
    double_blocks: int
    single_blocks: int
    context: int  # T5 width (txt_in's input)
    pooled: int  # CLIP-L width (vector_in's input)


FLUX_FULL = FluxDims(hidden=3072, head_dim=128, double_blocks=19, single_blocks=38, context=4096, pooled=768)
# diffusers needs heads x head_dim = hidden and the rope axes to sum to head_dim (see tiny_flux_config).
FLUX_TINY = FluxDims(hidden=32, head_dim=16, double_blocks=2, single_blocks=2, context=32, pooled=32)


@dataclass(frozen=True)
class SD3Dims:
    depth: int  # joint blocks; the real models are 64 x depth wide
    hidden: int
    head_dim: int
    pos_embed_side: int  # pos_embed_max_size
    dual_attention_blocks: int  # MMDiT-X: the first N x_blocks also have attn2
    qk_norm: bool  # RMS norms of q and k (ln_q / ln_k): SD3.5
    context: int = 4096  # T5-XXL width
    pooled: int = 2048  # CLIP-L 768 + CLIP-G 1280 pooled outputs


SD3_FULL = {
    "sd3-medium": SD3Dims(depth=24, hidden=1536, head_dim=64, pos_embed_side=192, dual_attention_blocks=0, qk_norm=False),
    "sd3.5-medium": SD3Dims(depth=24, hidden=1536, head_dim=64, pos_embed_side=384, dual_attention_blocks=13,
                            qk_norm=True),
    "sd3.5-large": SD3Dims(depth=38, hidden=2432, head_dim=64, pos_embed_side=192, dual_attention_blocks=0, qk_norm=True),
}
SD3_TINY = {
    arch: replace(dims, depth=3, hidden=32, head_dim=16, pos_embed_side=8, context=32, pooled=96,
                  dual_attention_blocks=2 if dims.dual_attention_blocks else 0)
    for arch, dims in SD3_FULL.items()
}


@dataclass(frozen=True)
class T5Dims:
    width: int
    heads: int
    head_dim: int
    feed_forward: int
    blocks: int
    vocabulary: int


T5XXL_FULL = T5Dims(width=4096, heads=64, head_dim=64, feed_forward=10240, blocks=24, vocabulary=32128)
T5XXL_TINY = T5Dims(width=32, heads=4, head_dim=8, feed_forward=64, blocks=2, vocabulary=256)
T5_RELATIVE_BUCKETS = 32

CLIP_G_FULL = {"vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
               "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu",
               "projection_dim": 1280, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


# ---- FLUX.1 ---------------------------------------------------------------------------------


def tiny_flux_config(variant: str = "dev") -> dict:
    """``FluxTransformer2DModel`` keyword arguments of the tiny FLUX.1 ``variant`` (a ``config.json``'s content)."""
    return _flux_config(variant, FLUX_TINY)


def flux_config(variant: str = "dev", *, size: str = "tiny") -> dict:
    """``transformer/config.json`` of FLUX.1 ``variant``; ``size='full'`` is BFL's published one."""
    _check(size, SIZES, "size")
    return _flux_config(variant, FLUX_FULL if size == "full" else FLUX_TINY)


def _flux_config(variant: str, dims: FluxDims) -> dict:
    _check(variant, FLUX_VARIANTS, "FLUX.1 variant")
    third = dims.head_dim // 8 * 3  # BFL's rope axes (16, 56, 56) scaled: time axis small, two equal image axes
    return {
        "patch_size": 1, "in_channels": FLUX_IMAGE_INPUT[variant], "out_channels": FLUX_PATCH_CHANNELS,
        "num_layers": dims.double_blocks, "num_single_layers": dims.single_blocks,
        "attention_head_dim": dims.head_dim, "num_attention_heads": dims.hidden // dims.head_dim,
        "joint_attention_dim": dims.context, "pooled_projection_dim": dims.pooled,
        "guidance_embeds": variant != "schnell",
        "axes_dims_rope": (dims.head_dim - 2 * third, third, third) if dims.head_dim != 128 else (16, 56, 56),
    }


def flux_shapes(variant: str = "dev", *, size: str = "tiny", layout: str = "bfl") -> Shapes:
    """The FLUX.1 transformer of ``variant``: 'bfl' (bare original names), 'comfyui' (under
    ``model.diffusion_model.``) or 'diffusers' (``transformer_blocks.N.attn.to_q``...)."""
    _check(variant, FLUX_VARIANTS, "FLUX.1 variant")
    _check(size, SIZES, "size")
    _check(layout, FLUX_LAYOUTS, "layout")
    dims = FLUX_FULL if size == "full" else FLUX_TINY
    if layout == "diffusers":
        return dict(_diffusers_flux_shapes(variant, dims))
    shapes = _flux_bfl_shapes(variant, dims)
    prefix = DIFFUSION_PREFIX if layout == "comfyui" else ""
    return {prefix + name: shape for name, shape in shapes.items()}


def _flux_bfl_shapes(variant: str, d: FluxDims) -> Shapes:
    h, mlp = d.hidden, 4 * d.hidden

    def embedder(name: str, width: int) -> Shapes:
        return {f"{name}.in_layer.weight": (h, width), f"{name}.in_layer.bias": (h,),
                f"{name}.out_layer.weight": (h, h), f"{name}.out_layer.bias": (h,)}

    out: Shapes = {"img_in.weight": (h, FLUX_IMAGE_INPUT[variant]), "img_in.bias": (h,)}
    out.update(embedder("time_in", TIMESTEP_FEATURES))
    out.update(embedder("vector_in", d.pooled))
    if variant != "schnell":  # guidance distillation: dev and the tools built on it
        out.update(embedder("guidance_in", TIMESTEP_FEATURES))
    out.update({"txt_in.weight": (h, d.context), "txt_in.bias": (h,)})
    for n in range(d.double_blocks):
        for stream in ("img", "txt"):
            p = f"double_blocks.{n}.{stream}_"
            out.update({
                p + "mod.lin.weight": (6 * h, h), p + "mod.lin.bias": (6 * h,),
                p + "attn.qkv.weight": (3 * h, h), p + "attn.qkv.bias": (3 * h,),
                p + "attn.norm.query_norm.scale": (d.head_dim,), p + "attn.norm.key_norm.scale": (d.head_dim,),
                p + "attn.proj.weight": (h, h), p + "attn.proj.bias": (h,),
                p + "mlp.0.weight": (mlp, h), p + "mlp.0.bias": (mlp,),
                p + "mlp.2.weight": (h, mlp), p + "mlp.2.bias": (h,),
            })
    for n in range(d.single_blocks):
        p = f"single_blocks.{n}."
        out.update({
            p + "linear1.weight": (3 * h + mlp, h), p + "linear1.bias": (3 * h + mlp,),
            p + "linear2.weight": (h, h + mlp), p + "linear2.bias": (h,),
            p + "norm.query_norm.scale": (d.head_dim,), p + "norm.key_norm.scale": (d.head_dim,),
            p + "modulation.lin.weight": (3 * h, h), p + "modulation.lin.bias": (3 * h,),
        })
    out.update({
        "final_layer.linear.weight": (FLUX_PATCH_CHANNELS, h), "final_layer.linear.bias": (FLUX_PATCH_CHANNELS,),
        "final_layer.adaLN_modulation.1.weight": (2 * h, h), "final_layer.adaLN_modulation.1.bias": (2 * h,),
    })
    return out


@functools.lru_cache(maxsize=None)
def _diffusers_flux_shapes(variant: str, dims: FluxDims) -> Shapes:
    return {k: tuple(v.shape) for k, v in _diffusers_flux(variant, dims, "meta").items()}


def _diffusers_flux(variant: str, dims: FluxDims, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    from diffusers import FluxTransformer2DModel

    with _quiet_seeded(seed, device):
        model = FluxTransformer2DModel(**_flux_config(variant, dims))
    return {k: v.detach() for k, v in model.state_dict().items()}


def flux_redux_shapes(*, size: str = "tiny") -> Shapes:
    """FLUX.1 Redux: the image embedder that maps SigLIP features (1152) into T5's space (4096)."""
    _check(size, SIZES, "size")
    vision, text = (1152, 4096) if size == "full" else (24, FLUX_TINY.context)
    return {"redux_up.weight": (3 * text, vision), "redux_up.bias": (3 * text,),
            "redux_down.weight": (text, 3 * text), "redux_down.bias": (text,)}


def flux_checkpoint_shapes(variant: str = "dev", *, size: str = "tiny") -> Shapes:
    """ComfyUI's all-in-one FLUX.1 checkpoint: transformer, CLIP-L and T5-XXL under ``text_encoders.``, VAE under ``vae.``."""
    out = flux_shapes(variant, size=size, layout="comfyui")
    out.update(_prefixed_shapes(COMFY_TEXT_PREFIX + "clip_l.transformer.", clip_shapes("clip-l", size=size)))
    out.update(_prefixed_shapes(COMFY_TEXT_PREFIX + "t5xxl.transformer.", t5xxl_shapes(size=size)))
    out.update(_prefixed_shapes("vae.", vae16_shapes(size=size)))
    return out


def write_flux(path: str | Path, variant: str = "dev", *, layout: str = "bfl", dtype: torch.dtype = torch.bfloat16,
               seed: int = 0) -> Path:
    """A tiny FLUX.1 diffusion-model file (no text encoders, no VAE) in ``layout``, as BFL, ComfyUI or diffusers
    (``diffusion_pytorch_model.safetensors``) publish it."""
    if layout == "diffusers":
        state = writers.cast_floats(_diffusers_flux(variant, FLUX_TINY, "cpu", seed), dtype)
        return writers.save_tensors(Path(path), state)
    return _write_shapes(Path(path), flux_shapes(variant, layout=layout), dtype, seed)


def write_flux_checkpoint(path: str | Path, variant: str = "dev", *, dtype: torch.dtype = torch.bfloat16,
                          seed: int = 0) -> Path:
    """A tiny all-in-one FLUX.1 checkpoint as ComfyUI's "Save Checkpoint" writes it (Comfy-Org's flux1-dev-fp8)."""
    return _write_shapes(Path(path), flux_checkpoint_shapes(variant), dtype, seed)


def write_flux_redux(path: str | Path, *, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> Path:
    """A tiny ``flux1-redux-dev.safetensors``."""
    return _write_shapes(Path(path), flux_redux_shapes(), dtype, seed)


# ---- SD3 / SD3.5 ----------------------------------------------------------------------------


def sd3_shapes(arch: str = "sd3-medium", *, size: str = "tiny", layout: str = "original") -> Shapes:
    """The MM-DiT of ``arch``: 'original' (bare ``joint_blocks.N...`` names), 'comfyui' (under
    ``model.diffusion_model.``, as Stability's single files hold it) or 'diffusers'."""
    _check(arch, SD3_ARCHITECTURES, "SD3 architecture")
    _check(size, SIZES, "size")
    _check(layout, SD3_LAYOUTS, "layout")
    dims = (SD3_FULL if size == "full" else SD3_TINY)[arch]
    if layout == "diffusers":
        return dict(_diffusers_sd3_shapes(dims))
    prefix = DIFFUSION_PREFIX if layout == "comfyui" else ""
    return {prefix + name: shape for name, shape in _sd3_original_shapes(dims).items()}


def _sd3_original_shapes(d: SD3Dims) -> Shapes:
    h, mlp, patch_out = d.hidden, 4 * d.hidden, 2 * 2 * 16

    def mlp_embedder(name: str, width: int) -> Shapes:
        return {f"{name}.mlp.0.weight": (h, width), f"{name}.mlp.0.bias": (h,),
                f"{name}.mlp.2.weight": (h, h), f"{name}.mlp.2.bias": (h,)}

    def attention(p: str, with_proj: bool) -> Shapes:
        out: Shapes = {p + "qkv.weight": (3 * h, h), p + "qkv.bias": (3 * h,)}
        if with_proj:
            out.update({p + "proj.weight": (h, h), p + "proj.bias": (h,)})
        if d.qk_norm:
            out.update({p + "ln_q.weight": (d.head_dim,), p + "ln_k.weight": (d.head_dim,)})
        return out

    out: Shapes = {
        "pos_embed": (1, d.pos_embed_side ** 2, h),
        "x_embedder.proj.weight": (h, 16, 2, 2), "x_embedder.proj.bias": (h,),
        **mlp_embedder("t_embedder", TIMESTEP_FEATURES), **mlp_embedder("y_embedder", d.pooled),
        "context_embedder.weight": (h, d.context), "context_embedder.bias": (h,),
    }
    for n in range(d.depth):
        last = n == d.depth - 1  # the last context block only feeds attention: no output projection, no MLP
        for block in ("context_block", "x_block"):
            p = f"joint_blocks.{n}.{block}."
            dual = block == "x_block" and n < d.dual_attention_blocks
            chunks = 2 if (last and block == "context_block") else (9 if dual else 6)
            out.update({p + "adaLN_modulation.1.weight": (chunks * h, h), p + "adaLN_modulation.1.bias": (chunks * h,)})
            pre_only = last and block == "context_block"
            out.update(attention(p + "attn.", with_proj=not pre_only))
            if dual:
                out.update(attention(p + "attn2.", with_proj=True))
            if not pre_only:
                out.update({p + "mlp.fc1.weight": (mlp, h), p + "mlp.fc1.bias": (mlp,),
                            p + "mlp.fc2.weight": (h, mlp), p + "mlp.fc2.bias": (h,)})
    out.update({
        "final_layer.linear.weight": (patch_out, h), "final_layer.linear.bias": (patch_out,),
        "final_layer.adaLN_modulation.1.weight": (2 * h, h), "final_layer.adaLN_modulation.1.bias": (2 * h,),
    })
    return out


def tiny_sd3_config(arch: str = "sd3-medium") -> dict:
    """``SD3Transformer2DModel`` keyword arguments of the tiny ``arch``."""
    _check(arch, SD3_ARCHITECTURES, "SD3 architecture")
    return _sd3_config(SD3_TINY[arch])


def sd3_config(arch: str = "sd3-medium", *, size: str = "tiny") -> dict:
    """``transformer/config.json`` of ``arch``; ``size='full'`` is Stability's published one."""
    _check(arch, SD3_ARCHITECTURES, "SD3 architecture")
    _check(size, SIZES, "size")
    return _sd3_config((SD3_FULL if size == "full" else SD3_TINY)[arch])


def _sd3_config(d: SD3Dims) -> dict:
    return {
        "sample_size": min(128, d.pos_embed_side), "patch_size": 2, "in_channels": 16, "out_channels": 16,
        "num_layers": d.depth, "attention_head_dim": d.head_dim, "num_attention_heads": d.hidden // d.head_dim,
        "joint_attention_dim": d.context, "caption_projection_dim": d.hidden, "pooled_projection_dim": d.pooled,
        "pos_embed_max_size": d.pos_embed_side, "dual_attention_layers": tuple(range(d.dual_attention_blocks)),
        "qk_norm": "rms_norm" if d.qk_norm else None,
    }


@functools.lru_cache(maxsize=None)
def _diffusers_sd3_shapes(d: SD3Dims) -> Shapes:
    return {k: tuple(v.shape) for k, v in _diffusers_sd3(d, "meta").items()}


def _diffusers_sd3(d: SD3Dims, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    from diffusers import SD3Transformer2DModel

    with _quiet_seeded(seed, device):
        model = SD3Transformer2DModel(**_sd3_config(d))
    return {k: v.detach() for k, v in model.state_dict().items()}


def sd3_checkpoint_shapes(arch: str = "sd3-medium", *, size: str = "tiny", t5: bool = True) -> Shapes:
    """Stability's single file (``sd3_medium_incl_clips_t5xxlfp16.safetensors``): MM-DiT under
    ``model.diffusion_model.``, CLIP-L, CLIP-G (and T5-XXL) under ``text_encoders.``, VAE under ``first_stage_model.``."""
    out = sd3_shapes(arch, size=size, layout="comfyui")
    out.update(_prefixed_shapes(COMFY_TEXT_PREFIX + "clip_g.transformer.", clip_shapes("clip-g", size=size)))
    out.update(_prefixed_shapes(COMFY_TEXT_PREFIX + "clip_l.transformer.", clip_shapes("clip-l", size=size)))
    if t5:
        out.update(_prefixed_shapes(COMFY_TEXT_PREFIX + "t5xxl.transformer.", t5xxl_shapes(size=size)))
    out.update(_prefixed_shapes("first_stage_model.", vae16_shapes(size=size)))
    return out


def write_sd3(path: str | Path, arch: str = "sd3-medium", *, layout: str = "comfyui",
              dtype: torch.dtype = torch.float16, seed: int = 0) -> Path:
    """A tiny SD3/SD3.5 diffusion-model file (MM-DiT only) in ``layout``."""
    if layout == "diffusers":
        _check(arch, SD3_ARCHITECTURES, "SD3 architecture")
        state = writers.cast_floats(_diffusers_sd3(SD3_TINY[arch], "cpu", seed), dtype)
        return writers.save_tensors(Path(path), state)
    return _write_shapes(Path(path), sd3_shapes(arch, layout=layout), dtype, seed)


def write_sd3_checkpoint(path: str | Path, arch: str = "sd3-medium", *, t5: bool = True,
                         dtype: torch.dtype = torch.float16, seed: int = 0) -> Path:
    """A tiny SD3/SD3.5 single-file checkpoint with its text encoders and 16-channel VAE."""
    return _write_shapes(Path(path), sd3_checkpoint_shapes(arch, t5=t5), dtype, seed)


# ---- UNets alone ----------------------------------------------------------------------------


#: The real SDXL UNets (``unet/config.json`` of stabilityai's base and refiner repositories).
SDXL_UNET_FULL = {
    "sdxl": {
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [320, 640, 1280], "transformer_layers_per_block": [1, 2, 10],
        "attention_head_dim": [5, 10, 20], "cross_attention_dim": 2048, "projection_class_embeddings_input_dim": 2816,
    },
    "sdxl-refiner": {
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [384, 768, 1536, 1536], "transformer_layers_per_block": 4,
        "attention_head_dim": [6, 12, 24, 24], "cross_attention_dim": 1280, "projection_class_embeddings_input_dim": 2560,
    },
}


def unet_shapes(arch: str = "sdxl", *, layout: str = "ldm", size: str = "tiny") -> Shapes:
    """An SD1/SD2/SDXL UNet alone: 'ldm' (under ``model.diffusion_model.``), 'ldm-bare' (``input_blocks...``)
    or 'diffusers' (``down_blocks...``, as ``unet/diffusion_pytorch_model.safetensors``). ``size='full'``
    exists for sd1, sdxl and sdxl-refiner."""
    return dict(_unet_shapes(arch, layout, size))


@functools.lru_cache(maxsize=None)
def _unet_shapes(arch: str, layout: str, size: str) -> Shapes:
    if layout != "diffusers":  # the same tensors under other names: rename the cached diffusers map
        diffusers_shapes = _unet_shapes(arch, "diffusers", size)
        names = ldm_keys.unet_key_map(list(diffusers_shapes), 2)
        prefix = "" if layout == "ldm-bare" else layouts.UNET_PREFIX
        return {prefix + names[k]: shape for k, shape in diffusers_shapes.items()}
    return {k: tuple(v.shape) for k, v in _unet_state(arch, layout, size=size).items()}


def _unet_state(arch: str, layout: str, seed: int = 0, size: str = "tiny") -> dict[str, torch.Tensor]:
    _check(layout, UNET_LAYOUTS, "layout")
    _check(size, SIZES, "size")
    if size == "full" and arch in SDXL_UNET_FULL:
        diffusers_unet = _full_sdxl_unet(arch)
    else:
        diffusers_unet = diffusers_state_dicts(arch, size, seed)["unet"]
    if layout == "diffusers":
        return diffusers_unet
    unet = {layouts.UNET_PREFIX + k: v for k, v in ldm_keys.unet_to_ldm(diffusers_unet, 2).items()}
    return {k.removeprefix(layouts.UNET_PREFIX): v for k, v in unet.items()} if layout == "ldm-bare" else unet


def _full_sdxl_unet(arch: str) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DConditionModel

    config = {"in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 128,
              "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
              **SDXL_UNET_FULL[arch]}
    with _quiet_seeded(0, "meta"):
        return dict(UNet2DConditionModel(**config).state_dict())


def write_unet(path: str | Path, arch: str = "sdxl", *, layout: str = "ldm", dtype: torch.dtype = torch.float16,
               seed: int = 0) -> Path:
    """A tiny UNet-only file (kind diffusion-model) of ``arch`` ('sd1', 'sd2', 'sdxl', 'sdxl-refiner'...)."""
    return writers.save_tensors(Path(path), writers.cast_floats(_unet_state(arch, layout, seed), dtype))


# ---- text encoders --------------------------------------------------------------------------


def clip_shapes(which: str = "clip-l", *, size: str = "tiny", layout: str = "transformers") -> Shapes:
    """CLIP-L (ViT-L/14, 768 wide) or CLIP-G (ViT-bigG/14, 1280 wide) text tower: 'transformers' names
    (``text_model.encoder.layers.N...``; CLIP-G with ``text_projection.weight``) or 'openclip' (CLIP-G only:
    ``transformer.resblocks.N...``)."""
    return dict(_clip_shapes(which, size, layout))


@functools.lru_cache(maxsize=None)
def _clip_shapes(which: str, size: str, layout: str) -> Shapes:
    return {k: tuple(v.shape) for k, v in _clip_state(which, size, layout, "meta").items()}


def _clip_state(which: str, size: str, layout: str, device: str, seed: int = 0, *, projection: bool = False
                ) -> dict[str, torch.Tensor]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    _check(which, ("clip-l", "clip-g"), "CLIP text encoder")
    _check(size, SIZES, "size")
    _check(layout, ("transformers", "openclip"), "layout")
    if layout == "openclip" and which != "clip-g":
        raise ValueError("only CLIP-G is published in OpenCLIP's layout")
    if which == "clip-l":
        config = tiny_configs.clip_text_config(tiny_configs.SD1_TEXT_WIDTH, size=size)
        model_class = CLIPTextModelWithProjection if projection else CLIPTextModel
    else:
        config = CLIP_G_FULL if size == "full" else tiny_configs.clip_text_config(
            tiny_configs.SDXL_CLIP_G_WIDTH, act="gelu")
        model_class = CLIPTextModelWithProjection
    with _quiet_seeded(seed, device):
        state = {k: v.detach() for k, v in model_class(CLIPTextConfig(**config)).state_dict().items()}
    if layout == "openclip":
        return ldm_keys.clip_to_openclip(state) if device != "meta" else _openclip_meta(state)
    return _transformers_layout(state)


def _transformers_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Names as the published files have them: ``text_model.`` (which transformers 5 drops) except for
    CLIP-G's ``text_projection.weight``, plus the int64 position ids."""
    out = {(k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k): v for k, v in state.items()}
    out["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64).unsqueeze(0)
    return out


def _openclip_meta(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clip_to_openclip concatenates q/k/v, which meta tensors allow; only logit_scale is made on the CPU.
    out = ldm_keys.clip_to_openclip(state)
    return {k: (torch.empty(v.shape, device="meta") if not v.is_meta else v) for k, v in out.items()}


def t5xxl_shapes(*, size: str = "tiny") -> Shapes:
    """The T5 v1.1 XXL encoder as SD3 and FLUX.1 use it (``t5xxl_fp16.safetensors``): gated-GELU feed-forward
    (``wi_0``/``wi_1``), relative position buckets in block 0 only, ``shared.weight`` the token embedding."""
    _check(size, SIZES, "size")
    d = T5XXL_FULL if size == "full" else T5XXL_TINY
    inner = d.heads * d.head_dim
    out: Shapes = {}
    for n in range(d.blocks):
        p = f"encoder.block.{n}.layer."
        out.update({p + f"0.SelfAttention.{x}.weight": (inner, d.width) for x in "qkv"})
        out[p + "0.SelfAttention.o.weight"] = (d.width, inner)
        if n == 0:
            out[p + "0.SelfAttention.relative_attention_bias.weight"] = (T5_RELATIVE_BUCKETS, d.heads)
        out[p + "0.layer_norm.weight"] = (d.width,)
        out[p + "1.DenseReluDense.wi_0.weight"] = (d.feed_forward, d.width)
        out[p + "1.DenseReluDense.wi_1.weight"] = (d.feed_forward, d.width)
        out[p + "1.DenseReluDense.wo.weight"] = (d.width, d.feed_forward)
        out[p + "1.layer_norm.weight"] = (d.width,)
    out["encoder.final_layer_norm.weight"] = (d.width,)
    out["shared.weight"] = (d.vocabulary, d.width)
    return out


def text_encoder_shapes(which: str = "clip-l", *, size: str = "tiny", layout: str = "transformers") -> Shapes:
    """Any of ``TEXT_ENCODERS`` as a standalone file holds it (ComfyUI's ``clip_l``/``clip_g``/``t5xxl_fp16``)."""
    _check(which, TEXT_ENCODERS, "text encoder")
    return t5xxl_shapes(size=size) if which == "t5xxl" else clip_shapes(which, size=size, layout=layout)


def write_text_encoder(path: str | Path, which: str = "clip-l", *, layout: str = "transformers",
                       dtype: torch.dtype = torch.float16, seed: int = 0) -> Path:
    """A tiny standalone text encoder; ``dtype=torch.float8_e4m3fn`` for T5 is ComfyUI's ``t5xxl_fp8_e4m3fn``
    (1-D norm weights stay 16 bit, as in that file)."""
    _check(which, TEXT_ENCODERS, "text encoder")
    if which == "t5xxl":
        return _write_shapes(Path(path), t5xxl_shapes(), dtype, seed)
    state = _clip_state(which, "tiny", layout, "cpu", seed)
    return writers.save_tensors(Path(path), _cast(state, dtype))


# ---- 16-channel VAE -------------------------------------------------------------------------


def vae16_shapes(*, size: str = "tiny", layout: str = "ldm") -> Shapes:
    """The 16-channel VAE of SD3 and FLUX.1 (``ae.safetensors``): LDM names without quant convs, or diffusers'."""
    return dict(_vae16_shapes(size, layout))


@functools.lru_cache(maxsize=None)
def _vae16_shapes(size: str, layout: str) -> Shapes:
    return {k: tuple(v.shape) for k, v in _vae16_state(size, layout, "meta").items()}


def _vae16_state(size: str, layout: str, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    from diffusers import AutoencoderKL

    _check(size, SIZES, "size")
    _check(layout, ("ldm", "diffusers"), "layout")
    config = tiny_configs.vae_config("sd1", size)
    config.update(latent_channels=16, use_quant_conv=False, use_post_quant_conv=False, scaling_factor=1.5305,
                  shift_factor=0.0609)
    with _quiet_seeded(seed, device):
        state = {k: v.detach() for k, v in AutoencoderKL(**config).state_dict().items()}
    if layout == "diffusers":
        return state
    if device == "meta":
        names = ldm_keys.ldm_vae_names(state)
        return {names[k]: torch.empty(ldm_keys.ldm_vae_shape(names[k], tuple(v.shape)), device="meta")
                for k, v in state.items()}
    return ldm_keys.vae_to_ldm(state)


def write_vae16(path: str | Path, *, layout: str = "ldm", dtype: torch.dtype = torch.float32, seed: int = 0) -> Path:
    """A tiny 16-channel (SD3 / FLUX.1) VAE."""
    return writers.save_tensors(Path(path), writers.cast_floats(_vae16_state("tiny", layout, "cpu", seed), dtype))


# ---- diffusers pipeline folders --------------------------------------------------------------

_FLUX_PIPELINES = {"fill": "FluxFillPipeline", "depth": "FluxControlPipeline", "canny": "FluxControlPipeline"}


def write_transformer_pipeline(folder: str | Path, model: str = "flux1-dev", *, seed: int = 0) -> Path:
    """A tiny FLUX.1 ('flux1-dev', 'flux1-schnell', 'flux1-fill'...) or SD3 ('sd3-medium', 'sd3.5-large'...)
    pipeline folder as ``save_pretrained`` writes it: ``model_index.json`` and each component's config and
    weights (tokenizers left out). FLUX.1 keeps T5 in ``text_encoder_2``, SD3 in ``text_encoder_3``."""
    folder = Path(folder)
    flux = model.startswith("flux1-")
    parts: dict[str, tuple[str, str, dict, dict[str, torch.Tensor]]] = {}  # folder -> library, class, config, weights
    if flux:
        variant = model.removeprefix("flux1-")
        pipeline = _FLUX_PIPELINES.get(variant, "FluxPipeline")
        parts["transformer"] = ("diffusers", "FluxTransformer2DModel", tiny_flux_config(variant),
                                _diffusers_flux(variant, FLUX_TINY, "cpu", seed))
        encoders = {"text_encoder": ("CLIPTextModel", "clip-l"), "text_encoder_2": ("T5EncoderModel", "t5xxl")}
    else:
        _check(model, SD3_ARCHITECTURES, "model")
        pipeline = "StableDiffusion3Pipeline"
        parts["transformer"] = ("diffusers", "SD3Transformer2DModel", tiny_sd3_config(model),
                                _diffusers_sd3(SD3_TINY[model], "cpu", seed))
        encoders = {"text_encoder": ("CLIPTextModelWithProjection", "clip-l"),
                    "text_encoder_2": ("CLIPTextModelWithProjection", "clip-g"),
                    "text_encoder_3": ("T5EncoderModel", "t5xxl")}
    vae_config = {**tiny_configs.vae_config("sd1"), "latent_channels": 16, "use_quant_conv": False,
                  "use_post_quant_conv": False}
    parts["vae"] = ("diffusers", "AutoencoderKL", vae_config, _vae16_state("tiny", "diffusers", "cpu", seed))
    for name, (model_class, which) in encoders.items():
        if which == "t5xxl":
            d = T5XXL_TINY
            config = {"d_model": d.width, "num_heads": d.heads, "d_kv": d.head_dim, "d_ff": d.feed_forward,
                      "num_layers": d.blocks, "vocab_size": d.vocabulary, "feed_forward_proj": "gated-gelu"}
            weights = {k: torch.empty(v, device="meta") for k, v in t5xxl_shapes().items()}
        else:
            config = tiny_configs.clip_text_config(
                tiny_configs.SD1_TEXT_WIDTH if which == "clip-l" else tiny_configs.SDXL_CLIP_G_WIDTH)
            weights = _clip_state(which, "tiny", "transformers", "cpu", seed,
                                  projection=model_class.endswith("WithProjection"))
        parts[name] = ("transformers", model_class, config, weights)
    index = {"_class_name": pipeline, "_diffusers_version": "0.30.0",
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             **{name: [library, model_class] for name, (library, model_class, _, _) in parts.items()}}
    _write_json(folder / "model_index.json", index)
    _write_json(folder / "scheduler" / "scheduler_config.json",
                {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0})
    for name, (library, model_class, config, weights) in parts.items():
        _write_json(folder / name / "config.json", {"_class_name": model_class, **config} if library == "diffusers"
                    else {"architectures": [model_class], **config})
        weight_name = "diffusion_pytorch_model.safetensors" if library == "diffusers" else "model.safetensors"
        state = writers.materialize(weights, torch.float32, seed)
        writers.save_tensors(folder / name / weight_name, writers.cast_floats(state, torch.bfloat16))
    return folder


def _write_json(path: Path, value: dict) -> Path:
    import json

    text = json.dumps(value, indent=2, default=list)
    return writers.write_atomically(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


# ---- writing --------------------------------------------------------------------------------


def _prefixed_shapes(prefix: str, shapes: Shapes) -> Shapes:
    return {prefix + k: v for k, v in shapes.items()}


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floats to ``dtype``; for fp8, 1-D tensors (norms, biases) stay fp16 as fp8 releases keep them."""
    eight_bit = dtype.itemsize == 1
    return {k: (v.to(torch.float16 if eight_bit and v.dim() < 2 else dtype) if v.is_floating_point() else v)
            .contiguous() for k, v in state.items()}


def _write_shapes(path: Path, shapes: Shapes, dtype: torch.dtype, seed: int) -> Path:
    meta = {name: (torch.arange(shape[-1]).expand(shape).contiguous() if name.endswith("position_ids")
                   else torch.empty(shape, device="meta")) for name, shape in shapes.items()}
    state = writers.materialize(meta, torch.float32, seed)
    return writers.save_tensors(path, _cast(state, dtype))
