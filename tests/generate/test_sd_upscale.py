"""SD upscale (A1111's script) and its tile grid on the factory's tiny SD1, offline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdhub.generate.generate import load_model_cached, resolve_file
from sdhub.generate.image_grid import combine_grid, split_grid, tile_positions
from sdhub.generate.infotext import Infotext
from sdhub.generate.pipeline import GenerationParams
from sdhub.generate.sd_upscale import sd_upscale
from sdhub.testing import aux_models
from sdhub.testing.images import pixels


def test_tiles_spread_evenly_and_reach_the_edge():
    assert tile_positions(2048, 512, 64) == [0, 384, 768, 1152, 1536]
    assert tile_positions(512, 512, 64) == [0]
    assert tile_positions(100, 64, 16) == [0, 36]


def test_unchanged_tiles_blend_back_into_the_same_image():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (100, 130, 3), dtype=np.uint8))
    grid = split_grid(image, 64, 64, 16)
    assert len(grid.rows) == 2 and len(grid.rows[0].tiles) == 3
    assert np.array_equal(np.asarray(combine_grid(grid)), np.asarray(image))


def test_overlaps_fade_from_the_left_tile_to_the_right_one():
    grid = split_grid(Image.new("RGB", (112, 64)), 64, 64, 16)
    left, right = grid.rows[0].tiles
    left.image, right.image = Image.new("RGB", (64, 64), (0, 0, 0)), Image.new("RGB", (64, 64), (255, 255, 255))
    row = np.asarray(combine_grid(grid))[10, :, 0]
    assert right.x == 48 and row[47] == 0 and row[64] == 255
    assert list(row[48:64]) == [int(i * 255 / 16) for i in range(16)]  # A1111's 8-bit ramp


@pytest.fixture
def source(tmp_path) -> Image.Image:
    rng = np.random.default_rng(1)
    path = tmp_path / "small.png"
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(path)
    return path


def test_sd_upscale_is_deterministic_per_seed_and_writes_the_first_tiles_infotext(tmp_home, tiny_models, source):
    aux_models.upscaler(tmp_home.folder("upscaler") / "4x-Tiny.pth", "esrgan", 4)
    settings = dict(scale=2, upscaler="4x-tiny", overlap=16, denoising_strength=0.4)
    params = GenerationParams(prompt="a landscape", steps=3, sampler="Euler a", seed=77)
    first = sd_upscale(tmp_home, source, str(tiny_models["sd1"]), params, **settings)
    assert Image.open(first.images[0]).size == (192, 128)
    again = sd_upscale(tmp_home, source, str(tiny_models["sd1"]), params, **settings)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    other = sd_upscale(tmp_home, source, str(tiny_models["sd1"]), GenerationParams(
        prompt="a landscape", steps=3, sampler="Euler a", seed=78), **settings)
    assert not np.array_equal(pixels(first.images[0]), pixels(other.images[0]))
    written = Infotext.from_text(first.infotexts[0]).params
    assert (written["Seed"], written["Size"], written["Denoising strength"]) == ("77", "64x64", "0.4")
    assert (written["SD upscale overlap"], written["SD upscale upscaler"]) == ("16", "4x-Tiny")
    assert first.images[0].name.endswith("-77.png")


def test_sd_upscale_only_ever_runs_the_model_at_the_tile_size(tmp_home, tiny_models, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (160, 160), (90, 120, 200)).save(big)
    loaded, _ = load_model_cached(resolve_file(tmp_home, str(tiny_models["sd1"]), "checkpoint"), None, None, None)
    shapes: set[tuple[int, ...]] = set()
    hooks = [module.register_forward_pre_hook(lambda _m, args: shapes.add(tuple(args[0].shape[-2:])))
             for module in (loaded.unet, loaded.vae.encoder, loaded.vae.decoder)]
    try:
        result = sd_upscale(tmp_home, big, str(tiny_models["sd1"]), GenerationParams(prompt="", steps=2, seed=1),
                            scale=2, upscaler="Lanczos", overlap=16, denoising_strength=0.3)
    finally:
        for hook in hooks:
            hook.remove()
    assert Image.open(result.images[0]).size == (320, 320)
    assert shapes == {(8, 8), (64, 64)}  # 64-pixel tiles (the tiny model's native size) and their latents
