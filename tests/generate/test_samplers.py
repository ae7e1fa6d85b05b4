"""Sigma schedules and sampler names: A1111/k-diffusion's values, recomputed here from the formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdhub.errors import UsageError
from sdhub.generate.samplers import (
    SAMPLERS,
    ModelSchedule,
    resolve_sampler,
    scaled_linear_alphas_cumprod,
    sigmas_for,
)
from sdhub.generate.timestep_samplers import ddim_timesteps


def reference_alphas_cumprod() -> np.ndarray:
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas).astype(np.float32)


def reference_model_sigmas(alphas: np.ndarray) -> np.ndarray:
    return ((1 - alphas) / alphas) ** 0.5


def reference_uniform(sigmas: np.ndarray, steps: int, log_dtype=np.float64) -> np.ndarray:
    # k-diffusion keeps log(sigmas) in the sigmas' own precision (half precision for downcast alphas)
    log_sigmas = np.log(sigmas.astype(np.float64)).astype(log_dtype).astype(np.float64)
    t = np.linspace(999, 0, steps)
    low, high = np.floor(t).astype(int), np.ceil(t).astype(int)
    w = t - low
    return np.append(np.exp((1 - w) * log_sigmas[low] + w * log_sigmas[high]), 0.0)


def reference_karras(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> np.ndarray:
    ramp = np.linspace(0, 1, steps)
    values = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(values, 0.0)


@pytest.fixture(scope="module")
def schedule() -> ModelSchedule:
    return ModelSchedule(scaled_linear_alphas_cumprod())


def test_model_sigmas_span_sd_range(schedule):
    expected = reference_model_sigmas(reference_alphas_cumprod())
    np.testing.assert_allclose(schedule.sigmas.numpy(), expected, rtol=1e-6)
    assert schedule.sigma_min == pytest.approx(0.0292, abs=1e-4)
    assert schedule.sigma_max == pytest.approx(14.6146, abs=1e-4)


@pytest.mark.parametrize("steps", [1, 4, 20, 28, 50])
def test_euler_schedule_is_k_diffusions_discrete_uniform_schedule(schedule, steps):
    sigmas = sigmas_for(resolve_sampler("Euler"), schedule, steps)
    expected = reference_uniform(reference_model_sigmas(reference_alphas_cumprod()), steps)
    assert sigmas.shape == (steps + 1,) and sigmas[-1] == 0
    np.testing.assert_allclose(sigmas.numpy(), expected, rtol=2e-6)


@pytest.mark.parametrize("steps", [4, 20, 30])
def test_karras_schedules_use_rho_7_between_the_model_sigmas(schedule, steps):
    sigmas = sigmas_for(resolve_sampler("DPM++ 2M Karras"), schedule, steps)
    expected = reference_karras(schedule.sigma_min, schedule.sigma_max, steps)
    np.testing.assert_allclose(sigmas.numpy(), expected, rtol=2e-6)
    assert sigmas[0] == pytest.approx(14.6146, abs=1e-4)
    assert sigmas[-2] == pytest.approx(0.0292, abs=1e-4)


def test_karras_schedule_agrees_with_diffusers(schedule):
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       use_karras_sigmas=True, timestep_spacing="linspace")
    scheduler.set_timesteps(20)
    ours = sigmas_for(resolve_sampler("DPM++ SDE"), schedule, 20)
    np.testing.assert_allclose(ours.numpy(), scheduler.sigmas.numpy(), rtol=1e-5)


def test_downcast_alphas_reproduce_the_fp16_era_schedule():
    downcast = ModelSchedule(scaled_linear_alphas_cumprod(), downcast=True)
    half = torch.from_numpy(reference_alphas_cumprod()).half()
    expected_model_sigmas = ((1 - half) / half) ** 0.5  # computed in half precision, as pre-1.7 A1111 did
    assert downcast.sigmas.dtype == torch.float16
    assert torch.equal(downcast.sigmas, expected_model_sigmas)
    sigmas = sigmas_for(resolve_sampler("Euler"), downcast, 28)
    expected = reference_uniform(expected_model_sigmas.float().numpy(), 28, log_dtype=np.float16)
    np.testing.assert_allclose(sigmas.numpy(), expected, rtol=2e-6)
    full = sigmas_for(resolve_sampler("Euler"), ModelSchedule(scaled_linear_alphas_cumprod()), 28)
    assert not torch.equal(sigmas, full)  # slightly different numbers: why old seeds need the option
    np.testing.assert_allclose(sigmas[:-3].numpy(), full[:-3].numpy(), rtol=5e-3)
    # near t = 0, alphas_cumprod ~ 0.999 loses most of its digits in half precision: σ_min 0.0313, not 0.0292
    assert sigmas[-2] == pytest.approx(0.0313, abs=2e-4) and full[-2] == pytest.approx(0.0292, abs=1e-4)


def test_sigma_to_t_inverts_t_to_sigma(schedule):
    t = torch.tensor([999.0, 500.25, 10.5, 0.0])
    np.testing.assert_allclose(schedule.sigma_to_t(schedule.t_to_sigma(t)).numpy(), t.numpy(), atol=2e-3)


def test_ddim_uses_a1111s_uniform_timesteps():
    assert ddim_timesteps(20).tolist() == list(range(1, 1000, 50))
    # 1000 // 3 = 333 gives four timesteps, the last clipped to 999; A1111 evaluates all but the first
    assert ddim_timesteps(3).tolist() == [1, 334, 667, 999]
    ddim = resolve_sampler("DDIM")
    assert ddim.model_evaluations(3) == 3 and ddim.model_evaluations(20) == 19


@pytest.mark.parametrize("name,schedule_type,label,chosen", [
    ("euler a", None, "Euler a", "Automatic"), ("k_dpmpp_2m_ka", None, "DPM++ 2M", "Karras"),
    ("DPM++ 2M", "Karras", "DPM++ 2M", "Karras"), ("DPM++ SDE Karras", None, "DPM++ SDE", "Karras"),
    ("ddim", None, "DDIM", "Automatic"), ("Euler", "Automatic", "Euler", "Automatic"),
    ("Euler a Karras", None, "Euler a", "Karras"), ("DPM++ 2M SDE Heun Exponential", None, "DPM++ 2M SDE Heun", "Exponential"),
    ("LMS", "sgm_uniform", "LMS", "SGM Uniform"), ("DPM++ 2M Karras", "Exponential", "DPM++ 2M", "Karras"),
])
def test_a1111_sampler_names_resolve(name, schedule_type, label, chosen):
    choice = resolve_sampler(name, schedule_type)
    assert (choice.label, choice.schedule_type) == (label, chosen)


def test_ensd_is_named_for_a1111_1_10s_ancestral_samplers():
    assert [label for label, spec in SAMPLERS.items() if spec.uses_ensd] == [
        "DPM++ 2S a", "Euler a", "DPM2 a", "DPM fast", "DPM adaptive"]


def test_unknown_sampler_lists_the_known_ones():
    with pytest.raises(UsageError, match="unknown sampler 'LMS Foo'.*Euler a"):
        resolve_sampler("LMS Foo")


def test_euler_loop_agrees_with_diffusers_euler_on_the_same_sigmas(schedule):
    from diffusers import EulerDiscreteScheduler

    from sdhub.generate.samplers import run_sampler

    def denoise(x, sigma):  # the exact denoiser for data drawn from N(0, 1)
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    euler = resolve_sampler("Euler")
    sigmas = sigmas_for(euler, schedule, 12)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = run_sampler(euler, denoise, noise, sigmas, lambda step: None)

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="linspace")
    scheduler.set_timesteps(sigmas=sigmas.tolist())  # diffusers takes the list with its final 0
    x = noise * scheduler.init_noise_sigma
    for index, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[index]
        x = scheduler.step((x - denoise(x, sigma)) / sigma, t, x).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)
    assert ours.std() < noise.std() * 1.1  # converged towards data scale, not the σ_max-scaled noise
