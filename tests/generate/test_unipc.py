"""UniPC as A1111 1.10 runs it, against independent references.

- The bh1/bh2 update rule against diffusers' ``UniPCMultistepScheduler`` on the integer timesteps
  diffusers can walk (same eps model, same start): within 2e-6 of the result's scale (float32).
- The vary_coeff variant's first-order step against the paper's first-order formula written out
  here in float64, and every variant against the exact probability-flow solution for Gaussian data.
- A1111's own choices: the time grids of the three skip types, fractional model timesteps
  ``999 * (1 - k/N)``, N = the DDIM timestep list's length (31 model calls for 30 steps), the order
  refusal, and a run of the tiny model with an infotext that reruns to the same image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdhub.errors import UsageError
from sdhub.generate.schedules import scaled_linear_alphas_cumprod
from sdhub.generate.timestep_samplers import ddim_timesteps
from sdhub.generate.unipc import DiscreteVPSchedule, UniPCOptions, run_unipc, sample_unipc, time_grid

ALPHAS = scaled_linear_alphas_cumprod()
SCHEDULE = DiscreteVPSchedule(ALPHAS)


def toy_eps(x: torch.Tensor, t: float) -> torch.Tensor:
    """A deterministic nonlinear eps model that depends on the timestep."""
    t = float(t)
    return torch.tanh(0.7 * x + 0.3) * (0.5 + t / 2000) + 0.05 * torch.sin(torch.tensor(t / 150.0))


DATA_VARIANCE = 0.25


def gaussian_eps(x: torch.Tensor, t: float) -> torch.Tensor:
    """The exact eps of data drawn from N(0, 0.25): E[x0 | x_t] is a scaling of x_t."""
    time = torch.tensor([t / 1000 + 1 / 1000])
    alpha, sigma = SCHEDULE.alpha(time), SCHEDULE.sigma(time)
    x0 = alpha * DATA_VARIANCE / (alpha ** 2 * DATA_VARIANCE + sigma ** 2) * x
    return (x - alpha * x0) / sigma


def exact_flow(x: torch.Tensor, start: float, end: float) -> torch.Tensor:
    """The probability-flow ODE's solution for Gaussian data: x scales with the marginal's std."""
    def std(t: float) -> torch.Tensor:
        time = torch.tensor([t])
        return torch.sqrt(SCHEDULE.alpha(time) ** 2 * DATA_VARIANCE + SCHEDULE.sigma(time) ** 2)
    return x * std(end) / std(start)


def noise() -> torch.Tensor:
    return torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps", [5, 12])
def test_the_update_rule_matches_diffusers_unipc_on_integer_timesteps(variant, order, steps):
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", solver_order=order, solver_type=variant,
        predict_x0=True, lower_order_final=True, timestep_spacing="linspace", final_sigmas_type="sigma_min")
    scheduler.set_timesteps(steps)
    expected = noise()
    for timestep in scheduler.timesteps:
        expected = scheduler.step(toy_eps(expected, timestep), timestep, expected).prev_sample
    # the same walk in UniPC's continuous time: t = (timestep + 1) / 1000, down to timestep 0
    times = (torch.tensor([*scheduler.timesteps.tolist(), 0], dtype=torch.float64) + 1) / 1000
    calls: list[int] = []
    ours = sample_unipc(toy_eps, noise(), times.float(), SCHEDULE, calls.append, UniPCOptions(variant, order=order))
    assert calls == list(range(steps))
    scale = expected.abs().max()
    assert (ours - expected).abs().max() <= 2e-6 * scale


def test_vary_coeff_first_order_is_the_papers_first_order_step():
    times = time_grid(SCHEDULE, "time_uniform", 6)
    ours = sample_unipc(toy_eps, noise(), times, SCHEDULE, lambda i: None, UniPCOptions("vary_coeff", order=1))

    def coefficients(t: float) -> tuple[float, float, float]:
        t_tensor = torch.tensor([t])
        return (float(SCHEDULE.alpha(t_tensor)), float(SCHEDULE.sigma(t_tensor)),
                float(SCHEDULE.half_log_snr(t_tensor)))

    def data(x: np.ndarray, t: float) -> np.ndarray:
        alpha, sigma, _ = coefficients(t)
        eps = toy_eps(torch.from_numpy(x).float(), (t - 0.001) * 1000).double().numpy()
        return (x - sigma * eps) / alpha

    x = noise().double().numpy()
    previous = data(x, float(times[0]))
    for index in range(1, len(times)):
        s, t = float(times[index - 1]), float(times[index])
        alpha_s, sigma_s, lambda_s = coefficients(s)
        alpha_t, sigma_t, lambda_t = coefficients(t)
        h = lambda_t - lambda_s
        predicted = sigma_t / sigma_s * x - alpha_t * np.expm1(-h) * previous
        if index == len(times) - 1:
            x = predicted  # no corrector after the last step
            break
        data_predicted = data(predicted, t)
        # UniPC-1 corrector: the second term of the exponential integrator, phi_2(-h) h weighting
        x = predicted - alpha_t * (np.expm1(-h) / -h - 1) * (data_predicted - previous)
        previous = data_predicted
    assert np.abs(ours.double().numpy() - x).max() <= 1e-5 * np.abs(x).max()


@pytest.mark.parametrize("variant,tolerance", [("bh1", 2e-4), ("bh2", 2e-4), ("vary_coeff", 3e-2)])
def test_every_variant_converges_to_the_exact_flow_of_gaussian_data(variant, tolerance):
    exact = exact_flow(noise(), 1.0, 0.001)
    errors = []
    for steps in (10, 50):
        out = run_unipc(gaussian_eps, noise(), steps, ALPHAS, lambda i: None, UniPCOptions(variant, "logSNR"))
        errors.append(float((out - exact).abs().max() / exact.abs().max()))
    assert errors[1] < errors[0]
    assert errors[1] <= tolerance


def test_time_grids_follow_a1111s_skip_types():
    uniform = time_grid(SCHEDULE, "time_uniform", 20)
    model_times = SCHEDULE.model_time(uniform)
    expected = torch.tensor([999 * (1 - k / 20) for k in range(21)])
    assert torch.allclose(model_times, expected, atol=2e-3)  # fractional: 949.05, not diffusers' 949
    quadratic = time_grid(SCHEDULE, "time_quadratic", 10)
    assert torch.allclose(quadratic.sqrt(), torch.linspace(1.0, 0.001 ** 0.5, 11), atol=1e-6)
    log_snr = SCHEDULE.half_log_snr(time_grid(SCHEDULE, "logSNR", 10))
    assert torch.allclose(log_snr, torch.linspace(float(log_snr[0]), float(log_snr[-1]), 11), atol=2e-3)
    assert float(log_snr[0]) == pytest.approx(0.5 * np.log(float(ALPHAS[-1]) / (1 - float(ALPHAS[-1]))), abs=1e-4)


@pytest.mark.parametrize("steps,calls", [(20, 20), (30, 31), (7, 8)])
def test_a1111_walks_the_ddim_timestep_lists_length(steps, calls):
    from sdhub.generate.timestep_samplers import run_timestep_sampler

    seen: list[float] = []

    def eps(x: torch.Tensor, t: float) -> torch.Tensor:
        seen.append(t)
        return toy_eps(x, t)

    run_timestep_sampler("unipc", eps, noise(), steps, ALPHAS, lambda i: None)
    assert len(seen) == calls == len(ddim_timesteps(steps))
    assert seen[0] == pytest.approx(999.0, abs=1e-3)
    assert seen[1] == pytest.approx(999 * (1 - 1 / calls), abs=2e-3)


def test_an_order_above_the_steps_and_unknown_options_are_refused_in_one_line():
    with pytest.raises(UsageError, match="UniPC of order 3 needs at least 3 steps, not 2") as refused:
        run_unipc(toy_eps, noise(), 2, ALPHAS, lambda i: None)
    assert "\n" not in str(refused.value)
    with pytest.raises(UsageError, match="unknown UniPC variant 'bh3'"):
        UniPCOptions("bh3").validate()
    with pytest.raises(UsageError, match="unknown UniPC skip type"):
        UniPCOptions(skip_type="karras").validate()


def test_lower_order_final_changes_only_the_last_steps():
    times = time_grid(SCHEDULE, "time_uniform", 8)
    lowered = sample_unipc(toy_eps, noise(), times, SCHEDULE, lambda i: None, UniPCOptions(lower_order_final=True))
    kept = sample_unipc(toy_eps, noise(), times, SCHEDULE, lambda i: None, UniPCOptions(lower_order_final=False))
    assert not torch.equal(lowered, kept)
