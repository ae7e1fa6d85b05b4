"""Build the diffusers/transformers models behind the factory's files and return their state dicts."""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Iterator

import torch

from sdhub.testing import tiny_configs


@contextlib.contextmanager
def _quiet_seeded(seed: int, device: str) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        yield


def diffusers_state_dicts(arch: str, size: str = "tiny", seed: int = 0, in_channels: int | None = None
                          ) -> dict[str, dict[str, torch.Tensor]]:
    """Component name ('unet', 'vae', 'text_encoder', 'text_encoder_2') -> that model's state dict.

    Tiny models are real, seeded random initialisations; ``size='full'`` builds them on the 'meta' device
    (shapes only, no memory) for the caller to fill.
    """
    cached = _build(arch, size, seed, in_channels)
    if size == "full":
        return cached
    return {name: {k: v.clone() for k, v in state.items()} for name, state in cached.items()}


@functools.lru_cache(maxsize=8)
def _build(arch: str, size: str, seed: int, in_channels: int | None) -> dict[str, dict[str, torch.Tensor]]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    device = "meta" if size == "full" else "cpu"
    unet_config = tiny_configs.unet_config(arch, size)
    if in_channels is not None:
        unet_config["in_channels"] = in_channels
    with _quiet_seeded(seed, device):
        states = {
            "unet": UNet2DConditionModel(**unet_config).state_dict(),
            "vae": AutoencoderKL(**tiny_configs.vae_config(arch, size)).state_dict(),
        }
        for name, config in tiny_configs.text_encoder_configs(arch, size).items():
            model_class = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
            states[name] = model_class(CLIPTextConfig(**config)).state_dict()
    if device != "meta":
        _give_final_norm_a_real_spread(states, seed)
    return {name: {k: v.detach() for k, v in state.items()} for name, state in states.items()}


def _give_final_norm_a_real_spread(states: dict[str, dict[str, torch.Tensor]], seed: int) -> None:
    """A fresh LayerNorm (weight 1, bias 0) makes every token's output mean exactly 0, which no trained
    CLIP has and which A1111's emphasis renormalisation divides by; give it trained-looking values."""
    generator = torch.Generator().manual_seed(seed + 7919)
    for name, state in states.items():
        if not name.startswith("text_encoder"):
            continue
        for key in ("final_layer_norm.weight", "text_model.final_layer_norm.weight"):
            if key in state:
                weight = state[key]
                state[key] = 1 + 0.1 * torch.randn(weight.shape, generator=generator)
                bias_key = key.replace(".weight", ".bias")
                state[bias_key] = 0.5 * torch.randn(state[bias_key].shape, generator=generator)
