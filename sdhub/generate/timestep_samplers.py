"""A1111's timestep samplers (DDIM, PLMS): an eps model evaluated on integer training timesteps.

A1111 (``sd_samplers_timesteps``) picks every ``1000 // steps``-th timestep offset by one and walks
them from the top, one model evaluation per timestep but the first; PLMS starts with a Heun-like
pseudo step (two evaluations) and then reuses up to three earlier eps predictions (Adams-Bashforth).
UniPC is handed the same timestep list and walks as many steps as it has (``unipc``).
"""

from __future__ import annotations

from typing import Callable

import torch

from sdhub.errors import UsageError
from sdhub.generate.unipc import UniPCOptions, run_unipc

Eps = Callable[[torch.Tensor, float], torch.Tensor]
StepCallback = Callable[[int], None]
NoiseFn = Callable[[], torch.Tensor]


def ddim_timesteps(steps: int, discard_penultimate: bool = False) -> torch.Tensor:
    """A1111's timesteps: every ``1000 // steps``-th step, offset by one (uniform discretisation)."""
    steps += 1 if discard_penultimate else 0
    return torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)


def _tables(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    return alphas, alphas_prev


def sample_ddim(eps: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, timesteps: torch.Tensor,
                alphas_cumprod: torch.Tensor, step: StepCallback, noise: NoiseFn | None = None,
                eta: float = 0.0) -> torch.Tensor:
    """A1111's DDIM (``sd_samplers_timesteps_impl.ddim``): eps model on integer timesteps."""
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    sigmas = eta * torch.sqrt((1 - alphas_prev) / (1 - alphas.double()) * (1 - alphas.double() / alphas_prev))
    ones = x.new_ones((x.shape[0], 1, 1, 1))
    # A1111 runs len(timesteps) - 1 model evaluations, from the last timestep down to the second.
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = eps(x, int(timesteps[index]))
        a_t = alphas[index].item() * ones
        a_prev = alphas_prev[index].item() * ones
        sigma_t = sigmas[index].item() * ones
        pred_x0 = (x - sqrt_one_minus_alphas[index].item() * ones * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t ** 2).sqrt() * e_t
        x = a_prev.sqrt() * pred_x0 + dir_xt
        if sigmas[index].item():
            assert noise is not None
            x = x + sigma_t * noise().to(x)
        step(i)
    return x


def sample_plms(eps: Eps, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                step: StepCallback) -> torch.Tensor:
    """A1111's PLMS (``sd_samplers_timesteps_impl.plms``): pseudo linear multistep on eps."""
    alphas, alphas_prev = _tables(timesteps, alphas_cumprod)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    ones = x.new_ones((x.shape[0], 1, 1, 1))
    history: list[torch.Tensor] = []

    def move(x_now: torch.Tensor, e_t: torch.Tensor, index: int) -> torch.Tensor:
        a_t = alphas[index].item() * ones
        a_prev = alphas_prev[index].item() * ones
        pred_x0 = (x_now - sqrt_one_minus_alphas[index].item() * ones * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t

    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = eps(x, int(timesteps[index]))
        if not history:
            # first step: average with the eps at the next timestep (improved Euler)
            e_next = eps(move(x, e_t, index), int(timesteps[max(index - 1, 0)]))
            e_prime = (e_t + e_next) / 2
        elif len(history) == 1:
            e_prime = (3 * e_t - history[-1]) / 2
        elif len(history) == 2:
            e_prime = (23 * e_t - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        x = move(x, e_prime, index)
        history = (history + [e_t])[-3:]
        step(i)
    return x


def run_timestep_sampler(function: str, eps: Eps, x: torch.Tensor, steps: int, alphas_cumprod: torch.Tensor,
                         step: StepCallback, *, noise: NoiseFn | None = None, eta: float = 0.0,
                         discard_penultimate: bool = False, unipc: UniPCOptions | None = None) -> torch.Tensor:
    """Run DDIM, PLMS or UniPC from unit noise ``x`` (timestep samplers start from it unscaled)."""
    timesteps = ddim_timesteps(steps, discard_penultimate).to(alphas_cumprod.device)
    if function == "ddim":
        return sample_ddim(eps, x, timesteps, alphas_cumprod, step, noise, eta)
    if function == "plms":
        return sample_plms(eps, x, timesteps, alphas_cumprod, step)
    if function == "unipc":
        return run_unipc(eps, x, len(timesteps), alphas_cumprod, step, unipc or UniPCOptions())
    raise UsageError(f"unknown timestep sampler {function!r}; choose DDIM, PLMS or UniPC")
