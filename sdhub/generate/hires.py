"""A1111's hires fix: a txt2img first pass, an upscale, and an img2img second pass over the same seeds.

The order follows A1111 1.10's ``StableDiffusionProcessingTxt2Img``: the target size from ``Hires
upscale`` (``int(width * scale)``) or ``Hires resize`` (fitted to the first pass's aspect, the overflow
truncated from the latents, centred); a latent upscaler interpolates the first pass's latents, any
other upscaler resizes its decoded images (``resize_image`` "Just resize" through the upscaler) which
are encoded again; the second pass draws fresh noise from the same seeds at the new size and samples
exactly ``Hires steps`` (0: the first pass's steps) steps over a schedule stretched by the denoising
strength, with its own sampler, schedule type, prompts and (Forge's) CFG scale when given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from sdhub.errors import BadInputError, UsageError
from sdhub.generate.conditioning import Embedding
from sdhub.generate.loading import LoadedModel
from sdhub.generate.pipeline import GenerationParams, SampledImages, decode_into, sample_images
from sdhub.generate.samplers import SamplerChoice, resolve_sampler
from sdhub.generate.schedules import schedule_by_name
from sdhub.progress import NULL_PROGRESS, Progress

#: A1111's hires defaults (txt2img UI): Latent upscaler, x2, denoising 0.7.
DEFAULT_UPSCALER, DEFAULT_SCALE, DEFAULT_STRENGTH = "Latent", 2.0, 0.7
_SAME_SAMPLER, _SAME_SCHEDULE = "Use same sampler", "Use same scheduler"


@dataclass
class HiresParams:
    """The hires fix's settings, named as in A1111's infotext (``Hires upscale``, ``Hires steps``...)."""

    upscaler: str = DEFAULT_UPSCALER
    scale: float = DEFAULT_SCALE
    resize_width: int = 0
    resize_height: int = 0
    steps: int = 0  # 0: the first pass's steps
    denoising_strength: float = DEFAULT_STRENGTH
    sampler: str | None = None  # None: the first pass's
    schedule_type: str | None = None  # None: the first pass's
    prompt: str = ""  # "": the first pass's
    negative_prompt: str = ""
    cfg_scale: float | None = None  # Forge's "Hires CFG Scale"; None: the first pass's

    def validate(self) -> None:
        if not 0.0 < self.denoising_strength <= 1.0:
            raise UsageError(f"the hires denoising strength must be above 0 and at most 1, "
                             f"not {self.denoising_strength}")
        if self.steps < 0 or self.steps > 1000:
            raise UsageError(f"--hires-steps must be between 0 and 1000, not {self.steps}")
        if self.resize_width < 0 or self.resize_height < 0:
            raise UsageError("--hires-resize sizes must not be negative")
        if not (self.resize_width or self.resize_height) and not 1.0 <= self.scale <= 8.0:
            raise UsageError(f"--hires-scale must be between 1 and 8, not {self.scale}")
        if self.sampler is not None:
            resolve_sampler(self.sampler, self.schedule_type)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def target(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(width, height, truncate_x, truncate_y)``: the size the first pass is upscaled to and the
        latent pixels cut off to reach ``Hires resize`` (A1111's ``calculate_target_resolution``)."""
        if not (self.resize_width or self.resize_height):
            return int(width * self.scale), int(height * self.scale), 0, 0
        if not self.resize_height:
            return self.resize_width, self.resize_width * height // width, 0, 0
        if not self.resize_width:
            return self.resize_height * width // height, self.resize_height, 0, 0
        if width / height < self.resize_width / self.resize_height:
            to_width, to_height = self.resize_width, self.resize_width * height // width
        else:
            to_width, to_height = self.resize_height * width // height, self.resize_height
        return to_width, to_height, (to_width - self.resize_width) // 8, (to_height - self.resize_height) // 8

    def pass_params(self, params: GenerationParams) -> GenerationParams:
        """The second pass's generation parameters."""
        from sdhub.generate.extra_networks import extract_extra_networks

        width, height, _, _ = self.target(params.width, params.height)
        # The first pass's LoRAs stay applied; tags in the hires prompt are taken out of its text. A1111
        # switches networks when the hires prompt names others: refused rather than drawn differently.
        prompt = params.prompt
        if self.prompt:
            prompt, hires_tags = extract_extra_networks(self.prompt)
            first_tags = extract_extra_networks(params.prompt)[1]
            if sorted((t.network, tuple(t.items)) for t in hires_tags) != sorted((t.network, tuple(t.items))
                                                                                  for t in first_tags):
                raise UsageError("a hires prompt whose extra networks (<lora:...>) differ from the first pass's is "
                                 "not supported yet; use the same tags in both prompts")
        return replace(params, sampler=self.sampler or params.sampler,
                       schedule_type=self.schedule_type or params.schedule_type,
                       prompt=prompt, negative_prompt=self.negative_prompt or params.negative_prompt,
                       cfg_scale=params.cfg_scale if self.cfg_scale is None else self.cfg_scale,
                       steps=self.steps or params.steps, width=width, height=height)

    def infotext_fields(self, params: GenerationParams) -> dict[str, Any]:
        """The fields A1111 adds before the sampler's own (``init``: sampler, prompts, size, steps, upscaler)."""
        fields: dict[str, Any] = {}
        if self.sampler is not None and resolve_sampler(self.sampler).label != resolve_sampler(params.sampler).label:
            fields["Hires sampler"] = resolve_sampler(self.sampler).label
        if self.prompt and self.prompt != params.prompt:
            fields["Hires prompt"] = self.prompt
        if self.negative_prompt and self.negative_prompt != params.negative_prompt:
            fields["Hires negative prompt"] = self.negative_prompt
        if self.cfg_scale is not None and self.cfg_scale != params.cfg_scale:
            fields["Hires CFG Scale"] = self.cfg_scale
        if self.resize_width or self.resize_height:
            fields["Hires resize"] = f"{self.resize_width}x{self.resize_height}"
        else:
            fields["Hires upscale"] = self.scale
        if self.steps:
            fields["Hires steps"] = self.steps
        fields["Hires upscaler"] = self.upscaler
        fields["Denoising strength"] = self.denoising_strength
        return fields


