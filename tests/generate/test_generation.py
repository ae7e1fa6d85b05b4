"""Generating from the factory's tiny SD1 model, offline: reproducible images, infotext, reruns, LoRA tags."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sdhub.errors import NotFoundError, UsageError
from sdhub.generate.generate import clear_model_cache, generate, rerun_png
from sdhub.generate.infotext import Infotext, read_png_parameters
from sdhub.generate.pipeline import GenerationParams
from sdhub.testing.images import assert_same_picture, pixels


def params(**overrides) -> GenerationParams:
    base = dict(prompt="a (red:1.2) cat on a chair", negative_prompt="blurry", steps=3, sampler="Euler a",
                seed=1234, width=64, height=64)
    return GenerationParams(**{**base, **overrides})


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM"])
def test_same_seed_and_settings_give_bit_identical_images(tmp_home, tiny_models, sampler):
    first = generate(tmp_home, str(tiny_models["sd1"]), params(sampler=sampler))
    clear_model_cache()  # the second run loads the checkpoint again from disk
    second = generate(tmp_home, str(tiny_models["sd1"]), params(sampler=sampler))
    assert first.images[0] != second.images[0]
    assert np.array_equal(pixels(first.images[0]), pixels(second.images[0]))
    other_seed = generate(tmp_home, str(tiny_models["sd1"]), params(sampler=sampler, seed=1235))
    assert not np.array_equal(pixels(first.images[0]), pixels(other_seed.images[0]))


def test_safetensors_and_ckpt_of_the_same_weights_draw_the_same_image(tmp_home, tiny_models):
    from_safetensors = generate(tmp_home, str(tiny_models["sd1"]), params())
    from_ckpt = generate(tmp_home, str(tiny_models["sd1_ckpt"]), params())
    assert_same_picture(from_safetensors.images[0], from_ckpt.images[0])
    assert from_ckpt.model.sha256 != from_safetensors.model.sha256


def test_written_png_carries_a1111_infotext(tmp_home, tiny_models):
    result = generate(tmp_home, str(tiny_models["sd1"]), params(clip_skip=2, eta_noise_seed_delta=31337))
    path = result.images[0]
    assert path.parent == tmp_home.outputs_dir and path.name.endswith("-1234.png")
    text = read_png_parameters(path)
    assert text == result.infotexts[0]
    info = Infotext.from_text(text)
    assert info.prompt == "a (red:1.2) cat on a chair" and info.negative_prompt == "blurry"
    expected = {
        "Steps": "3", "Sampler": "Euler a", "Schedule type": "Automatic", "CFG scale": "7", "Seed": "1234",
        "Size": "64x64", "Model hash": result.model.sha256[:10], "Model": "tiny-sd1", "Clip skip": "2",
        "ENSD": "31337", "Version": "v1.10.1",
    }
    if result.rng == "nv":  # no CUDA here: GPU noise comes from the NV generator, and A1111 says so
        expected["RNG"] = "NV"
    assert info.params == expected


def test_random_seed_is_reported_and_written(tmp_home, tiny_models):
    result = generate(tmp_home, str(tiny_models["sd1"]), params(seed=-1))
    seed = result.params.seed
    assert 0 <= seed < 4294967294 and result.seeds == [seed]
    assert f"Seed: {seed}," in read_png_parameters(result.images[0])


def test_batch_images_equal_single_images_of_consecutive_seeds(tmp_home, tiny_models):
    batch = generate(tmp_home, str(tiny_models["sd1"]), params(batch_size=2, sampler="Euler"))
    single = generate(tmp_home, str(tiny_models["sd1"]), params(seed=1235, sampler="Euler"))
    assert batch.seeds == [1234, 1235]
    np.testing.assert_allclose(pixels(batch.images[1]).astype(int), pixels(single.images[0]).astype(int), atol=1)


def test_from_png_rerun_makes_the_same_image_finding_the_model_by_hash(home_with_model, tmp_path):
    original = generate(home_with_model, "tiny-sd1", params(seed=77, sampler="DPM++ 2M Karras"))
    outside = tmp_path / "shared.png"
    shutil.copy(original.images[0], outside)
    clear_model_cache()
    rerun = rerun_png(home_with_model, outside)
    assert rerun.model.sha256 == original.model.sha256
    assert rerun.params.seed == 77
    # A1111 1.10 writes the old combined name as sampler + schedule type, and so does sdhub
    assert (rerun.params.sampler, rerun.params.schedule_type) == ("DPM++ 2M", "Karras")
    assert np.array_equal(pixels(rerun.images[0]), pixels(original.images[0]))
    assert read_png_parameters(rerun.images[0]) == read_png_parameters(original.images[0])


def test_from_png_without_the_model_in_the_catalog_says_so(tmp_home, tiny_models, tmp_path):
    result = generate(tmp_home, str(tiny_models["sd1"]), params())
    with pytest.raises(NotFoundError):
        rerun_png(tmp_home, result.images[0])


def test_lora_tags_are_applied_from_the_loras_folder_and_hashed(tmp_home, tiny_models):
    from sdhub.testing import factory

    factory.lora(tmp_home.folder("lora") / "style.safetensors")
    plain = generate(tmp_home, str(tiny_models["sd1"]), params())
    zero = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a (red:1.2) cat on a chair <lora:style:0>"))
    full = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a (red:1.2) cat on a chair <lora:style:1>"))
    assert np.array_equal(pixels(plain.images[0]), pixels(zero.images[0]))
    assert not np.array_equal(pixels(plain.images[0]), pixels(full.images[0]))
    text = read_png_parameters(full.images[0])
    assert "<lora:style:1>" in text.splitlines()[0]
    assert f'Lora hashes: "style: {full.loras[0]["hash"]}"' in text
    missing = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a cat <lora:nowhere:1>"))
    assert any("nowhere" in note for note in missing.notes)


def test_bad_sizes_and_unknown_models_are_refused(tmp_home, tiny_models):
    with pytest.raises(UsageError, match="multiples of 8"):
        generate(tmp_home, str(tiny_models["sd1"]), params(width=70))
    with pytest.raises(NotFoundError):
        generate(tmp_home, "no-such-model", params())


def test_and_sub_prompts_are_weighted_like_a1111_composable_diffusion(tmp_home, tiny_models):
    alone = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a cat", sampler="Euler"))
    zero = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a cat AND a dog :0", sampler="Euler"))
    both = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a cat AND a dog", sampler="Euler"))
    difference = np.abs(pixels(alone.images[0]).astype(int) - pixels(zero.images[0]).astype(int))
    assert difference.max() <= 1  # same maths; only the UNet batch size differs
    assert not np.array_equal(pixels(alone.images[0]), pixels(both.images[0]))


def test_prompt_editing_switches_the_conditioning_mid_way(tmp_home, tiny_models):
    cat = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a cat", sampler="Euler", steps=4))
    edited = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a [cat:dog:2]", sampler="Euler", steps=4))
    late = generate(tmp_home, str(tiny_models["sd1"]), params(prompt="a [cat:dog:9]", sampler="Euler", steps=4))
    assert np.array_equal(pixels(cat.images[0]), pixels(late.images[0]))  # the switch never comes
    assert not np.array_equal(pixels(cat.images[0]), pixels(edited.images[0]))


def test_progress_reports_loading_and_each_sampling_step(tmp_home, tiny_models):
    from sdhub.progress import RecordingProgress

    clear_model_cache()
    progress = RecordingProgress()
    generate(tmp_home, str(tiny_models["sd1"]), params(steps=4), progress)
    tasks = {task.description.split()[0]: task for task in progress.tasks}
    assert tasks["Loading"].finished and tasks["Loading"].completed == tasks["Loading"].total > 100
    sampling = tasks["Sampling"]
    assert (sampling.total, sampling.completed, sampling.unit, sampling.finished) == (4, 4, "steps", True)


def test_a_vae_named_after_the_model_is_used_automatically(tmp_home, tiny_models, tmp_path):
    model = tmp_path / "anime.safetensors"
    shutil.copy(tiny_models["sd1"], model)
    shutil.copy(tiny_models["vae"], tmp_path / "anime.vae.safetensors")
    plain = generate(tmp_home, str(tiny_models["sd1"]), params())
    result = generate(tmp_home, str(model), params())
    assert result.vae is not None and result.vae.path.name == "anime.vae.safetensors"
    assert any("automatic VAE" in note for note in result.notes)
    assert f"VAE hash: {result.vae.autov2}, VAE: anime.vae.safetensors" in read_png_parameters(result.images[0])
    assert not np.array_equal(pixels(plain.images[0]), pixels(result.images[0]))


def test_rng_sources_change_the_noise_and_the_default_is_gpu_noise(tmp_home, tiny_models):
    import torch

    default = generate(tmp_home, str(tiny_models["sd1"]), params())
    cpu = generate(tmp_home, str(tiny_models["sd1"]), params(rng="cpu"))
    assert default.rng == ("gpu" if torch.cuda.is_available() else "nv")
    assert "RNG: CPU" in read_png_parameters(cpu.images[0])
    assert not np.array_equal(pixels(default.images[0]), pixels(cpu.images[0]))
    if not torch.cuda.is_available():
        nv = generate(tmp_home, str(tiny_models["sd1"]), params(rng="nv"))
        assert np.array_equal(pixels(default.images[0]), pixels(nv.images[0]))
