"""Text-to-image sampling with A1111's semantics on loaded diffusers components.

``sample_images`` takes a ``LoadedModel`` and ``GenerationParams`` and returns decoded images:
per-image seeded noise (``rng``), prompt conditioning with emphasis, chunks, embeddings, prompt
editing and ``AND`` (``conditioning``), classifier-free guidance batched like A1111's
``CFGDenoiser`` (prompt schedules advance per model call, over twice the steps for second-order
samplers, as A1111 does), a k-diffusion sampler or A1111's own (``samplers``), and a VAE decode that
retries in fp32 when half precision produces NaNs (A1111's "Automatically revert VAE to 32-bit").
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from sdhub.errors import UsageError
from sdhub.generate.conditioning import Embedding, PromptEncoder, ScheduledCond, conditioning_schedule
from sdhub.generate.loading import LoadedModel
from sdhub.generate.prompt_schedule import prompt_schedule, split_and
from sdhub.generate.rng import RNG_SOURCES, ImageNoise, SeedPlan, default_rng_source, randn_local, random_seed
from sdhub.generate.extra_samplers import LCMSchedule
from sdhub.generate.samplers import (
    BrownianNoise,
    ModelSchedule,
    SamplerChoice,
    resolve_sampler,
    run_sampler,
    sigmas_for,
)
from sdhub.generate.timestep_samplers import run_timestep_sampler
from sdhub.generate.unipc import UniPCOptions
from sdhub.progress import NULL_PROGRESS, Progress, check_cancelled

#: Refiner aesthetic scores A1111 uses for the positive and the negative prompt.
REFINER_AESTHETIC = (6.0, 2.5)


@dataclass
class GenerationParams:
    """Everything that decides the image, named as in A1111's UI and infotext."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    sampler: str = "DPM++ 2M"
    schedule_type: str = "Automatic"
    cfg_scale: float = 7.0
    seed: int = -1
    width: int = 512
    height: int = 512
    clip_skip: int = 1
    batch_size: int = 1
    rng: str | None = None  # gpu | cpu | nv; None: A1111's GPU noise (real CUDA, else its NV replica)
    subseed: int | None = None
    subseed_strength: float = 0.0
    eta_noise_seed_delta: int = 0
    downcast_alphas_cumprod: bool = False
    emphasis: str = "Original"
    eta: float | None = None  # None: the sampler's A1111 default (1 for ancestral/SDE samplers, 0 for DDIM)
    s_noise: float | None = None  # None: 1.0
    discard_penultimate_sigma: bool = False  # A1111's "always discard next-to-last sigma" option
    seed_resize_from_w: int = 0  # A1111's "Resize seed from": noise drawn at this size, centred (0: off)
    seed_resize_from_h: int = 0
    unipc_variant: str = "bh1"  # A1111's UniPC settings (uni_pc_variant, _skip_type, _order, _lower_order_final)
    unipc_skip_type: str = "time_uniform"
    unipc_order: int = 3
    unipc_lower_order_final: bool = True

    def validate(self) -> None:
        """Refuse values A1111 would refuse, with the reason."""
        if self.steps < 1 or self.steps > 1000:
            raise UsageError(f"--steps must be between 1 and 1000, not {self.steps}")
        if self.width % 8 or self.height % 8 or not (64 <= self.width <= 8192) or not (64 <= self.height <= 8192):
            raise UsageError(f"the size must be multiples of 8 between 64 and 8192, not {self.width}x{self.height}")
        if self.batch_size < 1 or self.batch_size > 64:
            raise UsageError(f"--batch must be between 1 and 64, not {self.batch_size}")
        if self.clip_skip < 1 or self.clip_skip > 12:
            raise UsageError(f"--clip-skip must be between 1 and 12, not {self.clip_skip}")
        if not 0.0 <= self.subseed_strength <= 1.0:
            raise UsageError("the variation strength must be between 0 and 1")
        resolve_sampler(self.sampler, self.schedule_type)
        if self.eta is not None and self.eta < 0:
            raise UsageError(f"eta must be 0 or more, not {self.eta}")
        if self.rng is not None and self.rng not in RNG_SOURCES:
            raise UsageError(f"unknown RNG source {self.rng!r}; choose one of: {', '.join(RNG_SOURCES)}")
        if self.seed_resize_from_w < 0 or self.seed_resize_from_h < 0 or self.seed_resize_from_w % 8 \
                or self.seed_resize_from_h % 8:
            raise UsageError("the seed resize size must be multiples of 8 "
                             f"(0 for off), not {self.seed_resize_from_w}x{self.seed_resize_from_h}")
        self.unipc_options().validate()

    def unipc_options(self) -> UniPCOptions:
        return UniPCOptions(self.unipc_variant, self.unipc_skip_type, self.unipc_order, self.unipc_lower_order_final)

    def seed_resize_latent(self) -> tuple[int, int] | None:
        """The latent (height, width) the seed's noise is drawn at, when A1111's seed resize is on."""
        if self.seed_resize_from_w <= 0 or self.seed_resize_from_h <= 0:
            return None
        return self.seed_resize_from_h // 8, self.seed_resize_from_w // 8

    def with_seeds(self) -> "GenerationParams":
        """A copy with ``-1`` seeds replaced by random ones and the RNG source decided (what is used)."""
        seed = random_seed() if self.seed is None or self.seed < 0 else self.seed
        subseed = self.subseed
        if self.subseed_strength and (subseed is None or subseed < 0):
            subseed = random_seed()
        return GenerationParams(**{**asdict(self), "seed": seed, "subseed": subseed, "rng": self.rng_source()})

    def rng_source(self) -> str:
        return self.rng or default_rng_source()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SampledImages:
    """Decoded images with what happened on the way (seeds, fp32 VAE retry, timings)."""

    images: list[Any]
    seeds: list[int]
    subseeds: list[int]
    sampler: SamplerChoice
    rng: str
    used_embeddings: dict[str, Embedding] = field(default_factory=dict)
    vae_fp32_retry: bool = False
    nan_in_output: bool = False
    notes: list[str] = field(default_factory=list)
    sampling_seconds: float = 0.0
    decode_seconds: float = 0.0
    latents: torch.Tensor | None = None


