"""A1111's own sigma samplers that k-diffusion lacks: Restart and LCM (with LCM's model schedule).

Restart (Xu et al. 2023) walks Heun steps and, at its restart point, jumps back up in noise a few
times with fresh noise; with 20+ steps A1111 replaces the schedule by a shorter Karras one and
spends the difference on the restarts. LCM jumps to the model's denoised estimate each step and
re-noises it to the next sigma, on a 50-timestep table with LCM's boundary-condition scalings.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from sdhub.generate.kdiffusion import sampling as kdiffusion_sampling
from sdhub.generate.schedules import ModelSchedule, append_zero

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict[str, Any]], None]


def _to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    return (x - denoised) / sigma


def _restart_plan(sigmas: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (from, to) sigma pairs Restart steps through, restart segments included."""
    karras = kdiffusion_sampling().get_sigmas_karras
    steps = sigmas.shape[0] - 1
    restarts: dict[float, tuple[int, int, float]] = {}
    if steps >= 20:
        segment_steps, times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = karras(steps - segment_steps * times, sigmas[-2].item(), sigmas[0].item(), device=sigmas.device)
        restarts = {0.1: (segment_steps + 1, times, 2.0)}
    by_index = {int(torch.argmin(abs(sigmas - at), dim=0)): plan for at, plan in restarts.items()}
    pairs = []
    for i in range(len(sigmas) - 1):
        pairs.append((sigmas[i], sigmas[i + 1]))
        if i + 1 not in by_index:
            continue
        segment_steps, times, restart_to = by_index[i + 1]
        low_index = i + 1
        high_index = int(torch.argmin(abs(sigmas - restart_to), dim=0))
        if high_index < low_index:
            segment = karras(segment_steps, sigmas[low_index].item(), sigmas[high_index].item(),
                             device=sigmas.device)[:-1]
            for _ in range(times):
                pairs.extend(zip(segment[:-1], segment[1:]))
    return pairs


@torch.no_grad()
def restart_sampler(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback,
                    noise: Callable[[], torch.Tensor], s_noise: float = 1.0) -> torch.Tensor:
    """A1111's Restart sampler (``sd_samplers_extra.restart_sampler`` with its automatic restart list)."""
    ones = x.new_ones([x.shape[0]])
    last_sigma = None
    for index, (sigma, sigma_next) in enumerate(_restart_plan(sigmas)):
        if last_sigma is not None and last_sigma < sigma:
            x = x + noise() * s_noise * (sigma ** 2 - last_sigma ** 2) ** 0.5
        denoised = denoise(x, sigma * ones)
        d = _to_d(x, sigma, denoised)
        callback({"x": x, "i": index, "sigma": sigma_next, "sigma_hat": sigma, "denoised": denoised})
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt
        else:
            x_euler = x + d * dt
            d_next = _to_d(x_euler, sigma_next, denoise(x_euler, sigma_next * ones))
            x = x + (d + d_next) / 2 * dt
        last_sigma = sigma_next
    return x


@torch.no_grad()
def sample_lcm(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback,
               noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """A1111's LCM sampler: take the denoised estimate, re-noise it to the next sigma."""
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i] * ones)
        callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise(sigmas[i], sigmas[i + 1])
    return x


class LCMSchedule(ModelSchedule):
    """A1111's ``LCMCompVisDenoiser`` table: every 20th training step (19, 39, ..., 999), with
    timesteps quantised to that grid and LCM's consistency scalings (σ_data 0.5, t × 10)."""

    ORIGINAL_STEPS = 50

    def __init__(self, alphas_cumprod: torch.Tensor, *, downcast: bool = False) -> None:
        full = alphas_cumprod.detach().to("cpu", torch.float32)
        self.skip = len(full) // self.ORIGINAL_STEPS
        picked = torch.stack([full[self.skip - 1 + i * self.skip] for i in range(self.ORIGINAL_STEPS)])
        super().__init__(picked, downcast=downcast)

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        distances = sigma.log() - self.log_sigmas.to(sigma.device)[:, None]
        index = distances.abs().argmin(dim=0).view(sigma.shape)
        return index * self.skip + (self.skip - 1)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        grid = torch.clamp(((t - (self.skip - 1)) / self.skip).float(), min=0, max=len(self.sigmas) - 1)
        return super().t_to_sigma(grid)

    def uniform(self, steps: int) -> torch.Tensor:
        start = self.sigma_to_t(torch.tensor(self.sigma_max))
        end = self.sigma_to_t(torch.tensor(self.sigma_min))
        return append_zero(self.t_to_sigma(torch.linspace(start, end, steps)))

    def boundary_scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LCM's ``(c_skip, c_out)`` for the consistency output ``c_out·x0 + c_skip·x``."""
        sigma_data = 0.5
        scaled = self.sigma_to_t(sigma).float() * 10.0
        c_skip = sigma_data ** 2 / (scaled ** 2 + sigma_data ** 2)
        c_out = scaled / (scaled ** 2 + sigma_data ** 2) ** 0.5
        return c_skip, c_out
