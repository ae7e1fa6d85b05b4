"""Inpaint as A1111 1.10 does it: img2img of an init image where only the mask's white area is redrawn.

The mask is binarised, optionally inverted ("Inpaint not masked") and blurred; "Whole picture" draws
the whole image at the asked size, "Only masked" crops the masked area (plus padding, grown to the
asked aspect ratio), draws it at the asked size and pastes it back. The masked area starts from the
original pixels, a blurred "fill", "latent noise" (the seed's noise) or "latent nothing" (zeros); the
unmasked area is held on the init latent at every step (``latent_mask``), and the init image's
unmasked pixels are laid back over the result through the blurred mask (A1111's ``apply_overlay``),
so pixels outside the blurred mask are the init image's exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sdhub.errors import UsageError
from sdhub.generate.conditioning import Embedding
from sdhub.generate.loading import LoadedModel
from sdhub.generate.pipeline import GenerationParams, SampledImages, decode_into
from sdhub.progress import NULL_PROGRESS, Progress

MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREAS = ("Whole picture", "Only masked")
#: A1111's UI limits for the mask blur and the "Only masked" padding.
MAX_MASK_BLUR = 64
MAX_PADDING = 256


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    for name in choices:
        if name.lower() == str(value).strip().lower():
            return name
    raise UsageError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


def validate_inpaint(img2img: Any) -> None:
    """Refuse inpaint settings A1111 would not take; names are put in A1111's spelling."""
    img2img.masked_content = _choice(img2img.masked_content, MASKED_CONTENT, "masked content")
    img2img.inpaint_area = _choice(img2img.inpaint_area, INPAINT_AREAS, "inpaint area")
    if not 0 <= img2img.mask_blur <= MAX_MASK_BLUR:
        raise UsageError(f"--mask-blur must be between 0 and {MAX_MASK_BLUR}, not {img2img.mask_blur}")
    if not 0 <= img2img.masked_padding <= MAX_PADDING:
        raise UsageError(f"--masked-padding must be between 0 and {MAX_PADDING}, not {img2img.masked_padding}")


@dataclass
class PreparedInpaint:
    """The picture sampling starts from, at the processing size, and how the result goes back."""

    image: Any  # RGB, the processing size, the masked area filled when asked
    mask: Any | None  # the blurred mask at the processing size; None when a blank mask fell back to img2img
    overlay: Any | None  # RGBA: the init image's unmasked pixels, laid over the result
    paste_to: tuple[int, int, int, int] | None  # (x, y, w, h) of the drawn crop in the output ("Only masked")
    fields: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def prepare_inpaint(init_image: Any, mask_image: Any, img2img: Any, width: int, height: int) -> PreparedInpaint:
    """The pixel side of A1111's inpaint set-up for an RGB ``init_image`` and the mask file's image."""
    from PIL import Image, ImageOps

    from sdhub.generate.image_resize import LATENT_RESIZE, resize_image
    from sdhub.generate.masking import (binary_mask, blur_mask, expand_crop_region, fill_masked, mask_crop_region,
                                        overlay_of)

    fields: dict[str, Any] = {"Denoising strength": img2img.denoising_strength}
    notes: list[str] = []
    latent_resize = img2img.resize_mode == LATENT_RESIZE
    # A1111's resize_image treats its mode 3 (latent upscale) as "Resize and fill" for anything it resizes
    resize_mode = "Resize and fill" if latent_resize else img2img.resize_mode
    if latent_resize and init_image.size != (width, height):
        raise UsageError("inpaint with 'Just resize (latent upscale)' needs an init image of the output size "
                         f"({width}x{height}, not {init_image.width}x{init_image.height}); A1111 fails on it too")

    mask = binary_mask(mask_image)
    if img2img.mask_invert:
        mask = ImageOps.invert(mask)
        fields["Mask mode"] = "Inpaint not masked"
    if img2img.mask_blur > 0:
        mask = blur_mask(mask, img2img.mask_blur, img2img.mask_blur)
        fields["Mask blur"] = img2img.mask_blur

    region = None
    paste_to = None
    if img2img.inpaint_area == "Only masked":
        if mask.size != init_image.size:
            notes.append(f"the mask is {mask.width}x{mask.height}, the init image {init_image.width}x"
                         f"{init_image.height}: the mask was stretched to the image")
            mask = resize_image("Just resize", mask, init_image.width, init_image.height)
        overlay_mask = mask
        region = mask_crop_region(mask, img2img.masked_padding)
        if region is not None:
            region = expand_crop_region(region, width, height, mask.width, mask.height)
            x1, y1, x2, y2 = region
            processing_mask = resize_image("Resize and fill", mask.crop(region), width, height)
            paste_to = (x1, y1, x2 - x1, y2 - y1)
            fields["Inpaint area"] = "Only masked"
            fields["Masked area padding"] = img2img.masked_padding
        else:
            processing_mask = overlay_mask = None
            notes.append("the mask is blank, so 'Only masked' has nothing to crop: ran as plain img2img, as A1111 does")
    else:
        processing_mask = resize_image(resize_mode, mask, width, height)
        doubled = np.clip(np.asarray(processing_mask.convert("L"), dtype=np.float32) * 2, 0, 255).astype(np.uint8)
        overlay_mask = Image.fromarray(doubled, "L")
        if not overlay_mask.getbbox():
            notes.append("the mask is blank (all black): nothing is redrawn, the image is the init image")

    image = init_image
    if region is None and not latent_resize:
        image = resize_image(resize_mode, image, width, height)
    overlay = None
    if processing_mask is not None:
        if overlay_mask.size != image.size:
            overlay_mask = resize_image(resize_mode, overlay_mask, image.width, image.height)
        overlay = overlay_of(image, overlay_mask)
    if region is not None:
        image = resize_image("Resize and fill", image.crop(region), width, height)
    if processing_mask is not None and img2img.masked_content != "original":
        image = fill_masked(image, processing_mask)  # A1111 fills the pixels for the latent modes too
        fields["Masked content"] = img2img.masked_content
    return PreparedInpaint(image, processing_mask, overlay, paste_to, fields, notes)


