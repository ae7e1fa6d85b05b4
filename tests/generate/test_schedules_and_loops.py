"""Every A1111 1.10 schedule type and sampler against the formulas and k-diffusion's own code.

Schedules: the research notes' formulas recomputed here in float64 NumPy (tolerance 2e-6 relative,
float32 rounding), and the schedules that walk the model's table against k-diffusion's
``DiscreteEpsDDPMDenoiser`` maps, bit for bit. Sampler loops: sdhub's ``run_sampler`` against the
k-diffusion function called directly the way A1111's ``KDiffusionSampler`` calls it, on a
deterministic toy denoiser and the same noise: bit-identical.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy import stats

from sdhub.generate.kdiffusion import external, sampling
from sdhub.generate.samplers import SAMPLERS, BrownianNoise, ModelSchedule, resolve_sampler, run_sampler, sigmas_for
from sdhub.generate.schedules import AYS_SD1, AYS_SDXL, SCHEDULE_TYPES, scaled_linear_alphas_cumprod, schedule_sigmas

STEPS = (1, 7, 11, 20, 33)


@pytest.fixture(scope="module")
def model() -> ModelSchedule:
    return ModelSchedule(scaled_linear_alphas_cumprod())


@pytest.fixture(scope="module")
def kd_model():
    """k-diffusion's CompVis discrete schedule over the same ᾱ (no UNet needed for its σ↔t maps)."""
    return external().DiscreteEpsDDPMDenoiser(None, scaled_linear_alphas_cumprod(), quantize=False)


def research_karras(n, smin, smax, rho=7.0):
    ramp = np.linspace(0, 1, n)
    return np.append((smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho, 0.0)


def research_exponential(n, smin, smax):
    return np.append(np.exp(np.linspace(math.log(smax), math.log(smin), n)), 0.0)


def research_polyexponential(n, smin, smax, rho=1.0):
    ramp = np.linspace(1, 0, n) ** rho
    return np.append(np.exp(ramp * (math.log(smax) - math.log(smin)) + math.log(smin)), 0.0)


@pytest.mark.parametrize("steps", STEPS)
def test_automatic_and_uniform_are_k_diffusions_get_sigmas(model, kd_model, steps):
    expected = kd_model.get_sigmas(steps)
    assert torch.equal(schedule_sigmas("automatic", model, steps), expected)
    assert torch.equal(schedule_sigmas("uniform", model, steps), expected)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("name,formula", [("karras", research_karras), ("exponential", research_exponential),
                                          ("polyexponential", research_polyexponential)])
def test_k_diffusion_schedules_follow_the_research_formulas(model, steps, name, formula):
    ours = schedule_sigmas(name, model, steps)
    expected = formula(steps, model.sigma_min, model.sigma_max)
    assert ours.dtype == torch.float32 and ours.shape == (steps + 1,)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=2e-6)


@pytest.mark.parametrize("steps", STEPS)
def test_sgm_uniform_and_normal_walk_t_between_the_model_sigmas(model, kd_model, steps):
    start = kd_model.sigma_to_t(torch.tensor(model.sigma_max))
    end = kd_model.sigma_to_t(torch.tensor(model.sigma_min))
    sgm = [kd_model.t_to_sigma(t) for t in torch.linspace(start, end, steps + 1)[:-1]]
    normal = [kd_model.t_to_sigma(t) for t in torch.linspace(start, end, steps)]
    assert torch.equal(schedule_sigmas("sgm_uniform", model, steps), torch.tensor([*map(float, sgm), 0.0]))
    assert torch.equal(schedule_sigmas("normal", model, steps), torch.tensor([*map(float, normal), 0.0]))


