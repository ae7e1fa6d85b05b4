"""A1111 1.10's samplers under their A1111 names, their default schedules, and running them.

The k-diffusion samplers (Euler ... DPM adaptive) are k-diffusion's own functions, called the way
A1111's ``KDiffusionSampler`` calls them (``disable``d progress bars, ``eta`` and ``s_noise`` where
the function takes them, a seeded Brownian tree for the SDE samplers, per-step noise from the
image's seeded source). Restart and LCM are A1111's own loops (``extra_samplers``); DDIM and PLMS
run on integer timesteps (``timestep_samplers``). The model side is a *denoiser*
``denoise(x, sigma) -> denoised`` for sigma samplers and ``eps(x, t) -> eps`` for timestep ones.
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from sdhub.errors import UsageError
from sdhub.generate.kdiffusion import sampling as kdiffusion_sampling
from sdhub.generate.schedules import (
    SCHEDULE_TYPES,
    ModelSchedule,
    append_zero,
    resolve_schedule_type,
    schedule_by_name,
    schedule_names,
    schedule_sigmas,
    scaled_linear_alphas_cumprod,
)

__all__ = ["SAMPLERS", "SamplerSpec", "SamplerChoice", "ModelSchedule", "append_zero", "resolve_sampler",
           "scaled_linear_alphas_cumprod", "sigmas_for", "run_sampler", "BrownianNoise"]

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int], None]
NoiseFn = Callable[[], torch.Tensor]

#: The A1111 version whose sampler/schedule behaviour sdhub reproduces (written as infotext ``Version``).
A1111_VERSION = "v1.10.1"


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler and its options as A1111 1.10 declares them.

    ``function`` is a k-diffusion ``sample_*`` name, or ``restart``/``lcm``/``ddim``/``plms``/``unipc``
    for A1111's own loops; ``scheduler`` is what "Automatic" means for it (None: the model's uniform
    schedule); ``second_order`` samplers get prompt schedules over twice the steps.
    """

    label: str
    function: str
    aliases: tuple[str, ...] = ()
    scheduler: str | None = None
    second_order: bool = False
    discard_next_to_last_sigma: bool = False
    uses_ensd: bool = False
    brownian_noise: bool = False
    solver_type: str | None = None

    @property
    def timesteps(self) -> bool:
        """Runs on integer timesteps (DDIM, PLMS, UniPC) rather than sigmas."""
        return self.function in ("ddim", "plms", "unipc")

    @property
    def default_eta(self) -> float:
        return 0.0 if self.timesteps else 1.0

    @property
    def eta_infotext_key(self) -> str:
        return "Eta DDIM" if self.timesteps else "Eta"

    def takes(self, parameter: str) -> bool:
        """Whether A1111 passes ``parameter`` (eta, s_noise) to this sampler's function."""
        if parameter == "eta":
            if self.timesteps:
                return self.function == "ddim"
            return self.function.startswith("sample_") and "eta" in _signature(self.function)
        if parameter == "s_noise":
            return self.function in _S_NOISE_FUNCTIONS
        return False

    def total_steps(self, steps: int) -> int:
        """The step count A1111 schedules prompts over (``SamplerData.total_steps``)."""
        return steps * 2 if self.second_order else steps


