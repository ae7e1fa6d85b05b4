"""Judging a test image: black/NaN, near-uniform, washed-out or purple, wrong model, unlike the reference.

The checks are simple statistics with stated thresholds, chosen for what broken Stable Diffusion
installs produce: NaNs from an fp16 VAE decode as black, a UNet that draws nothing gives one flat
colour, a missing or wrong VAE gives desaturated grey or purple-tinged images. Similarity to a
reference image is SSIM on a 128x128 greyscale version (7x7 windows) plus PSNR.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Thresholds (0..1 image scale).
BLACK_MEAN = 0.03
UNIFORM_STD = 0.02
WASHED_OUT_SATURATION = 0.10
PURPLE_TINT = 0.08
PURPLE_MAX_SATURATION = 0.30
SSIM_THRESHOLD = 0.80
SIMILARITY_SIZE = 128

#: Verdicts, most severe first; a result's verdict is the most severe problem found.
VERDICTS = ("error", "black", "uniform", "wrong-model", "mismatch", "washed-out", "pass")


@dataclass
class ImageStats:
    """Colour statistics of an image on a 0..1 scale."""

    mean_luma: float
    std_luma: float
    mean_saturation: float
    channel_means: tuple[float, float, float]
    colour_std: float

    def to_dict(self) -> dict[str, Any]:
        return {key: (round(value, 4) if isinstance(value, float) else [round(v, 4) for v in value])
                for key, value in asdict(self).items()}


@dataclass
class Similarity:
    """How close an image is to a reference: SSIM (pass at ``threshold``) and PSNR in dB."""

    ssim: float
    psnr: float
    threshold: float = SSIM_THRESHOLD

    @property
    def passed(self) -> bool:
        return self.ssim >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"ssim": round(self.ssim, 4), "psnr": round(self.psnr, 2), "threshold": self.threshold,
                "passed": self.passed, "method": f"SSIM on {SIMILARITY_SIZE}x{SIMILARITY_SIZE} greyscale, 7x7 windows"}


@dataclass
class Verdict:
    """The verdict and every reason behind it, in words a user can act on."""

    verdict: str
    reasons: list[str] = field(default_factory=list)
    stats: ImageStats | None = None
    similarity: Similarity | None = None
    vae_fp32_retry: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": self.reasons,
                "stats": self.stats.to_dict() if self.stats else None,
                "similarity": self.similarity.to_dict() if self.similarity else None,
                "vae_fp32_retry": self.vae_fp32_retry}


def _as_array(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def image_stats(image: Any) -> ImageStats:
    """Luma mean/spread, mean HSV saturation, channel means and colour spread of a PIL image."""
    pixels = _as_array(image)
    luma = pixels @ np.array([0.299, 0.587, 0.114])
    high, low = pixels.max(axis=2), pixels.min(axis=2)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-8), 0.0)
    means = tuple(float(value) for value in pixels.reshape(-1, 3).mean(axis=0))
    return ImageStats(float(luma.mean()), float(luma.std()), float(saturation.mean()),
                      (means[0], means[1], means[2]), float(pixels.reshape(-1, 3).std(axis=0).max()))


def _grey_small(image: Any) -> np.ndarray:
    from PIL import Image

    grey = image.convert("L").resize((SIMILARITY_SIZE, SIMILARITY_SIZE), Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float64)


def _box_mean(values: np.ndarray, size: int = 7) -> np.ndarray:
    """Mean over every size x size window (valid positions only), by summed-area tables."""
    table = np.pad(values, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    total = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    return total / (size * size)


def similarity(image: Any, reference: Any) -> Similarity:
    """SSIM and PSNR of two images after scaling both to 128x128 greyscale."""
    a, b = _grey_small(image), _grey_small(reference)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mean_a, mean_b = _box_mean(a), _box_mean(b)
    var_a = _box_mean(a * a) - mean_a ** 2
    var_b = _box_mean(b * b) - mean_b ** 2
    covariance = _box_mean(a * b) - mean_a * mean_b
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2))
    mse = float(((a - b) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    return Similarity(float(ssim_map.mean()), psnr)


def judge_image(image: Any, *, nan_in_output: bool = False, vae_fp32_retry: bool = False,
                expected_hash: str | None = None, actual_hash: str | None = None,
                reference: Any | None = None) -> Verdict:
    """The verdict on a generated image, with the reasons behind it."""
    stats = image_stats(image)
    found: dict[str, str] = {}
    if nan_in_output:
        found["black"] = ("the image contains NaNs even with the VAE in fp32: the model's weights "
                          "(or the VAE's) are broken" if vae_fp32_retry else
                          "the VAE produced NaNs (black image): the fp16 VAE problem; run with --vae-dtype fp32 "
                          "(A1111: --no-half-vae) or use an fp16-safe VAE")
    elif stats.mean_luma < BLACK_MEAN and stats.std_luma < UNIFORM_STD:
        found["black"] = f"the image is black (mean brightness {stats.mean_luma:.3f} < {BLACK_MEAN})"
    elif stats.std_luma < UNIFORM_STD and stats.colour_std < UNIFORM_STD:
        found["uniform"] = (f"the image is one flat colour (brightness spread {stats.std_luma:.3f} < {UNIFORM_STD}): "
                            "the model drew nothing (broken weights or the wrong architecture)")
    if expected_hash and actual_hash and not actual_hash.lower().startswith(expected_hash.lower()):
        found["wrong-model"] = (f"the model's hash is {actual_hash}, the test expects {expected_hash}: "
                                "a different checkpoint draws a different picture")
    measured = None
    if reference is not None:
        measured = similarity(image, reference)
        if not measured.passed:
            found["mismatch"] = (f"the image differs from the reference (SSIM {measured.ssim:.3f} < "
                                 f"{measured.threshold}, PSNR {measured.psnr:.1f} dB)")
    if "black" not in found and "uniform" not in found:
        red, green, blue = stats.channel_means
        purple = (red + blue) / 2 - green
        if stats.mean_saturation < WASHED_OUT_SATURATION:
            found["washed-out"] = (f"the colours are washed out (mean saturation {stats.mean_saturation:.3f} < "
                                   f"{WASHED_OUT_SATURATION}): typical of a missing or wrong VAE")
        elif purple > PURPLE_TINT and stats.mean_saturation < PURPLE_MAX_SATURATION:
            found["washed-out"] = (f"the image has a purple tint (red/blue exceed green by {purple:.3f}): "
                                   "typical of a wrong VAE")
    reasons = [found[verdict] for verdict in VERDICTS if verdict in found]
    if vae_fp32_retry and not nan_in_output:
        reasons.append("the VAE produced NaNs in half precision and was rerun in fp32 automatically "
                       "(as A1111's --no-half-vae fallback); the image is from the fp32 decode")
    verdict = next((name for name in VERDICTS if name in found), "pass")
    return Verdict(verdict, reasons, stats, measured, vae_fp32_retry)
