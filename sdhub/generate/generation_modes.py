"""Which kind of run a generation is (txt2img, with the hires fix, img2img, SD upscale): its sampling and
the infotext fields A1111 writes for it, and reading those fields back from an infotext."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sdhub.errors import BadInputError, UsageError
from sdhub.generate.conditioning import Embedding
from sdhub.generate.loading import LoadedModel
from sdhub.generate.pipeline import GenerationParams, SampledImages, sample_images
from sdhub.progress import NULL_PROGRESS, Progress


@dataclass
class ModeFields:
    """Infotext fields of the run's kind: ``before`` the sampler's own fields, ``after`` them."""

    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


def check_mode(home: Any, params: GenerationParams, hires: Any, img2img: Any, sd_upscale: Any,
               device: torch.device) -> Any:
    """Refuse impossible combinations early (before the model loads); the upscaler, resolved."""
    if sum(mode is not None for mode in (hires, img2img, sd_upscale)) > 1:
        raise UsageError("the hires fix, img2img and SD upscale are separate kinds of run; choose one")
    if sd_upscale is not None:
        from sdhub.generate.img2img import read_init_image
        from sdhub.generate.upscalers import find_upscaler

        sd_upscale.validate(params.width, params.height)
        read_init_image(sd_upscale.init_image)
        upscaler = find_upscaler(home, sd_upscale.upscaler, device, latent=False)
        sd_upscale.upscaler = upscaler.name
        return upscaler
    if img2img is not None:
        from sdhub.generate.img2img import read_init_image

        img2img.validate()
        read_init_image(img2img.init_image)  # a bad file fails now, in one line
        if img2img.mask is not None:
            from sdhub.generate.masking import read_mask

            read_mask(img2img.mask)
        return None
    if hires is None:
        return None
    from sdhub.generate.upscalers import find_upscaler

    hires.validate()
    upscaler = find_upscaler(home, hires.upscaler, device)
    hires.upscaler = upscaler.name  # A1111's spelling of the name
    return upscaler


def sample_mode(model: LoadedModel, params: GenerationParams, hires: Any, img2img: Any, sd_upscale: Any,
                upscaler: Any, *,
                embeddings: list[Embedding], progress: Progress = NULL_PROGRESS,
                auto_fp32_vae: bool = True) -> tuple[SampledImages, ModeFields]:
    """Sample the run's images and say which infotext fields its kind adds."""
    sampled, fields = _sample_mode(model, params, hires, img2img, sd_upscale, upscaler, embeddings=embeddings,
                                   progress=progress, auto_fp32_vae=auto_fp32_vae)
    from sdhub.generate.latent_mask import inpainting_unet

    if inpainting_unet(model):  # A1111 writes it for every run of an inpainting model
        weight = img2img.mask_weight if img2img is not None else 1.0
        fields.before["Conditional mask weight"] = weight
    return sampled, fields


def _sample_mode(model: LoadedModel, params: GenerationParams, hires: Any, img2img: Any, sd_upscale: Any,
                 upscaler: Any, *, embeddings: list[Embedding], progress: Progress,
                 auto_fp32_vae: bool) -> tuple[SampledImages, ModeFields]:
    if sd_upscale is not None:
        from sdhub.generate.sd_upscale import sample_sd_upscale

        sampled = sample_sd_upscale(model, params, sd_upscale, upscaler, embeddings=embeddings, progress=progress,
                                    auto_fp32_vae=auto_fp32_vae)
        return sampled, ModeFields(before=sd_upscale.infotext_fields())
    if img2img is not None and img2img.mask is not None:
        from sdhub.generate.inpaint import sample_inpaint

        sampled, fields = sample_inpaint(model, params, img2img, embeddings=embeddings, progress=progress,
                                         auto_fp32_vae=auto_fp32_vae)
        return sampled, ModeFields(before=fields)
    if img2img is not None:
        from sdhub.generate.img2img import sample_img2img

        sampled = sample_img2img(model, params, img2img, embeddings=embeddings, progress=progress,
                                 auto_fp32_vae=auto_fp32_vae)
        return sampled, ModeFields(before=img2img.infotext_fields())
    if hires is not None:
        from sdhub.generate.hires import hires_schedule_field, sample_with_hires

        result = sample_with_hires(model, params, hires, upscaler, embeddings=embeddings, progress=progress,
                                   auto_fp32_vae=auto_fp32_vae)
        return result.sampled, ModeFields(before=hires.infotext_fields(params),
                                          after=hires_schedule_field(result.sampled.sampler, result.second_choice))
    return sample_images(model, params, embeddings=embeddings, progress=progress,
                         auto_fp32_vae=auto_fp32_vae), ModeFields()