_KARRAS, _EXPONENTIAL = "karras", "exponential"
_SAMPLERS = [
    SamplerSpec("DPM++ 2M", "sample_dpmpp_2m", ("k_dpmpp_2m",), _KARRAS),
    SamplerSpec("DPM++ SDE", "sample_dpmpp_sde", ("k_dpmpp_sde",), _KARRAS, second_order=True, brownian_noise=True),
    SamplerSpec("DPM++ 2M SDE", "sample_dpmpp_2m_sde", ("k_dpmpp_2m_sde",), _EXPONENTIAL, brownian_noise=True),
    SamplerSpec("DPM++ 2M SDE Heun", "sample_dpmpp_2m_sde", ("k_dpmpp_2m_sde_heun",), _EXPONENTIAL,
                brownian_noise=True, solver_type="heun"),
    SamplerSpec("DPM++ 2S a", "sample_dpmpp_2s_ancestral", ("k_dpmpp_2s_a",), _KARRAS, second_order=True,
                uses_ensd=True),
    SamplerSpec("DPM++ 3M SDE", "sample_dpmpp_3m_sde", ("k_dpmpp_3m_sde",), _EXPONENTIAL,
                discard_next_to_last_sigma=True, brownian_noise=True),
    SamplerSpec("Euler a", "sample_euler_ancestral", ("k_euler_a", "k_euler_ancestral"), uses_ensd=True),
    SamplerSpec("Euler", "sample_euler", ("k_euler",)),
    SamplerSpec("LMS", "sample_lms", ("k_lms",)),
    SamplerSpec("Heun", "sample_heun", ("k_heun",), second_order=True),
    SamplerSpec("DPM2", "sample_dpm_2", ("k_dpm_2",), _KARRAS, second_order=True, discard_next_to_last_sigma=True),
    SamplerSpec("DPM2 a", "sample_dpm_2_ancestral", ("k_dpm_2_a",), _KARRAS, second_order=True,
                discard_next_to_last_sigma=True, uses_ensd=True),
    SamplerSpec("DPM fast", "sample_dpm_fast", ("k_dpm_fast",), uses_ensd=True),
    SamplerSpec("DPM adaptive", "sample_dpm_adaptive", ("k_dpm_ad",), uses_ensd=True),
    SamplerSpec("Restart", "restart", ("restart",), _KARRAS, second_order=True),
    SamplerSpec("LCM", "lcm", ("k_lcm",)),
    SamplerSpec("DDIM", "ddim", ("ddim",)),
    SamplerSpec("PLMS", "plms", ("plms",)),
    SamplerSpec("UniPC", "unipc", ("unipc",)),
]
SAMPLERS: dict[str, SamplerSpec] = {spec.label: spec for spec in _SAMPLERS}