def hires_schedule_field(first: SamplerChoice, second: SamplerChoice) -> dict[str, Any]:
    """``Hires schedule type`` as A1111 writes it: the second pass's schedule when it differs from the
    first pass's (A1111 compares the schedules its sigma functions ran with)."""
    if second.sampler.timesteps:
        return {}
    second_label = None if second.schedule == "automatic" else schedule_by_name(second.schedule).label
    first_label = None if first.sampler.timesteps or first.schedule == "automatic" else \
        schedule_by_name(first.schedule).label
    if second_label is not None and second_label != first_label:
        return {"Hires schedule type": second_label}
    return {}


@dataclass
class HiresImages:
    """The final images (first pass's sampler for ``Sampler``) and the second pass's sampler choice."""

    sampled: SampledImages
    second_choice: SamplerChoice


@torch.inference_mode()
def sample_with_hires(model: LoadedModel, params: GenerationParams, hires: HiresParams, upscaler: Any, *,
                      embeddings: list[Embedding] | None = None, progress: Progress = NULL_PROGRESS,
                      auto_fp32_vae: bool = True) -> HiresImages:
    """Both passes of the hires fix; ``upscaler`` is ``find_upscaler``'s answer for ``hires.upscaler``."""
    from sdhub.generate.image_resize import resize_image
    from sdhub.generate.img2img import denoise_latents, encode_images
    from sdhub.generate.upscalers import LatentUpscaler

    hires.validate()
    latent = isinstance(upscaler, LatentUpscaler)
    first = sample_images(model, params, embeddings=embeddings, progress=progress, auto_fp32_vae=auto_fp32_vae,
                          decode=not latent)
    width, height, truncate_x, truncate_y = hires.target(params.width, params.height)
    if latent:
        samples = upscaler.upscale_latents(first.latents, height // 8, width // 8)
    else:
        resized = [resize_image("Just resize", image, width, height, upscaler) for image in first.images]
        samples = encode_images(model, resized)
    samples = samples[:, :, truncate_y // 2:samples.shape[2] - (truncate_y + 1) // 2,
                      truncate_x // 2:samples.shape[3] - (truncate_x + 1) // 2]
    second_params = hires.pass_params(params)
    second = denoise_latents(model, second_params, samples, hires.denoising_strength, exact_steps=True,
                             embeddings=embeddings, progress=progress, label="Hires pass")
    decode_into(second, model, second.latents, progress, auto_fp32_vae)
    used = {**first.used_embeddings, **second.used_embeddings}
    combined = replace(second, sampler=first.sampler, used_embeddings=used, notes=first.notes + second.notes,
                       sampling_seconds=first.sampling_seconds + second.sampling_seconds,
                       decode_seconds=first.decode_seconds + second.decode_seconds,
                       vae_fp32_retry=first.vae_fp32_retry or second.vae_fp32_retry)
    return HiresImages(combined, second.sampler)


def hires_from_infotext(fields: dict[str, str]) -> HiresParams | None:
    """The hires fix an infotext (``Infotext.generation_fields()``) describes, or None for none.

    A second checkpoint (``Hires checkpoint``) cannot be honoured and is refused in one line.
    """
    keys = ("Hires upscale", "Hires resize-1", "Hires upscaler", "Hires steps")
    if not any(key in fields for key in keys):
        return None
    checkpoint = fields.get("Hires checkpoint")
    if checkpoint and checkpoint != "Use same checkpoint":
        raise BadInputError(f"cannot rerun this infotext: sdhub does not support a hires pass with another "
                            f"checkpoint (Hires checkpoint {checkpoint})")

    def number(key: str, cast: type, default: Any) -> Any:
        value = fields.get(key)
        if value in (None, ""):
            return default
        try:
            return cast(float(value))
        except ValueError:
            raise BadInputError(f"the infotext's {key!r} is {value!r}, not a number") from None

    sampler = fields.get("Hires sampler")
    schedule = fields.get("Hires schedule type")
    return HiresParams(
        upscaler=fields.get("Hires upscaler") or DEFAULT_UPSCALER, scale=number("Hires upscale", float, DEFAULT_SCALE),
        resize_width=number("Hires resize-1", int, 0), resize_height=number("Hires resize-2", int, 0),
        steps=number("Hires steps", int, 0), denoising_strength=number("Denoising strength", float, 0.75),
        sampler=None if sampler in (None, "", _SAME_SAMPLER) else sampler,
        schedule_type=None if schedule in (None, "", _SAME_SCHEDULE) else schedule,
        prompt=fields.get("Hires prompt", ""), negative_prompt=fields.get("Hires negative prompt", ""),
        cfg_scale=number("Hires CFG Scale", float, None),
    )