@pytest.mark.parametrize("steps", STEPS)
def test_simple_and_ddim_pick_training_sigmas(model, kd_model, steps):
    table = kd_model.sigmas
    stride = len(table) / steps
    simple = [float(table[-(1 + int(i * stride))]) for i in range(steps)] + [0.0]
    assert torch.equal(schedule_sigmas("simple", model, steps), torch.tensor(simple))
    every = max(1000 // steps, 1)
    ddim = [float(table[i]) for i in range(1, 1000, every)][::-1] + [0.0]
    assert torch.equal(schedule_sigmas("ddim", model, steps), torch.tensor(ddim))
    if steps == 7:  # 1000 // 7 = 142 does not divide 999: A1111 walks 8 sigmas, one more than the steps
        assert len(ddim) == 9


@pytest.mark.parametrize("steps", STEPS)
def test_kl_optimal_ends_at_sigma_min(model, steps):
    i = np.arange(steps + 1)
    expected = np.tan(i / steps * math.atan(model.sigma_min) + (1 - i / steps) * math.atan(model.sigma_max))
    ours = schedule_sigmas("kl_optimal", model, steps)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=2e-6)
    assert ours[-1] == pytest.approx(model.sigma_min, rel=1e-6)


@pytest.mark.parametrize("sdxl,published", [(False, AYS_SD1), (True, AYS_SDXL)])
def test_align_your_steps_uses_the_published_lists(model, sdxl, published):
    eleven = schedule_sigmas("align_your_steps", model, 11, sdxl=sdxl)
    assert torch.equal(eleven, torch.tensor([*published, 0.0]))
    for steps in (5, 20, 30):
        wanted = np.exp(np.interp(np.linspace(0, 1, steps), np.linspace(0, 1, 11), np.log(published[::-1])))[::-1]
        np.testing.assert_allclose(schedule_sigmas("align_your_steps", model, steps, sdxl=sdxl).numpy(),
                                   np.append(wanted, 0.0), rtol=2e-6)


@pytest.mark.parametrize("steps", STEPS)
def test_beta_schedule_uses_beta_quantiles_with_alpha_beta_0_6(model, steps):
    quantiles = stats.beta.ppf(1 - np.linspace(0, 1, steps), 0.6, 0.6)
    expected = np.append(model.sigma_min + quantiles * (model.sigma_max - model.sigma_min), 0.0)
    np.testing.assert_allclose(schedule_sigmas("beta", model, steps).numpy(), expected, rtol=2e-6)


def test_every_schedule_type_is_offered_and_differs():
    assert list(SCHEDULE_TYPES) == ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
                                    "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta"]
    model = ModelSchedule(scaled_linear_alphas_cumprod())
    seen = {}
    for schedule in SCHEDULE_TYPES.values():
        if schedule.name in ("automatic", "uniform"):
            continue
        seen[schedule.name] = tuple(schedule_sigmas(schedule.name, model, 12).tolist())
    assert len(set(seen.values())) == len(seen)


@pytest.mark.parametrize("label,automatic", [
    ("DPM++ 2M", "karras"), ("DPM++ SDE", "karras"), ("DPM++ 2M SDE", "exponential"),
    ("DPM++ 2M SDE Heun", "exponential"), ("DPM++ 2S a", "karras"), ("DPM++ 3M SDE", "exponential"),
    ("Euler a", "automatic"), ("Euler", "automatic"), ("LMS", "automatic"), ("Heun", "automatic"),
    ("DPM2", "karras"), ("DPM2 a", "karras"), ("Restart", "karras"), ("LCM", "automatic"),
])
def test_automatic_is_each_samplers_a1111_1_10_default(label, automatic):
    assert resolve_sampler(label).schedule == automatic


@pytest.mark.parametrize("label", ["DPM2", "DPM2 a", "DPM++ 3M SDE"])
def test_samplers_that_discard_the_penultimate_sigma(model, label):
    choice = resolve_sampler(label)
    longer = schedule_sigmas(choice.schedule, model, 21)
    sigmas = sigmas_for(choice, model, 20)
    assert sigmas.shape == (21,) and torch.equal(sigmas, torch.cat([longer[:-2], longer[-1:]]))
    euler = sigmas_for(resolve_sampler("Euler"), model, 20, discard_penultimate=True)
    uniform = model.uniform(21)
    assert torch.equal(euler, torch.cat([uniform[:-2], uniform[-1:]]))