#: k-diffusion functions A1111 1.10 passes ``s_noise`` to (its ``sampler_extra_params``).
_S_NOISE_FUNCTIONS = ("sample_euler", "sample_heun", "sample_dpm_2", "sample_dpm_fast", "sample_dpm_2_ancestral",
                      "sample_dpmpp_2s_ancestral", "sample_dpmpp_sde", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde")

#: Old API names for sampler + schedule pairs (``k_dpmpp_2m_ka``), from before A1111 1.9 split them.
_LEGACY_ALIASES = {
    "k_lms_ka": ("LMS", "Karras"), "k_dpm_2_ka": ("DPM2", "Karras"), "k_dpm_2_a_ka": ("DPM2 a", "Karras"),
    "k_dpmpp_2s_a_ka": ("DPM++ 2S a", "Karras"), "k_dpmpp_2m_ka": ("DPM++ 2M", "Karras"),
    "k_dpmpp_sde_ka": ("DPM++ SDE", "Karras"), "k_dpmpp_2m_sde_ka": ("DPM++ 2M SDE", "Karras"),
    "k_dpmpp_2m_sde_heun_ka": ("DPM++ 2M SDE Heun", "Karras"),
    "k_dpmpp_2m_sde_heun_exp": ("DPM++ 2M SDE Heun", "Exponential"),
    "k_dpmpp_3m_sde_ka": ("DPM++ 3M SDE", "Karras"), "k_dpmpp_3m_sde_exp": ("DPM++ 3M SDE", "Exponential"),
    "euler_a": ("Euler a", None), "euler": ("Euler", None),
}


def _signature(function: str) -> tuple[str, ...]:
    return tuple(inspect.signature(getattr(kdiffusion_sampling(), function)).parameters)


@dataclass(frozen=True)
class SamplerChoice:
    """A sampler and the schedule type chosen for it (``Automatic`` or an explicit label)."""

    sampler: SamplerSpec
    schedule_type: str = "Automatic"

    @property
    def label(self) -> str:
        return self.sampler.label

    @property
    def schedule(self) -> str:
        """The schedule actually sampled with (internal name); ``automatic`` is the model's uniform one."""
        if self.schedule_type == "Automatic":
            return self.sampler.scheduler or "automatic"
        return resolve_schedule_type(self.schedule_type).name

    @property
    def infotext_schedule(self) -> str:
        """What A1111 1.10 writes as ``Schedule type``: the chosen label, or the schedule Automatic chose."""
        if self.sampler.timesteps or self.schedule == "automatic":
            return self.schedule_type
        return schedule_by_name(self.schedule).label

    @property
    def uses_schedule(self) -> bool:
        """DDIM, PLMS, UniPC and the DPM fast/adaptive solvers ignore the schedule type (as in A1111)."""
        return not self.sampler.timesteps and self.sampler.function not in ("sample_dpm_fast", "sample_dpm_adaptive")

    def model_evaluations(self, steps: int) -> int:
        """How many steps the progress bar counts."""
        if self.sampler.timesteps:
            from sdhub.generate.timestep_samplers import ddim_timesteps

            # UniPC walks as many steps as the timestep list is long, DDIM and PLMS one fewer
            return len(ddim_timesteps(steps)) - (self.sampler.function != "unipc")
        return steps


def _find_sampler(name: str) -> SamplerSpec | None:
    wanted = name.lower()
    for spec in _SAMPLERS:
        if wanted == spec.label.lower() or wanted in spec.aliases:
            return spec
    return None


def resolve_sampler(name: str, schedule_type: str | None = None) -> SamplerChoice:
    """The sampler A1111 calls ``name``, with ``schedule_type`` (default Automatic).

    Names are A1111's labels or API aliases in any case; a pre-1.9 combined name such as
    ``DPM++ 2M Karras`` is split into sampler and schedule the way A1111 1.10 splits it, the
    name's schedule winning over ``schedule_type``.
    """
    wanted = name.strip()
    schedule = resolve_schedule_type(schedule_type) if schedule_type else SCHEDULE_TYPES["Automatic"]
    legacy = _LEGACY_ALIASES.get(wanted.lower())
    if legacy is not None:
        wanted = legacy[0]
        schedule = resolve_schedule_type(legacy[1]) if legacy[1] else schedule
    spec = _find_sampler(wanted)
    if spec is None:
        for candidate in SCHEDULE_TYPES.values():
            suffix = next((s for s in schedule_names(candidate) if wanted.lower().endswith(" " + s.lower())), None)
            if suffix is not None and (found := _find_sampler(wanted[:-len(suffix) - 1].strip())) is not None:
                spec, schedule = found, candidate
                break
    if spec is None:
        raise UsageError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return SamplerChoice(spec, schedule.label)


def sigmas_for(choice: SamplerChoice, model: ModelSchedule, steps: int, *, sdxl: bool = False,
               discard_penultimate: bool = False) -> torch.Tensor:
    """The sigmas A1111 samples ``steps`` steps with (``KDiffusionSampler.get_sigmas``)."""
    if steps < 1:
        raise UsageError("steps must be at least 1")
    discard = choice.sampler.discard_next_to_last_sigma or discard_penultimate
    sigmas = schedule_sigmas(choice.schedule, model, steps + 1 if discard else steps, sdxl=sdxl)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas


class BrownianNoise:
    """k-diffusion's Brownian-tree noise sampler seeded per image, A1111's batch-deterministic way.

    torchsde draws its normals through ``_randn``; A1111 routes those through its own seeded source
    (CPU, GPU or NV), which ``randn`` reproduces here while the trees are in use.
    """

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor,
                 seeds: Sequence[int], randn: Callable[[int, Sequence[int]], torch.Tensor]) -> None:
        self._randn = randn
        with self._patched_randn():
            self._sampler = kdiffusion_sampling().BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=list(seeds))

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
        with self._patched_randn():
            return self._sampler(sigma, sigma_next)