@dataclass
class _Cond:
    """One (sub-)prompt's conditioning at a step: cross-attention context and SDXL's pooled vector."""

    context: torch.Tensor
    pooled: torch.Tensor | None
    weight: float = 1.0


class PromptConditioner:
    """Encodes prompts for one model family with F1's A1111 conditioning (SD1, SD2, SDXL)."""

    def __init__(self, model: LoadedModel, embeddings: list[Embedding], clip_skip: int, emphasis: str) -> None:
        self.model = model
        options = {"emphasis": emphasis}
        if model.family == "sdxl":
            if model.arch == "sdxl-refiner":
                self.encoders = [PromptEncoder(model.tokenizers["tokenizer_2"], model.text_encoders["text_encoder_2"],
                                               embeddings, layer=2, final_norm=False, pad_token_id=0,
                                               embedding_key="clip_g", return_pooled=True, **options)]
            else:
                self.encoders = list(PromptEncoder.sdxl_pair(
                    model.tokenizers["tokenizer"], model.text_encoders["text_encoder"],
                    model.tokenizers["tokenizer_2"], model.text_encoders["text_encoder_2"], embeddings, **options))
        elif model.family == "sd2":
            self.encoders = [PromptEncoder.sd2(model.tokenizers["tokenizer"], model.text_encoders["text_encoder"],
                                               embeddings, **options)]
        else:
            self.encoders = [PromptEncoder(model.tokenizers["tokenizer"], model.text_encoders["text_encoder"],
                                           embeddings, clip_skip, **options)]

    def schedule(self, prompt: str, steps: int) -> list[ScheduledCond]:
        """The prompt's conditioning per step range; SDXL concatenates CLIP-L and bigG along channels."""
        per_encoder = [conditioning_schedule(encoder, prompt, steps) for encoder in self.encoders]
        merged = []
        for entries in zip(*per_encoder):
            context = torch.cat([entry.cond for entry in entries], dim=-1)
            merged.append(ScheduledCond(entries[0].until_step, context, entries[-1].pooled))
        return merged

    def used_embeddings(self, prompt: str, steps: int) -> dict[str, Embedding]:
        """The embeddings the prompt's texts actually use (for ``TI hashes``)."""
        used: dict[str, Embedding] = {}
        for _, text in prompt_schedule(prompt, steps):
            for encoder in self.encoders:
                chunks, _ = encoder.tokenize_line(text)
                for chunk in chunks:
                    for _, embedding in chunk.fixes:
                        used[embedding.name] = embedding
        return used