def mode_from_infotext(fields: dict[str, str], init_image: Any = None,
                       resize_mode: str = "Just resize", mask: Any = None) -> tuple[Any, Any]:
    """``(hires, img2img)`` settings an infotext's fields describe, for a rerun.

    img2img needs its init image and inpaint its mask too (A1111 stores neither): without them an
    img2img or inpaint infotext is refused in one line, as is one from A1111's SD upscale script (its
    scale is not written). A mask turns an img2img infotext into an inpaint: with A1111's defaults
    unchanged an inpaint writes no field of its own.
    """
    from sdhub.generate.hires import hires_from_infotext
    from sdhub.generate.img2img import Img2ImgParams

    hires = hires_from_infotext(fields)
    if hires is not None:
        if init_image is not None or mask is not None:
            raise UsageError("this infotext is a txt2img with hires fix; it takes no --init-image or --mask")
        return hires, None
    if "SD upscale overlap" in fields or "SD upscale upscaler" in fields:
        raise BadInputError("this image was made by A1111's SD upscale script, which does not write its scale; "
                            "rerun it with `sdhub upscale IMAGE --scale N --seed SEED`")
    strength = fields.get("Denoising strength")
    if strength in (None, ""):
        if init_image is not None or mask is not None:
            raise UsageError("this infotext is a txt2img (no Denoising strength); it takes no --init-image or --mask")
        return None, None
    try:
        value = float(strength)
    except ValueError:
        raise BadInputError(f"the infotext's 'Denoising strength' is {strength!r}, not a number") from None
    inpaint_keys = [key for key in INPAINT_FIELDS if key in fields]
    if inpaint_keys and (init_image is None or mask is None):
        raise BadInputError(f"this infotext is an inpaint ({inpaint_keys[0]}: {fields[inpaint_keys[0]]}) and A1111 "
                            "stores neither its init image nor its mask; pass them with --init-image and --mask")
    if init_image is None:
        raise BadInputError(f"this infotext is an img2img (Denoising strength {strength}, no hires fields) and "
                            "A1111 does not store the init image; pass it with --init-image")
    settings = Img2ImgParams(init_image, value, resize_mode,
                             mask_weight=_number(fields, "Conditional mask weight", float, 1.0))
    if mask is not None:
        settings.mask = mask
        # A1111 writes each field only when it differs from what its absence means
        settings.mask_blur = _number(fields, "Mask blur", int, 0)
        settings.mask_invert = fields.get("Mask mode", "Inpaint masked") == "Inpaint not masked"
        settings.masked_content = fields.get("Masked content", "original")
        settings.inpaint_area = fields.get("Inpaint area", "Whole picture")
        settings.masked_padding = _number(fields, "Masked area padding", int, 32)
        try:
            settings.validate()
        except UsageError as error:
            raise BadInputError(f"cannot rerun this infotext: {error.message}") from None
    return None, settings


#: The fields A1111 1.10 writes for an inpaint beyond img2img's.
INPAINT_FIELDS = ("Mask mode", "Mask blur", "Inpaint area", "Masked area padding", "Masked content")


def _number(fields: dict[str, str], key: str, cast: type, default: Any) -> Any:
    value = fields.get(key)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadInputError(f"the infotext's {key!r} is {value!r}, not a number") from None
    if cast is int and not number.is_integer():
        raise BadInputError(f"the infotext's {key!r} is {value!r}, not a whole number")
    return cast(number)