def run_sampler(choice: SamplerChoice, denoise: Denoise, noise: torch.Tensor, sigmas: torch.Tensor,
                step: StepCallback, *, model: ModelSchedule | None = None, next_noise: NoiseFn | None = None,
                brownian: BrownianNoise | None = None, eta: float | None = None,
                s_noise: float | None = None, steps: int | None = None,
                x_start: torch.Tensor | None = None) -> torch.Tensor:
    """Run a sigma sampler from unit ``noise`` (scaled by ``sigmas[0]`` as A1111 does).

    ``model`` gives DPM fast/adaptive their range (the model's sigma_min/max, as A1111 passes) and
    ``steps`` DPM fast its evaluation count;
    ``next_noise`` draws the per-step noise of ancestral samplers; ``brownian`` serves the SDE ones.
    ``x_start`` is img2img's start (noised init latents, ``sigmas`` the truncated schedule): sampling
    starts there, and DPM fast/adaptive run between ``sigmas[-2]`` and ``sigmas[0]`` as A1111 passes them.
    """
    spec = choice.sampler
    x = noise * sigmas[0] if x_start is None else x_start

    def callback(info: dict[str, Any]) -> None:
        step(int(info["i"]))

    kwargs: dict[str, Any] = {}
    if spec.takes("eta"):
        kwargs["eta"] = spec.default_eta if eta is None else eta
    if spec.takes("s_noise") and s_noise is not None:
        kwargs["s_noise"] = s_noise

    def draw(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        if next_noise is None:
            raise UsageError(f"{spec.label} needs per-step noise")
        return next_noise().to(x)

    if spec.function == "restart":
        from sdhub.generate.extra_samplers import restart_sampler

        return restart_sampler(denoise, x, sigmas, callback, lambda: draw(sigmas[0], sigmas[0]),
                               s_noise=1.0 if s_noise is None else s_noise)
    if spec.function == "lcm":
        from sdhub.generate.extra_samplers import sample_lcm

        return sample_lcm(denoise, x, sigmas, callback, draw)
    if spec.timesteps:
        raise UsageError(f"{spec.label} runs on timesteps; use sdhub.generate.timestep_samplers")

    function = getattr(kdiffusion_sampling(), spec.function)
    parameters = _signature(spec.function)
    if "noise_sampler" in parameters:
        kwargs["noise_sampler"] = brownian if spec.brownian_noise else draw
    if spec.solver_type:
        kwargs["solver_type"] = spec.solver_type
    if "sigma_min" in parameters:
        if model is None:
            raise UsageError(f"{spec.label} needs the model's schedule")
        kwargs["sigma_min"], kwargs["sigma_max"] = model.sigma_min, model.sigma_max
        if x_start is not None:
            kwargs["sigma_min"], kwargs["sigma_max"] = sigmas[-2], sigmas[0]
        if "n" in parameters:
            kwargs["n"] = len(sigmas) - 1 if x_start is not None else steps or len(sigmas) - 1
    else:
        kwargs["sigmas"] = sigmas
    return function(lambda x_in, sigma: denoise(x_in, sigma), x, callback=callback, disable=True, **kwargs)


#: Samplers whose pre-1.9 default was already their 1.10 "Automatic" (Restart had Karras from the start).
_AUTOMATIC_SINCE_SPLIT = ("Restart",)


def choice_from_infotext(sampler: str, schedule_type: str | None, version: str | None) -> SamplerChoice:
    """The sampler and schedule an infotext's ``Sampler``/``Schedule type``/``Version`` describe.

    A1111 1.9 split ``DPM++ 2M Karras`` into sampler and schedule and gave DPM++ 2M, DPM++ SDE,
    DPM2 and others a Karras or exponential "Automatic". An infotext without ``Schedule type``
    from before 1.9 (or without ``Version``) was drawn on the uniform schedule unless its name says
    otherwise, so it reruns with ``Uniform`` (A1111 1.10 would use the new default and draw another
    image). Unknown names raise ``BadInputError`` with one line.
    """
    from sdhub.errors import BadInputError
    from sdhub.generate.infotext import parse_version

    try:
        choice = resolve_sampler(sampler, schedule_type or "Automatic")
    except UsageError as error:
        raise BadInputError(f"cannot rerun this infotext: {error.message}") from None
    parsed = parse_version(version)
    from packaging.version import Version

    predates_split = parsed is None or parsed < Version("1.9.0")
    if (schedule_type is None and predates_split and choice.schedule_type == "Automatic"
            and choice.sampler.scheduler and choice.label not in _AUTOMATIC_SINCE_SPLIT):
        return SamplerChoice(choice.sampler, "Uniform")
    return choice