@torch.inference_mode()
def sample_inpaint(model: LoadedModel, params: GenerationParams, img2img: Any, *,
                   embeddings: list[Embedding] | None = None, progress: Progress = NULL_PROGRESS,
                   auto_fp32_vae: bool = True) -> tuple[SampledImages, dict[str, Any]]:
    """A1111's inpaint of ``img2img.init_image`` under ``img2img.mask``: the decoded, overlaid images and
    the infotext fields the run adds."""
    from sdhub.generate.image_resize import LATENT_RESIZE, flatten
    from sdhub.generate.img2img import denoise_latents, encode_images, read_init_image
    from sdhub.generate.latent_mask import LatentMask, inpainting_conditioning, inpainting_unet
    from sdhub.generate.masking import apply_overlay, read_mask
    from sdhub.generate.rng import ImageNoise, SeedPlan

    img2img.validate()
    init_image = flatten(read_init_image(img2img.init_image))
    prepared = prepare_inpaint(init_image, read_mask(img2img.mask), img2img, params.width, params.height)
    init_latent = encode_images(model, [prepared.image])
    if img2img.resize_mode == LATENT_RESIZE:
        init_latent = torch.nn.functional.interpolate(init_latent, size=(params.height // 8, params.width // 8),
                                                      mode="bilinear")
    init_latent = init_latent.expand(params.batch_size, -1, -1, -1).clone()
    latent_mask = None
    if prepared.mask is not None:
        latent_mask = LatentMask.from_image(prepared.mask, init_latent)
        if img2img.masked_content == "latent noise":
            # A1111 draws it with the images' seeds, as their first noise (no variation seed)
            plan = SeedPlan.for_batch(params.seed, params.batch_size, subseed=params.subseed,
                                      subseed_strength=params.subseed_strength)
            noise = ImageNoise(tuple(init_latent.shape[1:]), SeedPlan(plan.seeds), params.rng_source(),
                               init_latent.device).first()
            init_latent = init_latent * latent_mask.mask + noise * latent_mask.nmask
        elif img2img.masked_content == "latent nothing":
            init_latent = init_latent * latent_mask.mask
        latent_mask.init_latent = init_latent
    image_cond = None
    if inpainting_unet(model):
        image_cond = inpainting_conditioning(model, prepared.image, prepared.mask, img2img.mask_weight)
    sampled = denoise_latents(model, params, init_latent, img2img.denoising_strength, embeddings=embeddings,
                              progress=progress, image_cond=image_cond, latent_mask=latent_mask)
    decode_into(sampled, model, sampled.latents, progress, auto_fp32_vae)
    if prepared.overlay is not None:
        sampled.images = [apply_overlay(image, prepared.overlay, prepared.paste_to) for image in sampled.images]
    sampled.notes.extend(prepared.notes)
    return sampled, prepared.fields
