"""Inpainting masks as A1111 prepares them: binarised, blurred, cropped to the masked area, and the overlay
that puts the unmasked pixels of the init image back over the result.

A1111 (``processing.StableDiffusionProcessingImg2Img.init``, ``masking.py``) blurs the mask with OpenCV's
Gaussian blur, first along x, then along y; ``blur_mask`` reproduces OpenCV's bit-exact 8-bit path
(kernel quantised to 1/256 with error diffusion, reflected borders, rounded result) without OpenCV.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


#: Blur radii and repeats of A1111's "fill" masked content: wide blurs of the unmasked colours laid
#: over each other until the hole is coloured like its surroundings.
FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def read_mask(path: str | Path) -> Any:
    """The mask file as a PIL image, or a one-line ``BadInputError``."""
    from sdhub.generate.image_resize import read_image

    return read_image(path, "the mask")


def binary_mask(image: Any) -> Any:
    """A1111's ``create_binary_mask``: a transparent RGBA mask is its alpha, cut at 128; else its grey levels."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        alpha = image.split()[-1].convert("L")
        return alpha.point(lambda value: 255 if value > 128 else 0)
    return image.convert("L")


def _fixed_point_kernel(size: int, sigma: float) -> np.ndarray:
    """OpenCV's Gaussian kernel for 8-bit images: weights in 1/256 that sum to exactly 256."""
    half = size // 2
    weights = [math.exp(-((index - half) ** 2) / (2 * sigma * sigma)) for index in range(size)]
    total = sum(weights)
    fixed = np.zeros(size, dtype=np.int64)
    error = 0.0
    for index in range(half):
        # error diffusion keeps the rounded weights' running sum close to the exact one
        value = weights[index] / total * 256 + error
        rounded = round(value)  # cvRound: to nearest, ties to even
        error = value - rounded
        fixed[index] = fixed[size - 1 - index] = rounded
    fixed[half] = 256 - 2 * int(fixed[:half].sum())
    return fixed


def _blur_axis(values: np.ndarray, sigma: int, axis: int) -> np.ndarray:
    size = 2 * int(2.5 * sigma + 0.5) + 1
    kernel = _fixed_point_kernel(size, float(sigma))
    half = size // 2
    padding = [(0, 0), (0, 0)]
    padding[axis] = (half, half)
    padded = np.pad(values.astype(np.int64), padding, mode="reflect")  # OpenCV's BORDER_REFLECT_101
    total = np.zeros(values.shape, dtype=np.int64)
    length = values.shape[axis]
    for index, weight in enumerate(kernel):
        window = padded[index:index + length] if axis == 0 else padded[:, index:index + length]
        total += window * int(weight)
    return np.clip((total + 128) >> 8, 0, 255).astype(np.uint8)


def blur_mask(mask: Any, blur_x: int, blur_y: int) -> Any:
    """A1111's mask blur: a Gaussian of sigma ``blur_x`` along x, then ``blur_y`` along y (0 skips one)."""
    from PIL import Image

    values = np.asarray(mask.convert("L"))
    if blur_x > 0:
        values = _blur_axis(values, blur_x, axis=1)
    if blur_y > 0:
        values = _blur_axis(values, blur_y, axis=0)
    return Image.fromarray(values, "L")


def mask_crop_region(mask: Any, padding: int) -> tuple[int, int, int, int] | None:
    """The box ``(x1, y1, x2, y2)`` around the mask's non-black pixels, widened by ``padding`` within the
    image; None for an all-black mask (A1111's ``get_crop_region_v2``)."""
    box = mask.getbbox()
    if not box:
        return None
    x1, y1, x2, y2 = box
    if not padding:
        return box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def _widen(low: int, high: int, wanted: int, limit: int) -> tuple[int, int]:
    """Grow ``[low, high)`` by ``wanted`` pixels split around it, shifted back inside ``[0, limit]``."""
    low -= wanted // 2
    high += wanted - wanted // 2
    if high >= limit:
        low -= high - limit
        high = limit
    if low < 0:
        high -= low
        low = 0
    return low, min(high, limit)


def expand_crop_region(region: tuple[int, int, int, int], width: int, height: int, image_width: int,
                       image_height: int) -> tuple[int, int, int, int]:
    """``region`` grown to the processing size's aspect ratio ``width / height`` (A1111's ``expand_crop_region``)."""
    x1, y1, x2, y2 = region
    target_ratio = width / height
    if (x2 - x1) / (y2 - y1) > target_ratio:
        y1, y2 = _widen(y1, y2, int((x2 - x1) / target_ratio - (y2 - y1)), image_height)
    else:
        x1, x2 = _widen(x1, x2, int((y2 - y1) * target_ratio - (x2 - x1)), image_width)
    return x1, y1, x2, y2


def fill_masked(image: Any, mask: Any) -> Any:
    """A1111's "fill" masked content: the masked area painted with blurred colours of the unmasked area."""
    from PIL import Image, ImageFilter, ImageOps

    # premultiplied alpha ("RGBa"): the hole is transparent black, so blurs spread only the kept colours
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    filled = Image.new("RGBA", image.size)
    for radius, repeats in FILL_PASSES:
        blurred = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return filled.convert("RGB")


def overlay_of(image: Any, overlay_mask: Any) -> Any:
    """The init image's unmasked pixels as an RGBA layer (transparent where the mask is white)."""
    from PIL import Image, ImageOps

    layer = Image.new("RGBa", image.size)
    layer.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(overlay_mask.convert("L")))
    return layer.convert("RGBA")


def apply_overlay(generated: Any, overlay: Any, paste_to: tuple[int, int, int, int] | None) -> Any:
    """A1111's ``apply_overlay``: the generated image (pasted back into the crop box ``(x, y, w, h)`` when
    only the masked area was drawn) under the init image's unmasked pixels."""
    from PIL import Image

    from sdhub.generate.image_resize import resize_image

    if paste_to is not None:
        x, y, width, height = paste_to
        canvas = Image.new("RGBA", overlay.size)
        canvas.paste(resize_image("Crop and resize", generated, width, height), (x, y))
        generated = canvas
    composed = generated.convert("RGBA")
    composed.alpha_composite(overlay)
    return composed.convert("RGB")
