"""A1111's samplers under their A1111 names, with k-diffusion's sigma schedules and update rules.

The model side is a *denoiser*: ``denoise(x, sigma) -> denoised`` for the k-diffusion samplers
(Euler, Euler a, DPM++ 2M, DPM++ SDE, Heun) and ``eps(x, t) -> eps`` for DDIM, which A1111 runs on
integer timesteps. Sigmas come from the model's ``alphas_cumprod`` exactly as k-diffusion's
``CompVisDenoiser`` derives them (optionally from the fp16-rounded table older A1111 used).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from sdhub.errors import UsageError

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int], None]
NoiseFn = Callable[[], torch.Tensor]


def scaled_linear_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085,
                                 beta_end: float = 0.012) -> torch.Tensor:
    """The SD training schedule's ᾱ (float32), computed in float64 as LDM does."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


class ModelSchedule:
    """k-diffusion's discrete schedule: the model's sigmas and the σ↔t maps between them."""

    def __init__(self, alphas_cumprod: torch.Tensor, *, downcast: bool = False) -> None:
        alphas = alphas_cumprod.detach().to("cpu", torch.float32)
        if downcast:
            # Pre-1.7 A1111 ran the model in half precision, alphas_cumprod buffer included, and
            # k-diffusion derived its sigmas from that half tensor (in half arithmetic).
            alphas = alphas.half()
        self.alphas_cumprod = alphas
        self.sigmas = ((1 - alphas) / alphas) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        low_index = t.floor().long()
        high_index = t.ceil().long()
        weight = t.frac()
        log_sigma = (1 - weight) * self.log_sigmas[low_index] + weight * self.log_sigmas[high_index]
        return log_sigma.exp()

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        log_sigma = sigma.log()
        log_sigmas = self.log_sigmas.to(sigma.device)
        distances = log_sigma - log_sigmas[:, None]
        low_index = distances.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=log_sigmas.shape[0] - 2)
        high_index = low_index + 1
        low, high = log_sigmas[low_index], log_sigmas[high_index]
        weight = ((low - log_sigma) / (low - high)).clamp(0, 1)
        t = (1 - weight) * low_index + weight * high_index
        return t.view(sigma.shape)


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def uniform_sigmas(schedule: ModelSchedule, steps: int) -> torch.Tensor:
    """A1111's "Automatic" schedule: t = linspace(999, 0, n) mapped to sigmas, then 0."""
    t = torch.linspace(len(schedule.sigmas) - 1, 0, steps)
    return append_zero(schedule.t_to_sigma(t))


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) schedule with ρ = 7, then 0 (k-diffusion ``get_sigmas_karras``)."""
    ramp = torch.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def ddim_timesteps(steps: int) -> torch.Tensor:
    """A1111's DDIM timesteps: every ``1000 // steps``-th step, offset by one (uniform discretisation)."""
    return torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)


def _to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    return (x - denoised) / sigma


def _ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    if not eta:
        return sigma_to, torch.zeros_like(sigma_to)
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def sample_euler(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, step: StepCallback,
                 noise: NoiseFn | None = None) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        x = x + _to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
        step(i)
    return x


def sample_euler_ancestral(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, step: StepCallback,
                           noise: NoiseFn | None = None) -> torch.Tensor:
    assert noise is not None
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1])
        x = x + _to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise().to(x) * sigma_up
        step(i)
    return x


