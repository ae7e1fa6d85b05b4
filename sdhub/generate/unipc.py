"""A1111's UniPC sampler: the unified predictor-corrector (Zhao et al., 2023) on the model's eps.

A1111 1.10 runs UniPC as a timestep sampler (``sd_samplers_timesteps_impl.unipc``): in continuous
time t in (0, 1] over the 1000-step training schedule, log alpha_t interpolated linearly between
t_n = (n + 1) / 1000 where alpha_n^2 = alphas_cumprod[n], and the model asked for eps at the
fractional timestep ``(t - 1/1000) * 1000``. It walks N = ``len(ddim_timesteps(steps))`` steps
(31 for 30 steps: A1111 hands UniPC its DDIM timestep list and UniPC counts it), from t = 1 to
t = 1/1000, one model evaluation per step, in data-prediction form with the options
``uni_pc_variant`` (bh1, bh2, vary_coeff), ``uni_pc_skip_type`` (time_uniform, time_quadratic,
logSNR), ``uni_pc_order`` and ``uni_pc_lower_order_final``.

diffusers' ``UniPCMultistepScheduler`` implements the same bh1/bh2 update but only on integer
timesteps (and has no vary_coeff), so it cannot land on A1111's fractional ones; it serves as the
independent reference for the update rule in the tests instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from sdhub.errors import UsageError

Eps = Callable[[torch.Tensor, float], torch.Tensor]
StepCallback = Callable[[int], None]

VARIANTS = ("bh1", "bh2", "vary_coeff")
SKIP_TYPES = ("time_uniform", "time_quadratic", "logSNR")


@dataclass(frozen=True)
class UniPCOptions:
    """A1111's UniPC settings (and their infotext keys' values), defaults as A1111 1.10 ships them."""

    variant: str = "bh1"
    skip_type: str = "time_uniform"
    order: int = 3
    lower_order_final: bool = True

    def validate(self, steps: int | None = None) -> None:
        """Refuse what A1111 cannot run, with the reason."""
        if self.variant not in VARIANTS:
            raise UsageError(f"unknown UniPC variant {self.variant!r}; choose one of: {', '.join(VARIANTS)}")
        if self.skip_type not in SKIP_TYPES:
            raise UsageError(f"unknown UniPC skip type {self.skip_type!r}; choose one of: {', '.join(SKIP_TYPES)}")
        if not 1 <= self.order <= 50:
            raise UsageError(f"the UniPC order must be between 1 and 50, not {self.order}")
        if steps is not None and steps < self.order:
            raise UsageError(f"UniPC of order {self.order} needs at least {self.order} steps, not {steps} "
                             "(A1111 stops with 'UniPC order must be < sampling steps')")


class DiscreteVPSchedule:
    """The variance-preserving schedule of a discrete model in UniPC's continuous time t in (0, 1]."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        # A1111 takes the log in the buffer's own dtype (half when alphas_cumprod is downcast)
        self.log_alphas = (0.5 * torch.log(alphas_cumprod.detach().cpu())).float()
        self.total = len(self.log_alphas)
        self.times = torch.linspace(0.0, 1.0, self.total + 1)[1:]

    @property
    def t_min(self) -> float:
        return 1.0 / self.total

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return _interpolate(t, self.times, self.log_alphas)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def half_log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """lambda_t = log(alpha_t) - log(sigma_t)."""
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))

    def time_of(self, half_log_snr: torch.Tensor) -> torch.Tensor:
        """The t whose lambda_t is ``half_log_snr``."""
        log_alpha = -0.5 * torch.logaddexp(torch.zeros(1), -2.0 * half_log_snr)
        return _interpolate(log_alpha, self.log_alphas.flip(0), self.times.flip(0))

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """The fractional training timestep the model is evaluated at."""
        return (t - 1.0 / self.total) * 1000.0


