"""Sigma schedules: the model's discrete noise levels and A1111 1.10's "Schedule type"s over them.

``ModelSchedule`` is k-diffusion's ``CompVisDenoiser`` table (sigmas from ``alphas_cumprod`` and
the σ↔t maps); ``schedule_sigmas`` builds the n+1 sigmas a sampler walks for one schedule type.
Karras, Exponential and Polyexponential are k-diffusion's own functions, as in A1111; the others
(Uniform, SGM Uniform, KL Optimal, Align Your Steps, Simple, Normal, DDIM, Beta) are A1111's
``sd_schedulers`` rules, computed here in the same precision (float32 tensors, Beta and Align Your
Steps in float64 NumPy first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sdhub.errors import UsageError
from sdhub.generate.kdiffusion import sampling as kdiffusion_sampling

#: Beta schedule defaults (A1111 options ``beta_dist_alpha``/``beta_dist_beta``).
BETA_ALPHA = 0.6
BETA_BETA = 0.6

#: Align Your Steps' published 10-step sigma lists (NVIDIA's how-to), as A1111 1.10 uses them.
AYS_SD1 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


def scaled_linear_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085,
                                 beta_end: float = 0.012) -> torch.Tensor:
    """The SD training schedule's ᾱ (float32), computed in float64 as LDM does."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


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

    def uniform(self, steps: int) -> torch.Tensor:
        """k-diffusion's ``get_sigmas(n)``: t = linspace(t_max, 0, n) mapped to sigmas, then 0."""
        t = torch.linspace(len(self.sigmas) - 1, 0, steps)
        return append_zero(self.t_to_sigma(t))


@dataclass(frozen=True)
class ScheduleType:
    """One A1111 "Schedule type": its internal name, the label infotexts carry, and its aliases."""

    name: str
    label: str
    aliases: tuple[str, ...] = ()


SCHEDULE_TYPES: dict[str, ScheduleType] = {s.label: s for s in (
    ScheduleType("automatic", "Automatic"),
    ScheduleType("uniform", "Uniform"),
    ScheduleType("karras", "Karras"),
    ScheduleType("exponential", "Exponential"),
    ScheduleType("polyexponential", "Polyexponential"),
    ScheduleType("sgm_uniform", "SGM Uniform", ("SGMUniform",)),
    ScheduleType("kl_optimal", "KL Optimal"),
    ScheduleType("align_your_steps", "Align Your Steps"),
    ScheduleType("simple", "Simple"),
    ScheduleType("normal", "Normal"),
    ScheduleType("ddim", "DDIM"),
    ScheduleType("beta", "Beta"),
)}
_BY_NAME = {s.name: s for s in SCHEDULE_TYPES.values()}


def schedule_names(schedule: ScheduleType) -> tuple[str, ...]:
    """Every spelling A1111 accepts for ``schedule`` (label, internal name, aliases)."""
    return (schedule.label, schedule.name, *schedule.aliases)


def resolve_schedule_type(name: str) -> ScheduleType:
    """The schedule type called ``name`` (label, internal name or alias, any case)."""
    wanted = name.strip().lower()
    for schedule in SCHEDULE_TYPES.values():
        if wanted in (spelling.lower() for spelling in schedule_names(schedule)):
            return schedule
    raise UsageError(f"unknown schedule type {name!r}; choose one of: {', '.join(SCHEDULE_TYPES)}")


