"""A1111's "SD upscale" script: upscale with an image upscaler, then img2img every overlapping tile.

The image is enlarged by ``scale`` (A1111's ``Upscaler.upscale``; "None" leaves it as it is), cut
into tiles of the generation size (the model's native size unless given) overlapping by ``overlap``
pixels, and each tile is run through img2img at that size with the seed ``seed + i`` (tile ``i`` in
row order, one tile per batch as A1111 runs it with batch size 1); the tiles are blended back with
A1111's linear overlap ramps. Only one tile is ever in the model, so memory follows the tile size,
not the target size. The PNG carries the first tile's infotext, as A1111 saves it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdhub.errors import UsageError
from sdhub.generate.conditioning import Embedding
from sdhub.generate.loading import LoadedModel
from sdhub.generate.pipeline import GenerationParams, SampledImages
from sdhub.progress import NULL_PROGRESS, Progress

#: A1111's script defaults: tile overlap 64, scale factor 2; img2img's denoising strength 0.75.
DEFAULT_OVERLAP, DEFAULT_SCALE, DEFAULT_STRENGTH = 64, 2.0, 0.75


@dataclass
class SdUpscaleParams:
    """The script's settings and the image it enlarges."""

    init_image: str | Path
    scale: float = DEFAULT_SCALE
    upscaler: str = "None"
    overlap: int = DEFAULT_OVERLAP
    denoising_strength: float = DEFAULT_STRENGTH

    def validate(self, tile_width: int, tile_height: int) -> None:
        if not 0.0 < self.denoising_strength <= 1.0:
            raise UsageError(f"--denoising-strength must be above 0 and at most 1, not {self.denoising_strength}")
        if not 1.0 <= self.scale <= 8.0:
            raise UsageError(f"--scale must be between 1 and 8, not {self.scale}")
        if not 0 <= self.overlap < min(tile_width, tile_height):
            raise UsageError(f"--overlap must be between 0 and the tile size ({tile_width}x{tile_height}) less one, "
                             f"not {self.overlap}")

    def to_dict(self) -> dict[str, Any]:
        return {"init_image": str(self.init_image), "scale": self.scale, "upscaler": self.upscaler,
                "overlap": self.overlap, "denoising_strength": self.denoising_strength}

    def infotext_fields(self) -> dict[str, Any]:
        """What A1111's img2img and the script write (the scale is not among them)."""
        return {"Denoising strength": self.denoising_strength, "SD upscale overlap": self.overlap,
                "SD upscale upscaler": self.upscaler}


def tile_seeds(seed: int, tiles: int) -> list[int]:
    """Each tile's seed: A1111 runs one tile per batch and starts each batch at the last seed plus one."""
    return [seed + index for index in range(tiles)]


def sample_sd_upscale(model: LoadedModel, params: GenerationParams, settings: SdUpscaleParams, upscaler: Any, *,
                      embeddings: list[Embedding] | None = None, progress: Progress = NULL_PROGRESS,
                      auto_fp32_vae: bool = True) -> SampledImages:
    """The upscaled, tiled and re-sampled image (``params.width`` x ``params.height`` is the tile size)."""
    from sdhub.generate.image_grid import combine_grid, split_grid
    from sdhub.generate.image_resize import flatten
    from sdhub.generate.img2img import read_init_image, sample_img2img_image

    settings.validate(params.width, params.height)
    image = flatten(read_init_image(settings.init_image))
    if upscaler.name != "None":
        image = upscaler.upscale(image, settings.scale)
    grid = split_grid(image, params.width, params.height, settings.overlap)
    tiles = grid.tiles
    seeds = tile_seeds(params.seed, len(tiles))
    task = progress.task("Tiles", total=len(tiles), unit="tiles")
    first: SampledImages | None = None
    started = time.perf_counter()
    try:
        for tile, seed in zip(tiles, seeds):
            tile_params = replace(params, seed=seed, batch_size=1)
            sampled = sample_img2img_image(model, tile_params, tile.image, settings.denoising_strength,
                                           embeddings=embeddings, progress=progress, auto_fp32_vae=auto_fp32_vae)
            tile.image = sampled.images[0]
            sampled.latents = None  # only the pixels are kept between tiles
            first = first or sampled
            task.advance(1)
    finally:
        task.finish()
    assert first is not None
    return replace(first, images=[combine_grid(grid)], seeds=[params.seed], subseeds=first.subseeds[:1],
                   sampling_seconds=time.perf_counter() - started)


def sd_upscale(home: Any, image: str | os.PathLike[str], model_ref: str, params: GenerationParams, *,
               scale: float = DEFAULT_SCALE, upscaler: str = "None", overlap: int = DEFAULT_OVERLAP,
               denoising_strength: float = DEFAULT_STRENGTH, tile_size: int | None = None,
               vae_ref: str | None = None, out_dir: str | Path | None = None, device: str | None = None,
               dtype: str | None = None, progress: Progress = NULL_PROGRESS) -> Any:
    """Run A1111's SD upscale on ``image`` with ``model_ref`` and write the PNG; ``params`` gives the
    prompt, sampler, steps, CFG and seed, ``tile_size`` the tile (default: the model's native size)."""
    from sdhub.generate.generate import generate, load_model_cached, resolve_file, sidecar_vae

    settings = SdUpscaleParams(Path(image), scale, upscaler, overlap, denoising_strength)
    model = resolve_file(home, model_ref, "checkpoint")
    if tile_size is None:
        beside = sidecar_vae(model.path) if vae_ref is None else None
        vae = resolve_file(home, vae_ref or str(beside), "vae") if (vae_ref or beside) else None
        loaded, _ = load_model_cached(model, vae, device, dtype, progress=progress)  # generate() reuses it
        tile_size = int(loaded.unet.config.sample_size) * 8
    if tile_size % 8 or not 64 <= tile_size <= 8192:
        raise UsageError(f"--tile-size must be a multiple of 8 between 64 and 8192, not {tile_size}")
    tiled = replace(params, width=tile_size, height=tile_size, batch_size=1)
    return generate(home, model, tiled, progress, vae_ref=vae_ref, out_dir=out_dir, device=device, dtype=dtype,
                    sd_upscale=settings)