# --- full loops -------------------------------------------------------------------------------------------

def toy_denoiser(x, sigma):
    """Deterministic and nonlinear, so every step's arithmetic shows in the result."""
    sigma = sigma.reshape(-1, 1, 1, 1)
    return torch.tanh(x / (1 + sigma ** 2)) * 0.9 + 0.05 * x.roll(1, dims=-1) / (1 + sigma)


def noise_source(seed: int, shape):
    generator = torch.Generator().manual_seed(seed)
    return lambda: torch.randn(shape, generator=generator)


def seeded_randn(seed, size):
    return torch.randn(size, generator=torch.Generator().manual_seed(int(seed)))


K_SAMPLERS = [label for label, spec in SAMPLERS.items() if spec.function.startswith("sample_")]


@pytest.mark.parametrize("label", K_SAMPLERS)
@pytest.mark.parametrize("schedule_type", ["Automatic", "Karras", "SGM Uniform"])
def test_sampler_loops_match_k_diffusion_called_as_a1111_does(model, label, schedule_type):
    choice = resolve_sampler(label, schedule_type)
    spec = choice.sampler
    steps = 8
    shape = (2, 4, 6, 6)
    start = torch.randn(shape, generator=torch.Generator().manual_seed(11))
    sigmas = sigmas_for(choice, model, steps)
    brownian = (BrownianNoise(start, sigmas[sigmas > 0].min(), sigmas.max(), [5, 6], seeded_randn)
                if spec.brownian_noise else None)
    steps_seen = []
    ours = run_sampler(choice, toy_denoiser, start, sigmas, steps_seen.append, model=model, steps=steps,
                       next_noise=noise_source(3, shape), brownian=brownian)

    function = getattr(sampling(), spec.function)
    kwargs = {}
    parameters = inspect.signature(function).parameters
    if "eta" in parameters:
        kwargs["eta"] = 1.0
    if "noise_sampler" in parameters:
        if spec.brownian_noise:
            kwargs["noise_sampler"] = BrownianNoise(start, sigmas[sigmas > 0].min(), sigmas.max(), [5, 6],
                                                    seeded_randn)
        else:
            draw = noise_source(3, shape)
            kwargs["noise_sampler"] = lambda sigma, sigma_next: draw()
    if spec.solver_type:
        kwargs["solver_type"] = spec.solver_type
    if "sigma_min" in parameters:
        kwargs.update(sigma_min=model.sigma_min, sigma_max=model.sigma_max)
        if "n" in parameters:
            kwargs["n"] = steps
    else:
        kwargs["sigmas"] = sigmas
    expected = function(toy_denoiser, start * sigmas[0], disable=True, **kwargs)
    assert torch.equal(ours, expected)
    assert torch.isfinite(ours).all() and steps_seen
    if label not in ("DPM fast", "DPM adaptive"):
        assert steps_seen == list(range(len(sigmas) - 1))


def test_eta_zero_makes_ancestral_samplers_deterministic(model):
    choice = resolve_sampler("Euler a")
    sigmas = sigmas_for(choice, model, 6)
    start = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    runs = [run_sampler(choice, toy_denoiser, start, sigmas, lambda i: None, next_noise=noise_source(seed, start.shape),
                        eta=0.0) for seed in (1, 2)]
    assert torch.equal(*runs)
    noisy = [run_sampler(choice, toy_denoiser, start, sigmas, lambda i: None, next_noise=noise_source(seed, start.shape))
             for seed in (1, 2)]
    assert not torch.equal(*noisy)


