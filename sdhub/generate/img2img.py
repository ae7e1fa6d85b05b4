"""img2img as A1111 does it: encode the init image, noise it to where the truncated schedule starts, sample.

A1111 (``setup_img2img_steps``, ``sample_img2img``) keeps ``steps`` and runs the last
``t_enc + 1`` of them, ``t_enc = int(min(strength, 0.999) * steps)``; the hires fix's second pass
instead stretches the schedule so exactly the asked steps run (``steps / min(strength, 0.999)``
steps, ``t_enc = asked - 1``). Sigma samplers start at ``init + noise * sigma_sched[0]``; DDIM and
PLMS start at ``init * sqrt(a) + noise * sqrt(1 - a)`` for the timestep ``t_enc`` and walk the
timesteps below it. The noise is the image seed's first draw at the latent size, as in txt2img.
The init latent is the VAE posterior's mean (A1111 samples it with the unseeded global RNG,
a difference of the VAE's tiny posterior spread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdhub.errors import UsageError
from sdhub.generate.conditioning import Embedding
from sdhub.generate.latent_mask import LatentMask, MaskBlendedDenoiser, inpainting_conditioning, inpainting_unet
from sdhub.generate.loading import LoadedModel
from sdhub.generate.pipeline import GenerationParams, SampledImages, decode_into, guided_denoiser, stops_inside
from sdhub.generate.rng import ImageNoise, SeedPlan, randn_local
from sdhub.generate.samplers import BrownianNoise, resolve_sampler, run_sampler, sigmas_for
from sdhub.progress import NULL_PROGRESS, Progress, check_cancelled

#: A1111's img2img default denoising strength.
DEFAULT_STRENGTH = 0.75


@dataclass
class Img2ImgParams:
    """The init image and how it is used (A1111's img2img tab)."""

    init_image: str | Path
    denoising_strength: float = DEFAULT_STRENGTH
    resize_mode: str = "Just resize"
    # Inpaint (A1111's inpaint tab): a mask file turns the run into an inpaint; white is redrawn
    mask: str | Path | None = None
    mask_blur: int = 4
    mask_invert: bool = False  # A1111's "Inpaint not masked"
    masked_content: str = "original"  # fill | original | latent noise | latent nothing
    inpaint_area: str = "Whole picture"  # or "Only masked"
    masked_padding: int = 32  # "Only masked padding, pixels"
    mask_weight: float = 1.0  # "Conditional mask weight" of inpainting UNets

    def validate(self) -> None:
        from sdhub.generate.image_resize import resize_mode_name

        if not 0.0 <= self.denoising_strength <= 1.0:
            raise UsageError(f"--denoising-strength must be between 0 and 1, not {self.denoising_strength}")
        self.resize_mode = resize_mode_name(self.resize_mode)
        if not 0.0 <= self.mask_weight <= 1.0:
            raise UsageError(f"the conditional mask weight must be between 0 and 1, not {self.mask_weight}")
        if self.mask is not None:
            from sdhub.generate.inpaint import validate_inpaint

            validate_inpaint(self)

    def to_dict(self) -> dict[str, Any]:
        values = {"init_image": str(self.init_image), "denoising_strength": self.denoising_strength,
                  "resize_mode": self.resize_mode, "mask": None if self.mask is None else str(self.mask)}
        if self.mask is not None:
            values.update(mask_blur=self.mask_blur, mask_invert=self.mask_invert, masked_content=self.masked_content,
                          inpaint_area=self.inpaint_area, masked_padding=self.masked_padding,
                          mask_weight=self.mask_weight)
        return values

    def infotext_fields(self) -> dict[str, Any]:
        """What A1111 writes for img2img beyond txt2img's fields (an inpaint's own come from ``inpaint``)."""
        return {"Denoising strength": self.denoising_strength}


def img2img_steps(steps: int, strength: float, exact_steps: bool) -> tuple[int, int]:
    """A1111's ``setup_img2img_steps``: ``(schedule steps, t_enc)``; ``exact_steps`` runs ``steps`` steps."""
    if exact_steps:
        total = int(steps / min(strength, 0.999)) if strength > 0 else 0
        return total, steps - 1
    return steps, int(min(strength, 0.999) * steps)


def read_init_image(path: str | Path) -> Any:
    """The init image as a PIL image, or a one-line ``BadInputError``."""
    from sdhub.generate.image_resize import read_image

    return read_image(path, "the init image")


@torch.inference_mode()
def encode_images(model: LoadedModel, images: list[Any]) -> torch.Tensor:
    """VAE latents of RGB PIL images (A1111's ``images_tensor_to_samples``, one image at a time)."""
    vae = model.vae
    latents = []
    for image in images:
        array = np.moveaxis(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, 2, 0)
        pixels = torch.from_numpy(array).unsqueeze(0).to(model.device, vae.dtype) * 2 - 1
        latents.append(vae.encode(pixels).latent_dist.mode().float() * vae.config.scaling_factor)
    return torch.cat(latents)


@torch.inference_mode()
def denoise_latents(model: LoadedModel, params: GenerationParams, init_latents: torch.Tensor, strength: float, *,
                    exact_steps: bool = False, embeddings: list[Embedding] | None = None,
                    progress: Progress = NULL_PROGRESS, label: str = "Sampling", image_cond: torch.Tensor | None = None,
                    latent_mask: LatentMask | None = None) -> SampledImages:
    """Noise ``init_latents`` (one per image of the batch) by ``strength`` and sample them back with
    ``params`` (prompts, sampler, seeds, size), as A1111's ``sample_img2img``; images not decoded.

    ``image_cond`` is an inpainting UNet's conditioning; ``latent_mask`` keeps the unmasked area (inpaint)."""
    if params.seed < 0:
        raise UsageError("resolve -1 seeds with GenerationParams.with_seeds() before sampling")
    choice = resolve_sampler(params.sampler, params.schedule_type)
    spec = choice.sampler
    if spec.function == "unipc":
        raise UsageError("img2img and the hires fix do not support UniPC yet; choose another sampler")
    source = params.rng_source()
    device = model.device
    plan = SeedPlan.for_batch(params.seed, params.batch_size, subseed=params.subseed,
                              subseed_strength=params.subseed_strength,
                              eta_noise_seed_delta=params.eta_noise_seed_delta)
    schedule, cfg, used = guided_denoiser(model, params, choice, embeddings or [], image_cond)
    if latent_mask is not None:
        cfg = MaskBlendedDenoiser(cfg, latent_mask)
    x = init_latents.to(device, torch.float32)
    # A1111 draws the second pass's noise (and img2img's) with the same seed resize as txt2img
    noise = ImageNoise(tuple(x.shape[1:]), plan, source, device, resize_from=params.seed_resize_latent())
    first_noise = noise.first()
    steps, t_enc = img2img_steps(params.steps, strength, exact_steps)
    if steps < 1:
        raise UsageError("a denoising strength of 0 leaves nothing to sample; give a strength above 0")
    task = progress.task(label, total=t_enc + 1, unit="steps")
    started = time.perf_counter()
    check_cancelled(progress)
    with stops_inside(progress, model.unet):
        try:
            latents = _sample(choice, schedule, cfg, x, first_noise, noise, plan, params, steps, t_enc,
                              model, lambda _index: task.advance(1))
        finally:
            task.finish()
    if latent_mask is not None:
        latents = latent_mask.blend(latents)
    return SampledImages(images=[], seeds=list(plan.seeds), subseeds=list(plan.subseeds), sampler=choice,
                         rng=source, used_embeddings=used, sampling_seconds=time.perf_counter() - started,
                         latents=latents)


def _sample(choice: Any, schedule: Any, cfg: Any, x: torch.Tensor, first_noise: torch.Tensor, noise: ImageNoise,
            plan: SeedPlan, params: GenerationParams, steps: int, t_enc: int, model: LoadedModel,
            on_step: Any) -> torch.Tensor:
    spec = choice.sampler
    device = model.device
    if spec.timesteps:
        from sdhub.generate.timestep_samplers import ddim_timesteps, sample_ddim, sample_plms

        alphas = schedule.alphas_cumprod.to(device)
        timesteps = ddim_timesteps(steps, params.discard_penultimate_sigma).to(device)
        t_enc = min(t_enc, len(timesteps) - 1)
        alpha = alphas[timesteps[t_enc]]
        start = x * alpha.sqrt() + first_noise * (1 - alpha).sqrt()
        sched = timesteps[:t_enc]
        if spec.function == "ddim":
            eta = 0.0 if params.eta is None else params.eta
            return sample_ddim(cfg.eps, start, sched, alphas, on_step, noise.next, eta)
        return sample_plms(cfg.eps, start, sched, alphas, on_step)
    sigmas = sigmas_for(choice, schedule, steps, sdxl=model.family == "sdxl",
                        discard_penultimate=params.discard_penultimate_sigma)
    sigma_sched = sigmas[steps - t_enc - 1:].to(device)
    start = x + first_noise * sigma_sched[0]
    brownian = None
    if spec.brownian_noise:
        # A1111 builds the Brownian tree over the whole schedule, not the truncated one
        source = params.rng_source()
        brownian = BrownianNoise(x, sigmas[sigmas > 0].min(), sigmas.max(), plan.seeds,
                                 lambda seed, size: randn_local(source, seed, size, device))
    return run_sampler(choice, cfg.denoise, first_noise, sigma_sched, on_step, model=schedule, steps=steps,
                       next_noise=noise.next, brownian=brownian, eta=params.eta, s_noise=params.s_noise,
                       x_start=start)


@torch.inference_mode()
def sample_img2img(model: LoadedModel, params: GenerationParams, img2img: Img2ImgParams, *,
                   embeddings: list[Embedding] | None = None, progress: Progress = NULL_PROGRESS,
                   auto_fp32_vae: bool = True, upscaler: Any = None) -> SampledImages:
    """A1111's img2img of ``img2img.init_image``: ``params.batch_size`` images, decoded."""
    from sdhub.generate.image_resize import flatten

    img2img.validate()
    image = flatten(read_init_image(img2img.init_image))
    return sample_img2img_image(model, params, image, img2img.denoising_strength, img2img.resize_mode,
                                embeddings=embeddings, progress=progress, auto_fp32_vae=auto_fp32_vae,
                                upscaler=upscaler, mask_weight=img2img.mask_weight)


@torch.inference_mode()
def sample_img2img_image(model: LoadedModel, params: GenerationParams, image: Any, strength: float,
                         resize_mode: str = "Just resize", *, embeddings: list[Embedding] | None = None,
                         progress: Progress = NULL_PROGRESS, auto_fp32_vae: bool = True,
                         upscaler: Any = None, mask_weight: float = 1.0) -> SampledImages:
    """img2img of an RGB PIL ``image``: resized to ``params``' size by ``resize_mode`` (the latents
    interpolated instead for "Just resize (latent upscale)"), encoded, sampled, decoded."""
    from sdhub.generate.image_resize import LATENT_RESIZE, resize_image

    latent_resize = resize_mode == LATENT_RESIZE
    if not latent_resize:
        image = resize_image(resize_mode, image, params.width, params.height, upscaler)
    latents = encode_images(model, [image])
    if latent_resize:
        latents = torch.nn.functional.interpolate(latents, size=(params.height // 8, params.width // 8),
                                                  mode="bilinear")
    latents = latents.expand(params.batch_size, -1, -1, -1)
    image_cond = None
    if inpainting_unet(model):  # A1111: the whole image is masked, blanked by the conditional mask weight
        if latent_resize:
            image = resize_image(resize_mode, image, params.width, params.height, upscaler)
        image_cond = inpainting_conditioning(model, image, None, mask_weight)
    sampled = denoise_latents(model, params, latents, strength, embeddings=embeddings, progress=progress,
                              image_cond=image_cond)
    decode_into(sampled, model, sampled.latents, progress, auto_fp32_vae)
    return sampled