def _model_ts(model: ModelSchedule, sigma_min: float, sigma_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    return model.sigma_to_t(torch.tensor(sigma_max)), model.sigma_to_t(torch.tensor(sigma_min))


def _with_zero(values: list[torch.Tensor] | list[float]) -> torch.Tensor:
    return torch.tensor([float(v) for v in values] + [0.0], dtype=torch.float32)


def _sgm_uniform(model: ModelSchedule, steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    start, end = _model_ts(model, sigma_min, sigma_max)
    return _with_zero([model.t_to_sigma(t) for t in torch.linspace(start, end, steps + 1)[:-1]])


def _normal(model: ModelSchedule, steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    start, end = _model_ts(model, sigma_min, sigma_max)
    return _with_zero([model.t_to_sigma(t) for t in torch.linspace(start, end, steps)])


def _kl_optimal(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    # Ends at sigma_min, not 0: the last step stops short of a fully denoised image, as in A1111.
    alpha_min = torch.arctan(torch.tensor(sigma_min))
    alpha_max = torch.arctan(torch.tensor(sigma_max))
    index = torch.arange(steps + 1)
    return torch.tan(index / steps * alpha_min + (1.0 - index / steps) * alpha_max)


def _align_your_steps(steps: int, sdxl: bool) -> torch.Tensor:
    published = list(AYS_SDXL if sdxl else AYS_SD1)
    if steps == len(published):
        return _with_zero(published)
    # log-linear interpolation of the decreasing list onto `steps` points
    known_x = np.linspace(0, 1, len(published))
    known_log = np.log(published[::-1])
    wanted = np.exp(np.interp(np.linspace(0, 1, steps), known_x, known_log))[::-1]
    return _with_zero(list(wanted))


def _simple(model: ModelSchedule, steps: int) -> torch.Tensor:
    stride = len(model.sigmas) / steps
    return _with_zero([model.sigmas[-(1 + int(i * stride))] for i in range(steps)])


def _ddim(model: ModelSchedule, steps: int) -> torch.Tensor:
    # Every stride-th training sigma from index 1; for step counts that do not divide 1000 this
    # gives more sigmas than steps, as A1111's does.
    stride = max(len(model.sigmas) // steps, 1)
    picked = [model.sigmas[index] for index in range(1, len(model.sigmas), stride)]
    return _with_zero(picked[::-1])


def _beta(steps: int, sigma_min: float, sigma_max: float, alpha: float, beta: float) -> torch.Tensor:
    from scipy import stats

    quantiles = [stats.beta.ppf(x, alpha, beta) for x in 1 - np.linspace(0, 1, steps)]
    return _with_zero([sigma_min + q * (sigma_max - sigma_min) for q in quantiles])


def schedule_sigmas(name: str, model: ModelSchedule, steps: int, *, sdxl: bool = False,
                    beta_alpha: float = BETA_ALPHA, beta_beta: float = BETA_BETA) -> torch.Tensor:
    """The sigmas schedule type ``name`` (an internal name: ``karras``, ``sgm_uniform``, ...) gives
    for ``steps`` between the model's sigma_min and sigma_max, ending (except KL Optimal) in 0."""
    if steps < 1:
        raise UsageError("steps must be at least 1")
    sigma_min, sigma_max = model.sigma_min, model.sigma_max
    if name in ("automatic", "uniform"):
        return model.uniform(steps)
    if name in ("karras", "exponential", "polyexponential"):
        function = getattr(kdiffusion_sampling(), f"get_sigmas_{name}")
        return function(steps, sigma_min, sigma_max)
    if name == "sgm_uniform":
        return _sgm_uniform(model, steps, sigma_min, sigma_max)
    if name == "kl_optimal":
        return _kl_optimal(steps, sigma_min, sigma_max)
    if name == "align_your_steps":
        return _align_your_steps(steps, sdxl)
    if name == "simple":
        return _simple(model, steps)
    if name == "normal":
        return _normal(model, steps, sigma_min, sigma_max)
    if name == "ddim":
        return _ddim(model, steps)
    if name == "beta":
        return _beta(steps, sigma_min, sigma_max, beta_alpha, beta_beta)
    raise UsageError(f"unknown schedule type {name!r}; choose one of: {', '.join(SCHEDULE_TYPES)}")


def schedule_by_name(name: str) -> ScheduleType:
    """The schedule type with internal name ``name``."""
    return _BY_NAME[name]