def reference_restart(denoise, x, sigmas, noise):
    """Restart as A1111 describes it: with 20-35 steps, a Karras schedule of steps-9 between the
    schedule's ends, and one 9-step Karras restart from σ≈2 down to the point nearest σ=0.1."""
    karras = sampling().get_sigmas_karras
    steps = len(sigmas) - 1
    sigmas = karras(steps - 9, sigmas[-2].item(), sigmas[0].item())
    low = int(torch.argmin(abs(sigmas - 0.1)))
    high = int(torch.argmin(abs(sigmas - 2)))
    restart = karras(10, sigmas[low].item(), sigmas[high].item())[:-1]
    pairs = [(sigmas[i], sigmas[i + 1]) for i in range(low)]
    pairs += list(zip(restart[:-1], restart[1:]))
    pairs += [(sigmas[i], sigmas[i + 1]) for i in range(low, len(sigmas) - 1)]
    last = None
    for sigma, sigma_next in pairs:
        if last is not None and last < sigma:
            x = x + noise() * (sigma ** 2 - last ** 2) ** 0.5
        d = (x - denoise(x, sigma.reshape(1))) / sigma
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
        else:
            x2 = x + d * (sigma_next - sigma)
            d2 = (x2 - denoise(x2, sigma_next.reshape(1))) / sigma_next
            x = x + (d + d2) / 2 * (sigma_next - sigma)
        last = sigma_next
    return x


def test_restart_walks_a1111s_restart_segment(model):
    choice = resolve_sampler("Restart")
    sigmas = sigmas_for(choice, model, 24)
    start = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    calls = []
    ours = run_sampler(choice, toy_denoiser, start, sigmas, calls.append, next_noise=noise_source(4, start.shape))
    expected = reference_restart(toy_denoiser, start * sigmas[0], sigmas, noise_source(4, start.shape))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert len(calls) == 24


def test_lcm_jumps_to_the_denoised_estimate_and_renoises(model):
    from sdhub.generate.extra_samplers import LCMSchedule

    lcm_model = LCMSchedule(scaled_linear_alphas_cumprod())
    choice = resolve_sampler("LCM")
    sigmas = sigmas_for(choice, lcm_model, 4)
    # LCM's grid is every 20th training step ending at 999: its Automatic schedule runs t = 999 → 19
    assert lcm_model.sigma_to_t(sigmas[:1]).item() == 999 and lcm_model.sigma_to_t(sigmas[-2:-1]).item() == 19
    start = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    ours = run_sampler(choice, toy_denoiser, start, sigmas, lambda i: None, next_noise=noise_source(8, start.shape))
    draw = noise_source(8, start.shape)
    x = start * sigmas[0]
    for i in range(4):
        x = toy_denoiser(x, sigmas[i].reshape(1))
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * draw()
    assert torch.equal(ours, x)


def test_plms_and_ddim_follow_the_pseudo_linear_multistep_rule():
    from sdhub.generate.timestep_samplers import ddim_timesteps, run_timestep_sampler

    alphas = scaled_linear_alphas_cumprod()
    start = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(4))

    def eps(x, t):
        return torch.tanh(x) * (t / 1000) + 0.1 * x

    timesteps = ddim_timesteps(10)
    calls = []

    def counted(x, t):
        calls.append(t)
        return eps(x, t)

    plms = run_timestep_sampler("plms", counted, start, 10, alphas, lambda i: None)
    # reference in float64 from the update rule: x_prev = √ᾱ_prev·x0 + √(1−ᾱ_prev)·e
    x, history = start.double(), []
    a = alphas.double()
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        t, t_prev = int(timesteps[index]), int(timesteps[index - 1])
        a_t, a_prev = a[t], a[t_prev]

        def move(x_now, e):
            x0 = (x_now - (1 - a_t).sqrt() * e) / a_t.sqrt()
            return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e

        e_t = eps(x, t)
        if not history:
            e_prime = (e_t + eps(move(x, e_t), t_prev)) / 2
        elif len(history) == 1:
            e_prime = (3 * e_t - history[-1]) / 2
        elif len(history) == 2:
            e_prime = (23 * e_t - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        x = move(x, e_prime)
        history = (history + [e_t])[-3:]
    torch.testing.assert_close(plms.double(), x, rtol=1e-4, atol=1e-5)
    assert len(calls) == len(timesteps)  # one extra evaluation for PLMS's first pseudo step
    ddim = run_timestep_sampler("ddim", eps, start, 10, alphas, lambda i: None)
    assert not torch.equal(ddim, plms)
