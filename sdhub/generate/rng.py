"""A1111-compatible initial and per-step noise: CPU, GPU and NV (CUDA Philox on any machine) sources.

AUTOMATIC1111 draws each image's latent noise with that image's own generator seeded by the
image seed, mixes in a variation seed by slerp, and (with an eta noise seed delta) reseeds the
generators with ``seed + ENSD`` for the noise ancestral samplers draw per step. The ``nv`` source
reproduces ``torch.randn(..., device="cuda")`` with Philox4x32-10 and Box-Muller in NumPy, so GPU
seeds give the same image on a CPU or a Mac.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sdhub.errors import MissingDependencyError, UsageError

#: Noise sources under their A1111 setting names (``randn_source``), lower-cased.
RNG_SOURCES = ("gpu", "cpu", "nv")

#: Infotext value of ``RNG:`` per source; A1111 omits the field for its GPU default.
INFOTEXT_RNG = {"gpu": None, "cpu": "CPU", "nv": "NV"}

_PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_PHILOX_WEYL = (0x9E3779B9, 0xBB67AE85)
# Box-Muller constants as float32 values, the way CUDA's curand (and A1111's copy of it) writes them.
_TWO_POW32_INV = np.float32(2.3283064e-10)
_TWO_POW32_INV_2PI = np.float32(2.3283064e-10 * 6.2831855)
_MASK32 = np.uint64(0xFFFFFFFF)


def default_rng_source(cuda_available: bool | None = None) -> str:
    """A1111's default is GPU noise: real CUDA noise on NVIDIA, the NV replica of it elsewhere."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    return "gpu" if cuda_available else "nv"


def random_seed() -> int:
    """A seed for ``-1``, drawn from the same range A1111 uses."""
    return int(random.randrange(4294967294))


