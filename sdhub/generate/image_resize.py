"""A1111's image resize modes for img2img (``images.resize_image``) and transparent images' flattening.

"Just resize" stretches to the size; "Crop and resize" fills the size and crops the overflow, centred;
"Resize and fill" fits the image inside and fills the bands with its stretched edge rows or columns;
"Just resize (latent upscale)" leaves the pixels alone (the latents are interpolated after encoding).
Enlarging goes through an upscaler when one is named (else Lanczos), as in A1111.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdhub.errors import BadInputError, UsageError

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
LATENT_RESIZE = RESIZE_MODES[3]
def read_image(path: str | Path, what: str) -> Any:
    """The image file ``what`` names (``"the init image"``, ``"the mask"``) as a loaded PIL image, or a
    one-line ``BadInputError``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} {path} does not exist or is not a file")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise BadInputError(f"{what} {path.name} is not a readable image: {error}") from None


#: A1111's default img2img background for transparent pixels (``img2img_background_color``).
BACKGROUND = "#ffffff"


def resize_mode_name(mode: str | int) -> str:
    """A resize mode by A1111 name (any case) or index 0-3."""
    if isinstance(mode, int) or str(mode).strip().isdigit():
        index = int(mode)
        if 0 <= index < len(RESIZE_MODES):
            return RESIZE_MODES[index]
    else:
        for name in RESIZE_MODES:
            if name.lower() == str(mode).strip().lower():
                return name
    raise UsageError(f"unknown resize mode {mode!r}; choose one of: {', '.join(RESIZE_MODES)}")


def flatten(image: Any, background: str = BACKGROUND) -> Any:
    """An RGB image, transparent pixels laid over ``background`` (A1111's ``images.flatten``)."""
    from PIL import Image

    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, background)
        canvas.paste(image, mask=image)
        image = canvas
    return image.convert("RGB")


def _resize(image: Any, width: int, height: int, upscaler: Any) -> Any:
    from PIL import Image

    if upscaler is None or upscaler.name == "None" or image.mode == "L":
        return image.resize((width, height), resample=Image.LANCZOS)
    scale = max(width / image.width, height / image.height)
    if scale > 1.0:
        image = upscaler.upscale(image, scale)
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.LANCZOS)
    return image


def resize_image(mode: str, image: Any, width: int, height: int, upscaler: Any = None) -> Any:
    """``image`` brought to ``width`` x ``height`` the way A1111's resize mode ``mode`` does it."""
    from PIL import Image

    mode = resize_mode_name(mode)
    if mode in (RESIZE_MODES[0], LATENT_RESIZE):
        return _resize(image, width, height, upscaler)
    ratio = width / height
    source_ratio = image.width / image.height
    if mode == RESIZE_MODES[1]:
        fitted_width = width if ratio > source_ratio else image.width * height // image.height
        fitted_height = height if ratio <= source_ratio else image.height * width // image.width
    else:
        fitted_width = width if ratio < source_ratio else image.width * height // image.height
        fitted_height = height if ratio >= source_ratio else image.height * width // image.width
    resized = _resize(image, fitted_width, fitted_height, upscaler)
    result = Image.new("RGB", (width, height))
    result.paste(resized, box=(width // 2 - fitted_width // 2, height // 2 - fitted_height // 2))
    if mode == RESIZE_MODES[2]:
        if ratio < source_ratio:
            band = height // 2 - fitted_height // 2
            if band > 0:
                result.paste(resized.resize((width, band), box=(0, 0, width, 0)), box=(0, 0))
                result.paste(resized.resize((width, band), box=(0, resized.height, width, resized.height)),
                             box=(0, band + fitted_height))
        elif ratio > source_ratio:
            band = width // 2 - fitted_width // 2
            if band > 0:
                result.paste(resized.resize((band, height), box=(0, 0, 0, height)), box=(0, 0))
                result.paste(resized.resize((band, height), box=(resized.width, 0, resized.width, height)),
                             box=(band + fitted_width, 0))
    return result
