"""Judging test images, the fp16-VAE NaN retry, and the Asuka/smoke runs recorded in the catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdhub.catalog import Catalog
from sdhub.generate.generate import generate
from sdhub.generate.pipeline import GenerationParams
from sdhub.generate.reference_tests import ASUKA_PARAMS, run_asuka, run_smoke
from sdhub.generate.verdicts import SSIM_THRESHOLD, judge_image, similarity


def image_from(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def colourful(seed: int = 0, noise: float = 4.0) -> Image.Image:
    """A textured colour picture; ``seed`` changes only the pixel noise (like a different attention kernel)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96]
    texture = 60 * np.sin(x / 4.0)[..., None] * np.cos(y / 5.0)[..., None]
    base = np.stack([x * 2.5, y * 2.5, 255 - x * 2.5], axis=-1) + texture
    return image_from(base + rng.normal(0, noise, base.shape))


def test_a_colourful_image_passes():
    verdict = judge_image(colourful())
    assert verdict.verdict == "pass" and verdict.reasons == []


def test_black_and_nan_images_are_black():
    assert judge_image(image_from(np.zeros((64, 64, 3)))).verdict == "black"
    nan = judge_image(image_from(np.zeros((64, 64, 3))), nan_in_output=True)
    assert nan.verdict == "black" and "no-half-vae" in nan.reasons[0]


def test_a_flat_colour_is_near_uniform():
    verdict = judge_image(image_from(np.full((64, 64, 3), (120, 80, 200))))
    assert verdict.verdict == "uniform" and "flat colour" in verdict.reasons[0]


def test_grey_and_purple_images_are_washed_out():
    rng = np.random.default_rng(1)
    grey = rng.normal(128, 40, (64, 64, 1)).repeat(3, axis=2) + rng.normal(0, 3, (64, 64, 3))
    assert judge_image(image_from(grey)).verdict == "washed-out"
    purple = grey + np.array([25, -5, 25])
    verdict = judge_image(image_from(purple))
    assert verdict.verdict == "washed-out" and "purple" in verdict.reasons[0]


def test_wrong_model_hash_is_reported():
    verdict = judge_image(colourful(), expected_hash="925997e9", actual_hash="d66972c8")
    assert verdict.verdict == "wrong-model" and "925997e9" in verdict.reasons[0]
    assert judge_image(colourful(), expected_hash="925997e9", actual_hash="925997E9").verdict == "pass"


