"""Assemble single-file checkpoints in the original layouts (LDM for SD1/SD2, SGM for SDXL) from diffusers models."""

from __future__ import annotations

import torch

from sdhub.testing import ldm_keys, tiny_configs
from sdhub.testing.components import diffusers_state_dicts

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
EMA_PREFIX = "model_ema."


def checkpoint_state(arch: str, *, size: str = "tiny", seed: int = 0, in_channels: int | None = None
                     ) -> dict[str, torch.Tensor]:
    """The checkpoint's full state dict (without EMA); full-size tensors are on the 'meta' device."""
    fam = tiny_configs.family(arch)
    parts = diffusers_state_dicts(arch, size, seed, in_channels)
    layers = tiny_configs.unet_config(arch, size)["layers_per_block"]
    # LatentDiffusion's own schedule buffers come first in its state_dict, then its submodules in order.
    state: dict[str, torch.Tensor] = ddpm_buffers() if fam != "sdxl" else {}  # SGM checkpoints carry none
    state.update(_prefixed(UNET_PREFIX, ldm_keys.unet_to_ldm(parts["unet"], layers)))
    state.update(_prefixed(VAE_PREFIX, ldm_keys.vae_to_ldm(parts["vae"])))
    if fam == "sd1":
        state.update(_prefixed("cond_stage_model.transformer.", ldm_keys.clip_to_hf_layout(parts["text_encoder"], 77)))
    elif fam == "sd2":
        state.update(_prefixed("cond_stage_model.model.", ldm_keys.clip_to_openclip(parts["text_encoder"])))
    elif arch == "sdxl-refiner":
        state.update(_prefixed("conditioner.embedders.0.model.", ldm_keys.clip_to_openclip(parts["text_encoder_2"])))
    else:
        state.update(_prefixed("conditioner.embedders.0.transformer.",
                               ldm_keys.clip_to_hf_layout(parts["text_encoder"], 77)))
        state.update(_prefixed("conditioner.embedders.1.model.", ldm_keys.clip_to_openclip(parts["text_encoder_2"])))
    return state


def vae_state(arch: str = "sd1", *, seed: int = 0) -> dict[str, torch.Tensor]:
    """A standalone VAE's state dict: LDM names without the ``first_stage_model.`` prefix."""
    return ldm_keys.vae_to_ldm(diffusers_state_dicts(arch, "tiny", seed)["vae"])


def ema_key(unet_key: str) -> str:
    """LitEma's buffer name for a UNet parameter: ``model_ema.`` + the name relative to ``model`` without dots."""
    return EMA_PREFIX + unet_key.removeprefix("model.").replace(".", "")


def with_ema(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """``state`` with LitEma's entries right after the UNet, where LatentDiffusion's state_dict has them."""
    ema = _ema_entries(state, seed)
    first_after_unet = next(i for i, k in enumerate(state) if k.startswith(VAE_PREFIX))
    items = list(state.items())
    return dict(items[:first_after_unet] + list(ema.items()) + items[first_after_unet:])


def _ema_entries(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """EMA copies of every UNet parameter, deliberately different from the live weights, plus decay/num_updates."""
    generator = torch.Generator().manual_seed(seed + 1)
    # LitEma registers decay and num_updates before one buffer per parameter.
    out: dict[str, torch.Tensor] = {
        EMA_PREFIX + "decay": torch.tensor(0.9999, dtype=torch.float32),
        EMA_PREFIX + "num_updates": torch.tensor(500, dtype=torch.int32),
    }
    for key, tensor in state.items():
        if key.startswith(UNET_PREFIX):
            if tensor.is_meta:
                out[ema_key(key)] = torch.empty_like(tensor)
            else:
                out[ema_key(key)] = tensor + 0.01 * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
    return out


def ddpm_buffers(timesteps: int = 1000, linear_start: float = 0.00085, linear_end: float = 0.012
                 ) -> dict[str, torch.Tensor]:
    """LatentDiffusion's registered schedule buffers for the scaled-linear ("linear" in LDM) schedule."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    buffers = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
    }
    return {name: value.to(torch.float32) for name, value in buffers.items()}


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}