class _PromptPlan:
    """A prompt split by ``AND`` into weighted parts, each with its own step schedule."""

    def __init__(self, conditioner: PromptConditioner, prompt: str, steps: int, *, negative: bool = False,
                 zero: bool = False) -> None:
        # A1111 splits only the positive prompt on AND; the negative prompt is encoded as written.
        parts = [(prompt, 1.0)] if negative else split_and(prompt)
        self.parts = [(conditioner.schedule(text, steps), weight) for text, weight in parts]
        self.zero = zero

    def at(self, step: int) -> list[_Cond]:
        """The conds for model call ``step``; past the schedule's end A1111 falls back to its first entry."""
        conds = []
        for schedule, weight in self.parts:
            entry = next((item for item in schedule if step <= item.until_step), schedule[0])
            context, pooled = entry.cond, entry.pooled
            if self.zero:
                context = torch.zeros_like(context)
                pooled = None if pooled is None else torch.zeros_like(pooled)
            conds.append(_Cond(context, pooled, weight))
        return conds


class _UNetDenoiser:
    """k-diffusion's CompVis(V)Denoiser around a diffusers UNet, plus SDXL's size conditioning."""

    def __init__(self, model: LoadedModel, schedule: ModelSchedule, width: int, height: int,
                 image_cond: torch.Tensor | None) -> None:
        self.model = model
        self.schedule = schedule
        self.v_prediction = model.prediction_type == "v_prediction"
        self.image_cond = image_cond
        self.width, self.height = width, height

    def time_ids(self, batch: int, negative: bool) -> torch.Tensor:
        if self.model.arch == "sdxl-refiner":
            score = REFINER_AESTHETIC[1] if negative else REFINER_AESTHETIC[0]
            values = [self.height, self.width, 0, 0, score]
        else:
            values = [self.height, self.width, 0, 0, self.height, self.width]
        return torch.tensor([values] * batch, dtype=torch.float32, device=self.model.device)

    def raw(self, x_in: torch.Tensor, t: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor | None,
            time_ids: torch.Tensor | None) -> torch.Tensor:
        """The UNet's output (eps or v) in float32."""
        unet = self.model.unet
        dtype = unet.dtype
        if self.image_cond is not None:
            x_in = torch.cat([x_in, self.image_cond.expand(x_in.shape[0], -1, -1, -1)], dim=1)
        extra = {}
        if pooled is not None:
            extra["added_cond_kwargs"] = {"text_embeds": pooled.to(dtype), "time_ids": time_ids.to(dtype)}
        output = unet(x_in.to(dtype), t, encoder_hidden_states=context.to(dtype), return_dict=False, **extra)[0]
        return output.float()

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor | None,
                time_ids: torch.Tensor | None) -> torch.Tensor:
        sigma_b = sigma.reshape(-1, 1, 1, 1)
        c_in = 1 / (sigma_b ** 2 + 1) ** 0.5
        t = self.schedule.sigma_to_t(sigma)
        output = self.raw(x * c_in, t, context, pooled, time_ids)
        if isinstance(self.schedule, LCMSchedule):
            # A1111's LCM denoiser reads the output as eps and applies LCM's boundary condition
            c_skip, c_out = (value.reshape(-1, 1, 1, 1) for value in self.schedule.boundary_scalings(sigma))
            return c_out * (x + output * -sigma_b) + c_skip * x
        if self.v_prediction:
            c_skip = 1 / (sigma_b ** 2 + 1)
            c_out = -sigma_b / (sigma_b ** 2 + 1) ** 0.5
            return output * c_out + x * c_skip
        return x + output * -sigma_b

    def eps_at(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor | None,
               time_ids: torch.Tensor | None) -> torch.Tensor:
        output = self.raw(x, t, context, pooled, time_ids)
        if not self.v_prediction:
            return output
        alphas = self.schedule.alphas_cumprod.to(x.device, torch.float32)
        index = t.to(torch.long)
        sqrt_alpha = alphas[index].sqrt().reshape(-1, 1, 1, 1)
        sqrt_one_minus = (1 - alphas[index]).sqrt().reshape(-1, 1, 1, 1)
        return sqrt_alpha * output + sqrt_one_minus * x


