"""Hires fix and img2img on the factory's tiny SD1, offline: per-seed determinism, A1111's infotext, reruns."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdhub.errors import BadInputError, NotFoundError, UsageError
from sdhub.generate.generate import generate, rerun_png
from sdhub.generate.hires import HiresParams
from sdhub.generate.img2img import Img2ImgParams, img2img_steps
from sdhub.generate.infotext import Infotext
from sdhub.generate.pipeline import GenerationParams
from sdhub.testing import aux_models
from sdhub.testing.images import pixels


def params(**overrides) -> GenerationParams:
    base = dict(prompt="a red cat", negative_prompt="blurry", steps=3, sampler="Euler a", seed=1234, width=64,
                height=64)
    return GenerationParams(**{**base, **overrides})


@pytest.fixture
def home(tmp_home):
    """A home with a tiny ESRGAN x4 in its upscaler folder (A1111 names it by its stem)."""
    aux_models.upscaler(tmp_home.folder("upscaler") / "4x-Tiny.pth", "esrgan", 4)
    return tmp_home


def fields(result) -> dict[str, str]:
    return Infotext.from_text(result.infotexts[0]).params


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "4x-Tiny", "Lanczos"])
def test_hires_fix_is_deterministic_per_seed_and_written_as_a1111_does(home, tiny_models, upscaler):
    hires = HiresParams(upscaler=upscaler, scale=1.5, steps=2, denoising_strength=0.6)
    first = generate(home, str(tiny_models["sd1"]), params(), hires=hires)
    assert Image.open(first.images[0]).size == (96, 96)
    again = generate(home, str(tiny_models["sd1"]), params(), hires=hires)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    other = generate(home, str(tiny_models["sd1"]), params(seed=1235), hires=hires)
    assert not np.array_equal(pixels(first.images[0]), pixels(other.images[0]))
    plain = generate(home, str(tiny_models["sd1"]), params())
    assert Image.open(plain.images[0]).size == (64, 64)
    written = fields(first)
    assert written["Size"] == "64x64" and written["Steps"] == "3"
    assert (written["Denoising strength"], written["Hires upscale"], written["Hires steps"],
            written["Hires upscaler"]) == ("0.6", "1.5", "2", upscaler)
    keys = list(written)
    # A1111's order: Denoising strength among the fixed keys, the hires fields before Version
    assert keys.index("Denoising strength") < keys.index("RNG") < keys.index("Hires upscale") < keys.index("Version")
    assert "Hires sampler" not in written and "Hires prompt" not in written


def test_hires_second_pass_settings_are_written_and_rerun_to_the_same_pixels(home, tiny_models):
    hires = HiresParams(upscaler="4x-tiny", resize_width=96, resize_height=64, sampler="DPM++ 2M",
                        prompt="a red cat, detailed", negative_prompt="lowres", denoising_strength=0.5,
                        cfg_scale=5.0)
    result = generate(home, str(tiny_models["sd1"]), params(), hires=hires)
    assert Image.open(result.images[0]).size == (96, 64)  # the overflow is cut from the latents
    written = fields(result)
    assert written["Hires resize"] == "96x64" and "Hires upscale" not in written
    assert written["Hires upscaler"] == "4x-Tiny"  # A1111's spelling of the name
    assert (written["Hires sampler"], written["Hires prompt"], written["Hires negative prompt"]) == (
        "DPM++ 2M", "a red cat, detailed", "lowres")
    assert written["Hires schedule type"] == "Karras"  # DPM++ 2M's Automatic, unlike Euler a's
    assert written["Hires CFG Scale"] == "5"
    again = rerun_png(home, result.images[0], model_ref=str(tiny_models["sd1"]))
    assert again.hires.sampler == "DPM++ 2M" and again.hires.schedule_type == "Karras"
    assert np.array_equal(pixels(result.images[0]), pixels(again.images[0]))
    assert again.infotexts[0] == result.infotexts[0]


def test_hires_with_a_second_checkpoint_is_refused_in_one_line(home, tiny_models):
    text = ("a cat\nSteps: 3, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Denoising strength: 0.5, "
            "Hires upscale: 2, Hires upscaler: Latent, Hires checkpoint: other-model")
    path = home.root / "in.png"
    from sdhub.generate.infotext import save_png_with_parameters

    save_png_with_parameters(Image.new("RGB", (64, 64)), path, text)
    with pytest.raises(BadInputError, match="Hires checkpoint") as caught:
        rerun_png(home, path, model_ref=str(tiny_models["sd1"]))
    assert "\n" not in str(caught.value)


def test_a_hires_prompt_with_other_loras_is_refused_not_drawn_differently():
    first = params(prompt="a cat <lora:style:0.8>")
    same = HiresParams(prompt="a detailed cat <lora:style:0.8>").pass_params(first)
    assert same.prompt == "a detailed cat " and same.width == first.width * 2
    with pytest.raises(UsageError, match="extra networks"):
        HiresParams(prompt="a cat <lora:other:1>").pass_params(first)
    with pytest.raises(UsageError, match="extra networks"):
        HiresParams(prompt="a cat").pass_params(first)  # A1111 would drop the LoRA for the second pass


def test_unknown_upscaler_is_a_one_line_error_naming_the_choices(home, tiny_models):
    with pytest.raises(NotFoundError, match="unknown upscaler 'Nope'.*4x-Tiny"):
        generate(home, str(tiny_models["sd1"]), params(), hires=HiresParams(upscaler="Nope"))


def test_img2img_steps_follow_a1111():
    assert img2img_steps(20, 0.75, exact_steps=False) == (20, 15)
    assert img2img_steps(20, 1.0, exact_steps=False) == (20, 19)  # min(strength, 0.999)
    assert img2img_steps(10, 0.5, exact_steps=True) == (20, 9)  # hires: exactly the asked steps run


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE", "DDIM"])
def test_img2img_is_deterministic_per_seed_and_reruns_with_its_init_image(home, tiny_models, sampler):
    init = generate(home, str(tiny_models["sd1"]), params(prompt="a blue house")).images[0]
    img2img = Img2ImgParams(init, denoising_strength=0.6)
    first = generate(home, str(tiny_models["sd1"]), params(sampler=sampler, steps=4), img2img=img2img)
    again = generate(home, str(tiny_models["sd1"]), params(sampler=sampler, steps=4), img2img=img2img)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    other = generate(home, str(tiny_models["sd1"]), params(sampler=sampler, steps=4, seed=99), img2img=img2img)
    assert not np.array_equal(pixels(first.images[0]), pixels(other.images[0]))
    assert fields(first)["Denoising strength"] == "0.6" and "Hires upscale" not in fields(first)
    rerun = rerun_png(home, first.images[0], model_ref=str(tiny_models["sd1"]), init_image=init)
    assert rerun.img2img.denoising_strength == 0.6
    assert np.array_equal(pixels(first.images[0]), pixels(rerun.images[0]))
    with pytest.raises(BadInputError, match="--init-image"):
        rerun_png(home, first.images[0], model_ref=str(tiny_models["sd1"]))


@pytest.mark.parametrize("strength,calls", [(0.3, 4), (0.75, 8), (1.0, 10)])
def test_img2img_runs_the_truncated_schedule_and_hires_exactly_its_steps(home, tiny_models, strength, calls):
    from sdhub.generate.generate import load_model_cached, resolve_file

    init = generate(home, str(tiny_models["sd1"]), params(prompt="a blue house")).images[0]
    loaded, _ = load_model_cached(resolve_file(home, str(tiny_models["sd1"]), "checkpoint"), None, None, None)
    inputs: list[tuple[int, ...]] = []
    handle = loaded.unet.register_forward_pre_hook(lambda _module, args: inputs.append(tuple(args[0].shape)))
    try:
        generate(home, str(tiny_models["sd1"]), params(sampler="Euler", steps=10),
                 img2img=Img2ImgParams(init, strength))
        assert len(inputs) == calls  # t_enc + 1 = int(min(strength, 0.999) * 10) + 1 model calls
        inputs.clear()
        generate(home, str(tiny_models["sd1"]), params(sampler="Euler", steps=5),
                 hires=HiresParams(steps=3, denoising_strength=strength))
        assert [shape[-1] for shape in inputs] == [8] * 5 + [16] * 3
    finally:
        handle.remove()


@pytest.mark.parametrize("mode", ["Just resize", "Crop and resize", "Resize and fill",
                                  "Just resize (latent upscale)"])
def test_img2img_resize_modes_reach_the_asked_size(home, tiny_models, tmp_path, mode):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (128, 64), (200, 30, 30)).save(wide)
    result = generate(home, str(tiny_models["sd1"]), params(width=64, height=96),
                      img2img=Img2ImgParams(wide, 0.5, mode))
    assert Image.open(result.images[0]).size == (64, 96)


def test_resize_and_fill_stretches_the_edges_into_the_bands(tmp_path):
    from sdhub.generate.image_resize import resize_image

    image = Image.new("RGB", (64, 32), (10, 200, 10))
    filled = np.asarray(resize_image("Resize and fill", image, 64, 64))
    cropped = np.asarray(resize_image("Crop and resize", image, 64, 64))
    assert filled[0, 0].tolist() == [10, 200, 10] and filled[63, 32].tolist() == [10, 200, 10]
    assert cropped.shape == (64, 64, 3) and cropped[32, 32].tolist() == [10, 200, 10]


@pytest.mark.parametrize("content", [b"not an image", None])
def test_a_bad_init_image_is_a_one_line_error(home, tiny_models, tmp_path, content):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInputError) as caught:
        generate(home, str(tiny_models["sd1"]), params(), img2img=Img2ImgParams(path))
    assert "\n" not in str(caught.value)


def test_hires_and_img2img_together_are_refused(home, tiny_models, tmp_path):
    with pytest.raises(UsageError, match="choose one"):
        generate(home, str(tiny_models["sd1"]), params(), hires=HiresParams(),
                 img2img=Img2ImgParams(tmp_path / "x.png"))
