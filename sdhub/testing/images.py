"""Comparing images as a user sees them: 8-bit pixels, with a stated tolerance for float kernels.

Two loads of the same weights (a ``.ckpt`` and its ``.safetensors``, a single file and its pipeline
folder) can reach the CPU's float kernels with other memory alignments or thread splits, and the
last float bit then differs by CPU model (seen: 1.7e-6 on AMD EPYC, none on Intel). Rounded to
8 bits that is at most a level or two on a few pixels: the same picture to anyone looking at it.
Where the promise is bit-exactness (same seed, same machine, same file) tests compare exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Largest difference of one 8-bit channel value that still counts as the same picture.
MAX_LEVEL_DIFFERENCE = 2
#: Largest share of channel values that may differ at all.
MAX_SHARE_DIFFERING = 0.02


def pixels(image: Any) -> np.ndarray:
    """An image (PIL image, PNG path, uint8 array, or float array in 0..1) as 8-bit RGB values."""
    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as opened:
            return np.asarray(opened.convert("RGB"))
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"))
    values = np.asarray(image)
    if values.dtype == np.uint8:
        return values
    return (np.clip(values, 0.0, 1.0) * 255).round().astype(np.uint8)


def assert_same_picture(first: Any, second: Any) -> None:
    """Fail unless the two images look the same: equal shapes, 8-bit values within the stated tolerance."""
    a, b = pixels(first).astype(np.int16), pixels(second).astype(np.int16)
    assert a.shape == b.shape, f"image shapes differ: {a.shape} and {b.shape}"
    difference = np.abs(a - b)
    share = float((difference > 0).mean())
    assert difference.max() <= MAX_LEVEL_DIFFERENCE and share <= MAX_SHARE_DIFFERING, (
        f"the images differ: up to {difference.max()} levels, on {share:.1%} of the values "
        f"(allowed: {MAX_LEVEL_DIFFERENCE} levels on {MAX_SHARE_DIFFERING:.0%})")