def test_similarity_passes_the_same_picture_and_fails_another():
    same = similarity(colourful(0), colourful(0))
    assert same.ssim == pytest.approx(1.0) and same.passed
    noisy = similarity(colourful(0), colourful(1))  # same picture, different pixel noise
    assert noisy.passed and noisy.ssim < 1.0
    flipped = similarity(colourful(0), colourful(0).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert not flipped.passed and flipped.ssim < SSIM_THRESHOLD
    verdict = judge_image(colourful(0), reference=colourful(0).transpose(Image.Transpose.ROTATE_90))
    assert verdict.verdict == "mismatch" and "SSIM" in verdict.reasons[0]


@pytest.fixture(scope="module")
def overflowing_vae(tiny_models, tmp_path_factory) -> Path:
    """A VAE whose decoder input convolution makes activations beyond fp16's range (65504)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_models["vae"]))
    for key in ("decoder.conv_in.weight", "decoder.conv_in.bias"):
        state[key] = state[key] * 2e5  # still representable in fp16; the sums over inputs are not
    path = tmp_path_factory.mktemp("vaes") / "overflow-vae.safetensors"
    save_file(state, str(path))
    return path


def small(**overrides) -> GenerationParams:
    return GenerationParams(**{**dict(prompt="a cat", steps=2, sampler="Euler", seed=5, width=64, height=64),
                               **overrides})


def test_fp16_vae_overflow_is_retried_in_fp32(tmp_home, tiny_models, overflowing_vae):
    result = generate(tmp_home, str(tiny_models["sd1"]), small(), vae_ref=str(overflowing_vae), vae_dtype="fp16")
    assert result.vae_fp32_retry and not result.nan_in_output
    assert any("no-half-vae" in note for note in result.notes)
    reference = generate(tmp_home, str(tiny_models["sd1"]), small(), vae_ref=str(overflowing_vae), vae_dtype="fp32")
    assert not reference.vae_fp32_retry
    with Image.open(result.images[0]) as retried, Image.open(reference.images[0]) as full:
        # the retry decodes in fp32 with the fp16-rounded weights, as A1111's upcast does: nearly the fp32 image
        difference = np.abs(np.asarray(retried).astype(int) - np.asarray(full).astype(int))
        assert difference.max() <= 3
        assert np.asarray(retried).std() > 5


def test_without_the_retry_the_fp16_vae_draws_black(tmp_home, tiny_models, overflowing_vae):
    result = generate(tmp_home, str(tiny_models["sd1"]), small(), vae_ref=str(overflowing_vae), vae_dtype="fp16",
                      auto_fp32_vae=False)
    assert result.nan_in_output and not result.vae_fp32_retry
    with Image.open(result.images[0]) as image:
        verdict = judge_image(image, nan_in_output=True)
    assert verdict.verdict == "black"


def test_asuka_run_uses_the_era_settings_and_records_the_verdict(tmp_home, tiny_models, overflowing_vae):
    # force: the tiny model is not the test's, which run_asuka refuses before drawing otherwise
    result = run_asuka(tmp_home, str(tiny_models["sd1"]), vae_ref=str(overflowing_vae), vae_dtype="fp16",
                       overrides={"steps": 2, "width": 64, "height": 64}, force=True)
    assert result.vae_fp32_retry and any("fp32" in reason for reason in result.reasons)
    assert result.verdict == "wrong-model"  # the tiny model is not NAI's animefull (925997e9)
    assert result.params["seed"] == ASUKA_PARAMS.seed and result.params["eta_noise_seed_delta"] == 31337
    assert result.params["downcast_alphas_cumprod"] and result.params["clip_skip"] == 2
    assert result.params["sampler"] == "Euler" and result.params["cfg_scale"] == 12.0
    assert any("non-canonical" in note for note in result.notes)
    text = Image.open(result.image_path).info["parameters"]
    assert "Seed: 2870305590" in text and "Clip skip: 2" in text and "Downcast alphas_cumprod: True" in text
    assert "ENSD" not in text  # plain Euler draws no per-step noise, so A1111 leaves ENSD out
    assert result.recorded
    # the A1111 whose behaviour it reproduces, in the result, its --json and the catalog record
    assert result.to_dict()["a1111_version"] == "v1.10.1" and "Version: v1.10.1" in text
    assert result.to_dict()["a1111_settings"] == {"Downcast alphas_cumprod": True, "ENSD": 31337, "Clip skip": 2,
                                                  "RNG": "GPU"}
    with Catalog(tmp_home) as catalog:
        asset = catalog.find(str(tiny_models["sd1"]))
        assert asset.status == "wrong-model"
        details = catalog.show(asset.sha256).to_dict()
    assert any(test["verdict"] == "wrong-model" for test in details["tests"])
    [recorded] = [test for test in details["tests"] if test["verdict"] == "wrong-model"]
    assert "v1.10.1" in str(recorded) and "Downcast alphas_cumprod" in str(recorded)


def test_asuka_reference_similarity(tmp_home, tiny_models):
    overrides = {"steps": 2, "width": 64, "height": 64}
    first = run_asuka(tmp_home, str(tiny_models["sd1"]), overrides=overrides, record=False, force=True)
    again = run_asuka(tmp_home, str(tiny_models["sd1"]), reference=first.image_path, overrides=overrides,
                      record=False, force=True)
    assert again.similarity["ssim"] == pytest.approx(1.0) and again.similarity["passed"]
    other = run_asuka(tmp_home, str(tiny_models["sd1"]), reference=first.image_path,
                      overrides={**overrides, "seed": 1}, record=False, force=True)
    assert other.similarity["ssim"] < again.similarity["ssim"]


def test_smoke_judges_each_model_and_reports_errors_without_stopping(tmp_home, tiny_models, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    results = run_smoke(tmp_home, [str(broken), str(tiny_models["sd1"])], steps=2)
    assert [r.verdict for r in results][0] == "error"
    good = results[1]
    assert good.verdict in ("pass", "washed-out", "uniform") and good.image_path and good.recorded
    assert good.params["width"] == 64  # the tiny model's native size (UNet sample size 8 x 8)


def test_smoke_all_tests_every_checkpoint_in_the_catalog(tmp_home, tiny_models):
    import shutil

    for name in ("first", "second"):
        shutil.copy(tiny_models["sd1"] if name == "first" else tiny_models["sd1_ckpt"],
                    tmp_home.folder("checkpoint") / f"{name}{'.safetensors' if name == 'first' else '.ckpt'}")
    shutil.copy(tiny_models["vae"], tmp_home.folder("vae") / "not-a-checkpoint.safetensors")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    results = run_smoke(tmp_home, [], all_models=True, steps=2)
    assert sorted(Path(r.model["path"]).name for r in results) == ["first.safetensors", "second.ckpt"]
    assert all(r.recorded and r.verdict != "error" for r in results)
    with Catalog(tmp_home) as catalog:
        statuses = {asset.name: asset.status for asset in catalog.list_assets(kind="checkpoint")}
    assert set(statuses.values()) <= {"pass", "washed-out", "uniform"} and len(statuses) == 2