def philox_randn(seed: int, shape: Sequence[int], offset: int = 0) -> np.ndarray:
    """Standard normal float32 numbers equal to CUDA ``torch.randn`` after ``manual_seed(seed)``.

    ``offset`` counts earlier draws from the same generator (CUDA's Philox subsequence offset as
    A1111's NV source advances it: one per call).
    """
    count = int(np.prod(shape, dtype=np.int64))
    if count >= 2**32:
        raise UsageError(f"cannot draw {count} numbers in one call with the NV generator (limit 2^32)")
    seed64 = int(seed) & 0xFFFFFFFFFFFFFFFF
    key0 = np.full(count, seed64 & 0xFFFFFFFF, dtype=np.uint32)
    key1 = np.full(count, seed64 >> 32, dtype=np.uint32)
    c0 = np.full(count, offset & 0xFFFFFFFF, dtype=np.uint32)
    c1 = np.zeros(count, dtype=np.uint32)
    c2 = np.arange(count, dtype=np.uint32)
    c3 = np.zeros(count, dtype=np.uint32)
    m0, m1 = np.uint64(_PHILOX_MULTIPLIERS[0]), np.uint64(_PHILOX_MULTIPLIERS[1])
    for round_index in range(10):
        product0 = c0.astype(np.uint64) * m0
        product1 = c2.astype(np.uint64) * m1
        hi0 = (product0 >> np.uint64(32)).astype(np.uint32)
        lo0 = (product0 & _MASK32).astype(np.uint32)
        hi1 = (product1 >> np.uint64(32)).astype(np.uint32)
        lo1 = (product1 & _MASK32).astype(np.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ key0, lo1, hi0 ^ c3 ^ key1, lo0
        if round_index < 9:
            key0 = key0 + np.uint32(_PHILOX_WEYL[0])
            key1 = key1 + np.uint32(_PHILOX_WEYL[1])
    # uint32 times float32 promotes to float64 in NumPy: the reference implementation computes the
    # transform in double precision from float32 constants and rounds the result to float32.
    u = c0 * _TWO_POW32_INV.astype(np.float64) + _TWO_POW32_INV.astype(np.float64) / 2
    v = c1 * _TWO_POW32_INV_2PI.astype(np.float64) + _TWO_POW32_INV_2PI.astype(np.float64) / 2
    values = np.sqrt(-2.0 * np.log(u)) * np.sin(v)
    return values.astype(np.float32).reshape(tuple(shape))


class NoiseGenerator:
    """One image's generator: successive ``randn`` calls continue its stream, as in A1111."""

    def __init__(self, source: str, seed: int, device: torch.device | str = "cpu") -> None:
        if source not in RNG_SOURCES:
            raise UsageError(f"unknown RNG source {source!r}; choose one of: {', '.join(RNG_SOURCES)}")
        self.source = source
        self.seed = int(seed)
        self.device = torch.device(device)
        self._philox_offset = 0
        self._torch_generator: torch.Generator | None = None
        if source == "cpu":
            self._torch_generator = torch.Generator("cpu").manual_seed(self.seed)
        elif source == "gpu":
            if not torch.cuda.is_available():
                raise MissingDependencyError(
                    "the 'gpu' RNG needs a CUDA device; use --rng nv for the same numbers on this machine"
                )
            self._torch_generator = torch.Generator("cuda").manual_seed(self.seed)

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        """The next float32 standard normal tensor of ``shape``, on this generator's device."""
        if self.source == "nv":
            values = torch.from_numpy(philox_randn(self.seed, shape, self._philox_offset))
            self._philox_offset += 1
            return values.to(self.device)
        assert self._torch_generator is not None
        values = torch.randn(tuple(shape), generator=self._torch_generator,
                             device=self._torch_generator.device, dtype=torch.float32)
        return values.to(self.device)


def randn_local(source: str, seed: int, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Noise from a fresh generator seeded with ``seed`` (A1111's ``randn_local``)."""
    return NoiseGenerator(source, seed, device).randn(shape)


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's variation-seed interpolation: 0 gives ``low`` (seed noise), 1 gives ``high`` (subseed)."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        # A1111 swaps the weights in this near-parallel fallback; kept for identical numbers.
        return low * strength + high * (1 - strength)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    return ((torch.sin((1.0 - strength) * omega) / sin_omega).unsqueeze(1) * low
            + (torch.sin(strength * omega) / sin_omega).unsqueeze(1) * high)


def paste_centred(noise: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """``noise`` (C, h, w) put in the middle of ``canvas`` (C, H, W), cropped where larger, as A1111 does.

    The offsets are floored halves of the size difference; a larger noise loses twice its (negative)
    offset, so an odd excess leaves one row or column of ``canvas`` showing, as in A1111.
    """
    offset_y = (canvas.shape[1] - noise.shape[1]) // 2
    offset_x = (canvas.shape[2] - noise.shape[2]) // 2
    height = noise.shape[1] + 2 * min(offset_y, 0)
    width = noise.shape[2] + 2 * min(offset_x, 0)
    top, left = max(offset_y, 0), max(offset_x, 0)
    crop_top, crop_left = max(-offset_y, 0), max(-offset_x, 0)
    canvas[:, top:top + height, left:left + width] = noise[:, crop_top:crop_top + height, crop_left:crop_left + width]
    return canvas


@dataclass(frozen=True)
class SeedPlan:
    """The seeds of one batch: per image seed and subseed, variation strength, ENSD."""

    seeds: tuple[int, ...]
    subseeds: tuple[int, ...] = ()
    subseed_strength: float = 0.0
    eta_noise_seed_delta: int = 0

    @classmethod
    def for_batch(cls, seed: int, batch_size: int, *, subseed: int | None = None,
                  subseed_strength: float = 0.0, eta_noise_seed_delta: int = 0) -> "SeedPlan":
        """A1111's per-image seeds: ``seed + i`` without variation, the same seed with it."""
        if subseed_strength and subseed is not None:
            seeds = tuple(seed for _ in range(batch_size))
            subseeds = tuple(subseed + i for i in range(batch_size))
        else:
            seeds = tuple(seed + i for i in range(batch_size))
            subseeds = ()
        return cls(seeds, subseeds, float(subseed_strength) if subseeds else 0.0, int(eta_noise_seed_delta))


class ImageNoise:
    """A1111's ``ImageRNG``: the initial latent noise, then per-step noise for stochastic samplers."""

    def __init__(self, shape: Sequence[int], plan: SeedPlan, source: str,
                 device: torch.device | str = "cpu", resize_from: tuple[int, int] | None = None) -> None:
        self.shape = tuple(shape)
        # A1111's seed resize: the seed's noise drawn at another (latent height, width), pasted centred
        self.drawn_shape = self.shape if resize_from is None else (self.shape[0], *resize_from)
        self.plan = plan
        self.source = source
        self.device = torch.device(device)
        self.generators = [NoiseGenerator(source, seed, self.device) for seed in plan.seeds]
        self._first_drawn = False

    def first(self) -> torch.Tensor:
        """The batch's initial noise (B, C, H, W), one generator per image."""
        images = []
        resized = self.drawn_shape != self.shape
        for index, (seed, generator) in enumerate(zip(self.plan.seeds, self.generators)):
            noise = randn_local(self.source, seed, self.drawn_shape, self.device) if resized \
                else generator.randn(self.shape)
            if self.plan.subseeds and self.plan.subseed_strength != 0:
                subnoise = randn_local(self.source, self.plan.subseeds[index], self.drawn_shape, self.device)
                noise = slerp(self.plan.subseed_strength, noise, subnoise)
            if resized:
                noise = paste_centred(noise, generator.randn(self.shape))
            images.append(noise)
        if self.plan.eta_noise_seed_delta:
            self.generators = [NoiseGenerator(self.source, seed + self.plan.eta_noise_seed_delta, self.device)
                               for seed in self.plan.seeds]
        self._first_drawn = True
        return torch.stack(images)

    def next(self) -> torch.Tensor:
        """Per-step noise for the whole batch, continuing each image's generator."""
        if not self._first_drawn:
            return self.first()
        return torch.stack([generator.randn(self.shape) for generator in self.generators])