def _interpolate(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise linear y(x) through (xs, ys), xs increasing, extended linearly past both ends."""
    x = x.reshape(-1)
    index = (torch.searchsorted(xs, x) - 1).clamp(0, len(xs) - 2)
    x0, x1, y0, y1 = xs[index], xs[index + 1], ys[index], ys[index + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def time_grid(schedule: DiscreteVPSchedule, skip_type: str, steps: int, t_start: float | None = None) -> torch.Tensor:
    """The ``steps + 1`` continuous times UniPC walks, from ``t_start`` (default 1) down to 1/1000."""
    t_end, t_top = schedule.t_min, 1.0 if t_start is None else t_start
    if skip_type == "time_uniform":
        return torch.linspace(t_top, t_end, steps + 1)
    if skip_type == "time_quadratic":
        return torch.linspace(t_top ** 0.5, t_end ** 0.5, steps + 1).pow(2)
    if skip_type == "logSNR":
        top = schedule.half_log_snr(torch.tensor([t_top])).item()
        end = schedule.half_log_snr(torch.tensor([t_end])).item()
        return schedule.time_of(torch.linspace(top, end, steps + 1))
    raise UsageError(f"unknown UniPC skip type {skip_type!r}; choose one of: {', '.join(SKIP_TYPES)}")


class _Solver:
    """One UniPC run: the data-prediction model and the multistep update of the chosen variant."""

    def __init__(self, eps: Eps, schedule: DiscreteVPSchedule, variant: str) -> None:
        self.eps = eps
        self.schedule = schedule
        self.variant = variant

    def data(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 predicted from the model's eps at time ``t`` (a 1-element tensor)."""
        noise = self.eps(x, float(self.schedule.model_time(t)))
        return (x - self.schedule.sigma(t).to(x.device) * noise) / self.schedule.alpha(t).to(x.device)

    def update(self, x: torch.Tensor, history: list[torch.Tensor], times: list[torch.Tensor], t: torch.Tensor,
               order: int, corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Predict x at ``t`` from the last ``order`` data predictions; correct it with the model's at ``t``."""
        ns = self.schedule
        t_last, data_last = times[-1], history[-1]
        lambda_last, lambda_t = ns.half_log_snr(t_last), ns.half_log_snr(t)
        step = lambda_t - lambda_last
        ratios, differences = [], []
        for back in range(1, order):
            ratio = ((ns.half_log_snr(times[-(back + 1)]) - lambda_last) / step)[0]
            ratios.append(ratio)
            differences.append((history[-(back + 1)] - data_last) / ratio)
        ratios.append(1.0)
        ratios_t = torch.tensor(ratios)
        h = -step[0]  # data prediction integrates in -lambda
        phi_1 = torch.expm1(h)
        alpha_t = ns.alpha(t).to(x.device)
        base = (ns.sigma(t) / ns.sigma(t_last)).to(x.device) * x - alpha_t * phi_1 * data_last
        stacked = torch.stack(differences, dim=1) if differences else None
        if self.variant == "vary_coeff":
            return self._vary(base, stacked, ratios_t, h, alpha_t, x, t, data_last, corrector)
        return self._bh(base, stacked, ratios_t, h, phi_1, alpha_t, t, data_last, order, corrector)

    def _bh(self, base: torch.Tensor, stacked: torch.Tensor | None, ratios: torch.Tensor, h: torch.Tensor,
            phi_1: torch.Tensor, alpha_t: torch.Tensor, t: torch.Tensor, data_last: torch.Tensor, order: int,
            corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        scale = h if self.variant == "bh1" else torch.expm1(h)  # B(h)
        powers, targets = [], []
        phi = phi_1 / h - 1
        factorial = 1
        for i in range(1, order + 1):
            powers.append(torch.pow(ratios, i - 1))
            targets.append(phi * factorial / scale)
            factorial *= i + 1
            phi = phi / h - 1 / factorial
        matrix = torch.stack(powers)
        rhs = torch.tensor(targets)
        factor = alpha_t * scale
        x_t = base
        if stacked is not None:
            rhos = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(matrix[:-1, :-1], rhs[:-1])
            x_t = base - factor * torch.einsum("k,bkchw->bchw", rhos.to(stacked), stacked)
        if not corrector:
            return x_t, None
        rhos_c = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(matrix, rhs)
        data_t = self.data(x_t, t)
        residual = 0 if stacked is None else torch.einsum("k,bkchw->bchw", rhos_c[:-1].to(stacked), stacked)
        return base - factor * (residual + rhos_c[-1].item() * (data_t - data_last)), data_t

    def _vary(self, base: torch.Tensor, stacked: torch.Tensor | None, ratios: torch.Tensor, h: torch.Tensor,
              alpha_t: torch.Tensor, x: torch.Tensor, t: torch.Tensor, data_last: torch.Tensor,
              corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        size = len(ratios)
        columns, column = [], torch.ones_like(ratios)
        for k in range(1, size + 1):
            columns.append(column)
            column = column * ratios / (k + 1)
        matrix = torch.stack(columns, dim=1)
        phis, phi, factorial = [], torch.expm1(h), 1
        for k in range(1, size + 2):
            phis.append(phi)
            phi = phi / h - 1 / factorial
            factorial *= k + 1
        x_t = base
        if stacked is not None:
            predictor = torch.linalg.inv(matrix[:-1, :-1])
            for k in range(size - 1):
                x_t = x_t - alpha_t * phis[k + 1] * torch.einsum("bkchw,k->bchw", stacked, predictor[k].to(stacked))
        if not corrector:
            return x_t, None
        inverse = torch.linalg.inv(matrix)
        data_t = self.data(x_t, t)
        x_t = base
        row = max(size - 2, 0)  # the reference applies the last predictor row's weight to the new difference
        for k in range(size - 1):
            x_t = x_t - alpha_t * phis[k + 1] * torch.einsum("bkchw,k->bchw", stacked, inverse[k][:-1].to(stacked))
        return x_t - alpha_t * phis[size] * ((data_t - data_last) * inverse[row][-1].item()), data_t


def sample_unipc(eps: Eps, x: torch.Tensor, times: torch.Tensor, schedule: DiscreteVPSchedule,
                 step: StepCallback, options: UniPCOptions = UniPCOptions()) -> torch.Tensor:
    """Run UniPC multistep from ``x`` at ``times[0]`` to ``times[-1]``; one model evaluation per step.

    ``step(i)`` is called after each of the ``len(times) - 1`` updates.
    """
    steps = len(times) - 1
    options.validate(steps)
    solver = _Solver(eps, schedule, options.variant)
    order = options.order
    t = times[0:1]
    history, seen = [solver.data(x, t)], [t]
    done = 0
    for warmup in range(1, order):  # the first steps at rising order, each corrected
        t = times[warmup:warmup + 1]
        x, data = solver.update(x, history, seen, t, warmup, corrector=True)
        step(done)
        done += 1
        history.append(data)
        seen.append(t)
    for index in range(order, steps + 1):
        t = times[index:index + 1]
        step_order = min(order, steps + 1 - index) if options.lower_order_final else order
        last = index == steps
        x, data = solver.update(x, history, seen, t, step_order, corrector=not last)
        step(done)
        done += 1
        history, seen = history[1:] + history[:1], seen[1:] + [t]
        if not last:
            history[-1] = data
    return x


def run_unipc(eps: Eps, x: torch.Tensor, timestep_count: int, alphas_cumprod: torch.Tensor, step: StepCallback,
              options: UniPCOptions = UniPCOptions(), t_start: float | None = None) -> torch.Tensor:
    """A1111's ``unipc``: ``timestep_count`` steps (its DDIM timestep list's length) from unit noise ``x``."""
    options.validate(timestep_count)
    schedule = DiscreteVPSchedule(alphas_cumprod)
    times = time_grid(schedule, options.skip_type, timestep_count, t_start).to(torch.float32)
    return sample_unipc(eps, x, times, schedule, step, options)


__all__ = ["UniPCOptions", "DiscreteVPSchedule", "time_grid", "sample_unipc", "run_unipc", "VARIANTS",
           "SKIP_TYPES"]