def sample_heun(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, step: StepCallback,
                noise: NoiseFn | None = None) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        d = _to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = _to_d(x_2, sigmas[i + 1], denoise(x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
        step(i)
    return x


def _sigma_fn(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def _t_fn(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


def sample_dpmpp_2m(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, step: StepCallback,
                    noise: NoiseFn | None = None) -> torch.Tensor:
    # Kept in k-diffusion's exact arithmetic (sigmas round-tripped through t = -log σ) for identical numbers.
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            h_last = t - _t_fn(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
        step(i)
    return x


class BrownianNoise:
    """k-diffusion's Brownian-tree noise sampler seeded per image, A1111's batch-deterministic way.

    torchsde draws its normals through ``_randn``; A1111 routes those through its own seeded source
    (CPU, GPU or NV), which ``randn`` reproduces here while the trees are in use.
    """

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor,
                 seeds: Sequence[int], randn: Callable[[int, Sequence[int]], torch.Tensor]) -> None:
        import torchsde

        self._randn = randn
        self._t0, self._t1 = (sigma_min, sigma_max) if sigma_min < sigma_max else (sigma_max, sigma_min)
        self._sign = 1 if sigma_min < sigma_max else -1
        with self._patched_randn():
            self._trees = [torchsde.BrownianTree(self._t0, torch.zeros_like(x[0]), self._t1, entropy=seed)
                           for seed in seeds]

    @contextmanager
    def _patched_randn(self) -> Iterator[None]:
        from torchsde._brownian import brownian_interval

        original = brownian_interval._randn
        brownian_interval._randn = lambda size, dtype, device, seed: self._randn(seed, size).to(device, dtype)
        try:
            with warnings.catch_warnings():
                # torchsde compares float32 sigmas with its float endpoints and warns about the rounding
                warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
                yield
        finally:
            brownian_interval._randn = original

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        t0, t1 = (sigma, sigma_next) if sigma < sigma_next else (sigma_next, sigma)
        sign = 1 if sigma < sigma_next else -1
        with self._patched_randn():
            w = torch.stack([tree(t0, t1) for tree in self._trees]) * (self._sign * sign)
        return w / (sigma_next - sigma).abs().sqrt()


def sample_dpmpp_sde(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor, step: StepCallback,
                     noise: NoiseFn | None = None, *, brownian: BrownianNoise | None = None,
                     eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5) -> torch.Tensor:
    assert brownian is not None
    sigma_fn, t_fn = _sigma_fn, _t_fn

    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = x + _to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
            h = t_next - t
            s = t + h * r
            fac = 1 / (2 * r)
            sd, su = _ancestral_step(sigma_fn(t), sigma_fn(s), eta)
            s_ = t_fn(sd)
            x_2 = (sigma_fn(s_) / sigma_fn(t)) * x - (t - s_).expm1() * denoised
            x_2 = x_2 + brownian(sigma_fn(t), sigma_fn(s)).to(x) * s_noise * su
            denoised_2 = denoise(x_2, sigma_fn(s))
            sd, su = _ancestral_step(sigma_fn(t), sigma_fn(t_next), eta)
            t_next_ = t_fn(sd)
            denoised_d = (1 - fac) * denoised + fac * denoised_2
            x = (sigma_fn(t_next_) / sigma_fn(t)) * x - (t - t_next_).expm1() * denoised_d
            x = x + brownian(sigma_fn(t), sigma_fn(t_next)).to(x) * s_noise * su
        step(i)
    return x


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


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler: its label, schedule, algorithm and whether ENSD applies to it."""

    label: str
    algorithm: str  # euler | euler_a | heun | dpmpp_2m | dpmpp_sde | ddim
    schedule: str = "automatic"  # automatic | karras
    uses_ensd: bool = False
    stochastic: bool = False

    @property
    def infotext_name(self) -> str:
        """The name older A1111 writes in infotext (``DPM++ 2M Karras``)."""
        return self.label

    def model_evaluations(self, steps: int) -> int:
        """How many steps the progress bar counts."""
        return len(ddim_timesteps(steps)) - 1 if self.algorithm == "ddim" else steps


_SAMPLERS = [
    SamplerSpec("Euler", "euler"),
    SamplerSpec("Euler a", "euler_a", uses_ensd=True, stochastic=True),
    SamplerSpec("Heun", "heun"),
    SamplerSpec("DPM++ 2M", "dpmpp_2m"),
    SamplerSpec("DPM++ 2M Karras", "dpmpp_2m", "karras"),
    SamplerSpec("DPM++ SDE", "dpmpp_sde", stochastic=True),
    SamplerSpec("DPM++ SDE Karras", "dpmpp_sde", "karras", stochastic=True),
    SamplerSpec("Euler Karras", "euler", "karras"),
    SamplerSpec("Heun Karras", "heun", "karras"),
    SamplerSpec("DDIM", "ddim"),
]
SAMPLERS: dict[str, SamplerSpec] = {spec.label: spec for spec in _SAMPLERS}

#: Old API aliases A1111 accepts (``k_euler_a``) for the samplers above.
_ALIASES = {
    "k_euler": "Euler", "k_euler_a": "Euler a", "k_heun": "Heun", "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_2m_ka": "DPM++ 2M Karras", "k_dpmpp_sde": "DPM++ SDE", "k_dpmpp_sde_ka": "DPM++ SDE Karras",
    "ddim": "DDIM", "euler_a": "Euler a", "euler": "Euler",
}

_ALGORITHMS = {
    "euler": sample_euler,
    "euler_a": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_sde": sample_dpmpp_sde,
}


def resolve_sampler(name: str, schedule_type: str | None = None) -> SamplerSpec:
    """The sampler A1111 calls ``name`` (case-insensitive, aliases, or name + ``Schedule type``)."""
    wanted = name.strip()
    by_lower = {label.lower(): label for label in SAMPLERS}
    label = by_lower.get(wanted.lower()) or _ALIASES.get(wanted.lower())
    if label is None:
        raise UsageError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    if schedule_type and schedule_type.lower() == "karras" and not label.endswith("Karras"):
        karras = f"{label} Karras"
        if karras not in SAMPLERS:
            raise UsageError(f"sampler {label!r} has no Karras variant here")
        label = karras
    elif schedule_type and schedule_type.lower() not in ("automatic", "karras", "uniform"):
        raise UsageError(f"unsupported schedule type {schedule_type!r}; use Automatic or Karras")
    return SAMPLERS[label]


def sigmas_for(spec: SamplerSpec, schedule: ModelSchedule, steps: int) -> torch.Tensor:
    """The n+1 sigmas A1111 would sample with for ``spec`` and ``steps`` (k-diffusion samplers)."""
    if steps < 1:
        raise UsageError("steps must be at least 1")
    if spec.schedule == "karras":
        return karras_sigmas(schedule.sigma_min, schedule.sigma_max, steps)
    return uniform_sigmas(schedule, steps)


def run_sampler(spec: SamplerSpec, denoise: Denoise, noise: torch.Tensor, sigmas: torch.Tensor,
                step: StepCallback, *, next_noise: NoiseFn | None = None,
                brownian: BrownianNoise | None = None) -> torch.Tensor:
    """Run a k-diffusion sampler from the initial noise (scaled by σ_max as A1111 does)."""
    x = noise * sigmas[0]
    function = _ALGORITHMS[spec.algorithm]
    if spec.algorithm == "dpmpp_sde":
        return sample_dpmpp_sde(denoise, x, sigmas, step, brownian=brownian)
    return function(denoise, x, sigmas, step, next_noise)