class _CFGDenoiser:
    """A1111's ``CFGDenoiser``: cond(s) and uncond in one UNet batch, ``uncond + w·cfg·(cond − uncond)``."""

    def __init__(self, inner: _UNetDenoiser, positive: _PromptPlan, negative: _PromptPlan, cfg_scale: float,
                 batch: int) -> None:
        self.inner = inner
        self.positive = positive
        self.negative = negative
        self.cfg_scale = cfg_scale
        self.batch = batch
        self.step = 0

    def _combine(self, x: torch.Tensor, level: torch.Tensor, evaluate: Callable[..., torch.Tensor]) -> torch.Tensor:
        conds = self.positive.at(self.step)
        uncond = self.negative.at(self.step)[0]
        batch = self.batch
        entries = [(cond, False) for cond in conds] + [(uncond, True)]
        lengths = {cond.context.shape[1] for cond, _ in entries}
        if len(lengths) == 1:
            x_in = torch.cat([x] * len(entries))
            level_in = torch.cat([level] * len(entries))
            context = torch.cat([cond.context.expand(batch, -1, -1) for cond, _ in entries])
            pooled, time_ids = self._vectors(entries)
            out = evaluate(x_in, level_in, context, pooled, time_ids)
            outputs = list(out.split(batch))
        else:
            # A1111 (without "Pad conds") runs prompts of different chunk counts as separate batches.
            outputs = []
            for cond, negative in entries:
                pooled, time_ids = self._vectors([(cond, negative)])
                outputs.append(evaluate(x, level, cond.context.expand(batch, -1, -1), pooled, time_ids))
        result = outputs[-1].clone()
        for (cond, _), output in zip(entries[:-1], outputs[:-1]):
            result += (output - outputs[-1]) * (cond.weight * self.cfg_scale)
        self.step += 1  # A1111 advances the prompt schedule on every model call, not every step
        return result

    def _vectors(self, entries: list[tuple[_Cond, bool]]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if entries[0][0].pooled is None:
            return None, None
        pooled = torch.cat([cond.pooled.expand(self.batch, -1) for cond, _ in entries])
        time_ids = torch.cat([self.inner.time_ids(self.batch, negative) for _, negative in entries])
        return pooled, time_ids

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma_in = sigma.to(x.device, torch.float32).reshape(-1).expand(x.shape[0])
        return self._combine(x, sigma_in, self.inner.denoise)

    def eps(self, x: torch.Tensor, timestep: int) -> torch.Tensor:
        t = torch.full((x.shape[0],), float(timestep), device=x.device)
        return self._combine(x, t, self.inner.eps_at)


def _txt2img_image_cond(model: LoadedModel, height: int, width: int) -> torch.Tensor | None:
    """A1111's txt2img conditioning for inpainting UNets: an all-ones mask and a black image's latent."""
    extra_channels = model.unet.config.in_channels - 4
    if extra_channels <= 0:
        return None
    vae = model.vae
    # A1111 1.10 encodes zeros through images_tensor_to_samples, which maps [0, 1] to [-1, 1]: black, not grey
    black = torch.full((1, 3, height, width), -1.0, device=model.device, dtype=vae.dtype)
    latent = vae.encode(black).latent_dist.mode().float() * vae.config.scaling_factor
    if extra_channels == 5:
        mask = torch.ones(1, 1, latent.shape[2], latent.shape[3], device=model.device)
        return torch.cat([mask, latent], dim=1)
    return latent[:, :extra_channels]


#: The building blocks of a UNet or VAE decoder before each of which generation looks whether it
#: was asked to stop: one denoising step of a full-size model or its VAE decode takes seconds on a
#: CPU, one of these blocks a fraction of a second.
CHECKED_BLOCKS = ("ResnetBlock2D", "Transformer2DModel", "Attention")


@contextlib.contextmanager
def stops_inside(progress: Progress, *models: Any) -> Iterator[None]:
    """While the block runs, a stop asked of ``progress`` interrupts ``models`` between their building blocks."""
    def check(*_: Any) -> None:
        check_cancelled(progress)

    handles = [module.register_forward_pre_hook(check) for model in models if model is not None
               for module in model.modules() if type(module).__name__ in CHECKED_BLOCKS]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def decode_latents(model: LoadedModel, latents: torch.Tensor, auto_fp32: bool = True
                   ) -> tuple[torch.Tensor, bool, bool]:
    """VAE-decode to [0, 1] images; on NaNs in half precision, retry in fp32 once (and keep it there).

    Returns ``(images, retried_in_fp32, still_has_nan)``.
    """
    vae = model.vae
    scale = vae.config.scaling_factor
    decoded = vae.decode(latents.to(vae.dtype) * (1.0 / scale), return_dict=False)[0]
    retried = False
    if not torch.isfinite(decoded).all() and vae.dtype != torch.float32 and auto_fp32:
        torch.nn.Module.to(vae, torch.float32)  # diffusers' .to() would warn on stderr
        decoded = vae.decode(latents.to(torch.float32) * (1.0 / scale), return_dict=False)[0]
        retried = True
    has_nan = not bool(torch.isfinite(decoded).all())
    images = torch.clamp((decoded.float() + 1.0) / 2.0, min=0.0, max=1.0)
    return torch.nan_to_num(images, nan=0.0), retried, has_nan


def to_pil(images: torch.Tensor) -> list[Any]:
    """A1111's conversion: ``255 * x`` truncated to uint8 (not rounded)."""
    from PIL import Image

    arrays = (255.0 * images.permute(0, 2, 3, 1).cpu().numpy()).astype(np.uint8)
    return [Image.fromarray(array) for array in arrays]


def guided_denoiser(model: LoadedModel, params: GenerationParams, choice: SamplerChoice,
                    embeddings: list[Embedding], image_cond: torch.Tensor | None = None
                    ) -> tuple[ModelSchedule, _CFGDenoiser, dict[str, Embedding]]:
    """The model's noise schedule, A1111's CFG denoiser for ``params``' prompts and the embeddings they use.

    ``image_cond`` replaces an inpainting UNet's txt2img conditioning (img2img and inpaint pass theirs)."""
    spec = choice.sampler
    conditioner = PromptConditioner(model, embeddings, params.clip_skip, params.emphasis)
    # A1111 schedules prompt edits over the sampler's total steps: twice the steps for second-order ones
    prompt_steps = spec.total_steps(params.steps)
    positive = _PromptPlan(conditioner, params.prompt, prompt_steps)
    zero_negative = model.family == "sdxl" and params.negative_prompt == ""
    negative = _PromptPlan(conditioner, params.negative_prompt, prompt_steps, negative=True, zero=zero_negative)
    used = conditioner.used_embeddings(params.prompt, prompt_steps)
    used.update(conditioner.used_embeddings(params.negative_prompt, prompt_steps))

    schedule_class = LCMSchedule if spec.function == "lcm" else ModelSchedule
    schedule = schedule_class(model.alphas_cumprod, downcast=params.downcast_alphas_cumprod)
    if image_cond is None:
        image_cond = _txt2img_image_cond(model, params.height, params.width)
    inner = _UNetDenoiser(model, schedule, params.width, params.height, image_cond)
    return schedule, _CFGDenoiser(inner, positive, negative, params.cfg_scale, params.batch_size), used


@torch.inference_mode()
def sample_images(model: LoadedModel, params: GenerationParams, *, embeddings: list[Embedding] | None = None,
                  progress: Progress = NULL_PROGRESS, auto_fp32_vae: bool = True, decode: bool = True
                  ) -> SampledImages:
    """Generate ``params.batch_size`` images (seeds must already be resolved, see ``with_seeds``).

    With ``decode=False`` only the latents come back (a latent hires fix upscales them first)."""
    params.validate()
    if params.seed < 0:
        raise UsageError("resolve -1 seeds with GenerationParams.with_seeds() before sampling")
    choice = resolve_sampler(params.sampler, params.schedule_type)
    spec = choice.sampler
    source = params.rng_source()
    device = model.device
    batch = params.batch_size
    plan = SeedPlan.for_batch(params.seed, batch, subseed=params.subseed, subseed_strength=params.subseed_strength,
                              eta_noise_seed_delta=params.eta_noise_seed_delta)
    latent_shape = (4, params.height // 8, params.width // 8)

    schedule, cfg, used = guided_denoiser(model, params, choice, embeddings or [])
    noise = ImageNoise(latent_shape, plan, source, device, resize_from=params.seed_resize_latent())
    x = noise.first()

    # DPM adaptive chooses its own step count
    total = None if spec.function == "sample_dpm_adaptive" else choice.model_evaluations(params.steps)
    task = progress.task("Sampling", total=total, unit="steps")

    def on_step(index: int) -> None:
        task.advance(1)  # raises Interrupted once ``progress`` is cancelled

    started = time.perf_counter()
    check_cancelled(progress)
    with stops_inside(progress, model.unet):
        try:
            if spec.timesteps:
                eta = 0.0 if params.eta is None else params.eta
                latents = run_timestep_sampler(spec.function, cfg.eps, x, params.steps,
                                               schedule.alphas_cumprod.to(device), on_step, noise=noise.next, eta=eta,
                                               discard_penultimate=params.discard_penultimate_sigma,
                                               unipc=params.unipc_options())
            else:
                sigmas = sigmas_for(choice, schedule, params.steps, sdxl=model.family == "sdxl",
                                    discard_penultimate=params.discard_penultimate_sigma)
                brownian = None
                if spec.brownian_noise:
                    positive_sigmas = sigmas[sigmas > 0]
                    brownian = BrownianNoise(x, positive_sigmas.min(), sigmas.max(), plan.seeds,
                                             lambda seed, size: randn_local(source, seed, size, device))
                latents = run_sampler(choice, cfg.denoise, x, sigmas.to(device), on_step, model=schedule,
                                      steps=params.steps, next_noise=noise.next, brownian=brownian, eta=params.eta,
                                      s_noise=params.s_noise)
        finally:
            task.finish()
    sampling_seconds = time.perf_counter() - started

    result = SampledImages(images=[], seeds=list(plan.seeds), subseeds=list(plan.subseeds), sampler=choice,
                           rng=source, used_embeddings=used, sampling_seconds=sampling_seconds, latents=latents)
    if decode:
        decode_into(result, model, latents, progress, auto_fp32_vae)
    return result


def decode_into(result: SampledImages, model: LoadedModel, latents: torch.Tensor, progress: Progress,
                auto_fp32_vae: bool = True) -> None:
    """Decode ``latents`` into ``result``'s images, noting an fp32 retry or NaNs and the time taken."""
    started = time.perf_counter()
    check_cancelled(progress)
    with stops_inside(progress, model.vae):
        images, retried, has_nan = decode_latents(model, latents, auto_fp32_vae)
    result.decode_seconds += time.perf_counter() - started
    if retried:
        result.notes.append("the VAE produced NaNs in half precision; decoded again in fp32 "
                            "(A1111's --no-half-vae fallback): use an fp16-safe VAE or --vae-dtype fp32")
    if has_nan:
        result.notes.append("the decoded image contains NaNs (shown black)")
    result.images = to_pil(images)
    result.vae_fp32_retry = result.vae_fp32_retry or retried
    result.nan_in_output = has_nan
