"""Inpaint on the factory's tiny SD1 models, offline: the overlay keeps the unmasked pixels, masked content and
inpaint areas as A1111 1.10 writes them, a 9-channel UNet's conditioning, reruns with the mask given again."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdhub.errors import BadInputError, UsageError
from sdhub.generate.generate import generate, load_model_cached, rerun_png, resolve_file
from sdhub.generate.img2img import Img2ImgParams
from sdhub.generate.infotext import Infotext
from sdhub.generate.masking import blur_mask, expand_crop_region, mask_crop_region
from sdhub.generate.pipeline import GenerationParams
from sdhub.testing import factory
from sdhub.testing.images import pixels


def params(**overrides) -> GenerationParams:
    base = dict(prompt="a red cat", negative_prompt="blurry", steps=3, sampler="Euler a", seed=1234, width=64,
                height=64)
    return GenerationParams(**{**base, **overrides})


def fields(result) -> dict[str, str]:
    return Infotext.from_text(result.infotexts[0]).params


@pytest.fixture
def init_and_mask(tmp_path):
    """A striped 64x64 init image and a mask whose white square covers x, y in 24..40."""
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, :, 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
    stripes[::4, :, 1] = 200
    stripes[:, :, 2] = 90
    init = tmp_path / "init.png"
    Image.fromarray(stripes).save(init)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[24:40, 24:40] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask, "L").save(mask_path)
    return init, mask_path, stripes, mask


def outside(mask: np.ndarray, blur: int) -> np.ndarray:
    """Where the blurred mask is black: the pixels A1111's overlay gives back exactly."""
    blurred = np.asarray(blur_mask(Image.fromarray(mask, "L"), blur, blur)) if blur else mask
    return blurred == 0


@pytest.mark.parametrize("content", ["original", "fill", "latent noise", "latent nothing"])
@pytest.mark.parametrize("area", ["Whole picture", "Only masked"])
def test_inpaint_keeps_the_unmasked_pixels_and_writes_a1111s_fields(tmp_home, tiny_models, init_and_mask, content,
                                                                   area):
    init, mask_path, stripes, mask = init_and_mask
    settings = Img2ImgParams(init, 0.8, mask=mask_path, masked_content=content, inpaint_area=area, masked_padding=8)
    result = generate(tmp_home, str(tiny_models["sd1"]), params(), img2img=settings)
    drawn = pixels(result.images[0])
    assert drawn.shape == (64, 64, 3)
    kept = outside(mask, 4)
    assert np.array_equal(drawn[kept], stripes[kept])  # the overlay puts the init image back, exactly
    assert not np.array_equal(drawn[28:36, 28:36], stripes[28:36, 28:36])  # inside, redrawn
    written = fields(result)
    assert written["Denoising strength"] == "0.8" and written["Mask blur"] == "4"
    assert written.get("Masked content") == (None if content == "original" else content)
    if area == "Only masked":
        assert (written["Inpaint area"], written["Masked area padding"]) == ("Only masked", "8")
    else:
        assert "Inpaint area" not in written and "Masked area padding" not in written
    assert "Mask mode" not in written and "Conditional mask weight" not in written
    keys = list(written)
    assert keys.index("Denoising strength") < keys.index("RNG") < keys.index("Mask blur") < keys.index("Version")


def test_inpaint_is_deterministic_per_seed_and_reruns_with_its_init_image_and_mask(tmp_home, tiny_models,
                                                                                  init_and_mask):
    init, mask_path, _, _ = init_and_mask
    settings = Img2ImgParams(init, 0.7, mask=mask_path, mask_blur=2, mask_invert=True, masked_content="fill",
                             inpaint_area="Only masked", masked_padding=4)
    model = str(tiny_models["sd1"])
    first = generate(tmp_home, model, params(sampler="DPM++ 2M"), img2img=settings)
    again = generate(tmp_home, model, params(sampler="DPM++ 2M"), img2img=settings)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    other = generate(tmp_home, model, params(sampler="DPM++ 2M", seed=99), img2img=settings)
    assert not np.array_equal(pixels(first.images[0]), pixels(other.images[0]))
    written = fields(first)
    assert (written["Mask mode"], written["Mask blur"], written["Masked content"]) == ("Inpaint not masked", "2", "fill")

    rerun = rerun_png(tmp_home, first.images[0], model_ref=model, init_image=init, mask=mask_path)
    assert (rerun.img2img.mask_blur, rerun.img2img.mask_invert, rerun.img2img.inpaint_area,
            rerun.img2img.masked_padding, rerun.img2img.masked_content) == (2, True, "Only masked", 4, "fill")
    assert np.array_equal(pixels(first.images[0]), pixels(rerun.images[0]))
    assert rerun.infotexts[0] == first.infotexts[0]
    with pytest.raises(BadInputError, match="--init-image and --mask") as caught:
        rerun_png(tmp_home, first.images[0], model_ref=model, init_image=init)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("sampler", ["DDIM", "DPM++ SDE"])
def test_inpaint_with_timestep_and_brownian_samplers_keeps_the_outside(tmp_home, tiny_models, init_and_mask,
                                                                       sampler):
    init, mask_path, stripes, mask = init_and_mask
    result = generate(tmp_home, str(tiny_models["sd1"]), params(sampler=sampler, steps=4),
                      img2img=Img2ImgParams(init, 0.9, mask=mask_path, mask_blur=0))
    drawn = pixels(result.images[0])
    kept = outside(mask, 0)
    assert np.array_equal(drawn[kept], stripes[kept])
    assert not np.array_equal(drawn[~kept], stripes[~kept])
    assert "Mask blur" not in fields(result)  # A1111 writes it only above 0


def test_only_masked_draws_the_crop_at_the_asked_size_and_pastes_it_back(tmp_home, tiny_models, init_and_mask):
    from sdhub.generate.generate import load_model_cached, resolve_file

    init, mask_path, stripes, mask = init_and_mask
    model = resolve_file(tmp_home, str(tiny_models["sd1"]), "checkpoint")
    loaded, _ = load_model_cached(model, None, None, None)
    shapes: list[tuple[int, ...]] = []
    handle = loaded.unet.register_forward_pre_hook(lambda _module, args: shapes.append(tuple(args[0].shape)))
    try:
        result = generate(tmp_home, model, params(width=128, height=64),
                          img2img=Img2ImgParams(init, 0.6, mask=mask_path, inpaint_area="Only masked",
                                                masked_padding=0, mask_blur=0))
    finally:
        handle.remove()
    assert {shape[-2:] for shape in shapes} == {(8, 16)}  # the 32x16 crop around the square is drawn at 128x64
    assert Image.open(result.images[0]).size == (64, 64)  # and pasted back into the init image's size
    drawn = pixels(result.images[0])
    assert np.array_equal(drawn[:24], stripes[:24]) and np.array_equal(drawn[40:], stripes[40:])


def test_crop_region_follows_a1111():
    mask = Image.new("L", (100, 80))
    mask.paste(255, (30, 20, 50, 30))
    assert mask_crop_region(mask, 0) == (30, 20, 50, 30)
    assert mask_crop_region(mask, 40) == (0, 0, 90, 70)
    assert mask_crop_region(Image.new("L", (10, 10)), 4) is None
    # a 20x10 box grown to a square, then shifted back inside the image
    assert expand_crop_region((30, 20, 50, 30), 64, 64, 100, 80) == (30, 15, 50, 35)
    assert expand_crop_region((80, 0, 100, 10), 32, 64, 100, 80) == (80, 0, 100, 40)
    assert expand_crop_region((0, 70, 60, 80), 64, 64, 100, 80) == (0, 20, 60, 80)


def test_mask_blur_is_opencvs_fixed_point_gaussian_along_x_then_y():
    line = np.zeros((1, 21), dtype=np.uint8)
    line[0, 10] = 255
    blurred = np.asarray(blur_mask(Image.fromarray(line, "L"), 1, 0))[0]
    # OpenCV's 7-tap kernel for sigma 1 in 1/256: 1, 14, 62, 102, 62, 14, 1
    assert blurred[7:14].tolist() == [1, 14, 62, 102, 62, 14, 1]
    assert blurred.sum() <= 256 and blurred[:7].sum() == 0
    square = np.zeros((16, 16), dtype=np.uint8)
    square[4:8, 4:8] = 255
    both = np.asarray(blur_mask(Image.fromarray(square, "L"), 2, 2))
    only_x = np.asarray(blur_mask(Image.fromarray(square, "L"), 2, 0))
    # two 8-bit passes, as A1111's two cv2.GaussianBlur calls: x rounded to 8 bits, then y
    assert np.array_equal(both, np.asarray(blur_mask(Image.fromarray(only_x, "L"), 0, 2)))
    assert (only_x[0] == 0).all() and only_x[5, 1] > 0


def test_a_9_channel_inpainting_unet_gets_the_mask_and_the_masked_image_latent(tmp_home, tmp_path, init_and_mask):
    init, mask_path, _, mask = init_and_mask
    checkpoint = factory.sd1_checkpoint(tmp_path / "tiny-inpainting.safetensors", inpainting=True)
    model = resolve_file(tmp_home, str(checkpoint), "checkpoint")
    loaded, _ = load_model_cached(model, None, None, None)
    inputs: list[torch.Tensor] = []
    handle = loaded.unet.register_forward_pre_hook(lambda _module, args: inputs.append(args[0].detach().clone()))
    try:
        result = generate(tmp_home, model, params(), img2img=Img2ImgParams(init, 0.75, mask=mask_path,
                                                                           mask_blur=0, mask_weight=1.0))
    finally:
        handle.remove()
    assert inputs and all(tensor.shape[1] == 9 for tensor in inputs)
    extra = inputs[0][:, 4:]
    latent_mask = extra[0, 0]
    expected = torch.zeros(8, 8)
    expected[3:5, 3:5] = 1  # the 16 px square at 24..40 is latent rows and columns 3 and 4
    assert torch.equal(latent_mask.float().cpu(), expected)
    # the masked-image latent is the VAE latent of the init image with the square blanked to grey
    from sdhub.generate.img2img import encode_images

    blanked = np.asarray(Image.open(init).convert("RGB")).copy()
    blanked[mask > 0] = 127.5
    expected_latent = encode_images(loaded, [Image.fromarray(blanked.astype(np.uint8))])
    assert torch.allclose(extra[0, 1:].float().cpu(), expected_latent[0].cpu(), atol=0.05)
    assert not torch.allclose(extra[0, 1:].float().cpu(), encode_images(loaded, [Image.open(init)])[0].cpu(),
                              atol=0.05)
    assert fields(result)["Conditional mask weight"] == "1"


def test_a_blank_mask_keeps_the_init_image_and_says_so(tmp_home, tiny_models, tmp_path, init_and_mask):
    init, _, stripes, _ = init_and_mask
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64)).save(blank)
    whole = generate(tmp_home, str(tiny_models["sd1"]), params(), img2img=Img2ImgParams(init, 0.8, mask=blank))
    assert np.array_equal(pixels(whole.images[0]), stripes)
    assert any("blank" in note for note in whole.notes)
    cropped = generate(tmp_home, str(tiny_models["sd1"]), params(),
                       img2img=Img2ImgParams(init, 0.8, mask=blank, inpaint_area="Only masked"))
    assert any("plain img2img" in note for note in cropped.notes)
    assert "Inpaint area" not in fields(cropped)  # A1111 falls back to img2img and writes no inpaint area


def test_a_mask_of_another_size_is_resized_as_a1111_does(tmp_home, tiny_models, tmp_path, init_and_mask):
    init, _, stripes, _ = init_and_mask
    small = np.zeros((32, 32), dtype=np.uint8)
    small[12:20, 12:20] = 255
    path = tmp_path / "small-mask.png"
    Image.fromarray(small, "L").save(path)
    result = generate(tmp_home, str(tiny_models["sd1"]), params(), img2img=Img2ImgParams(init, 0.8, mask=path,
                                                                                         mask_blur=0))
    drawn = pixels(result.images[0])
    assert np.array_equal(drawn[:16], stripes[:16]) and not np.array_equal(drawn[28:36], stripes[28:36])


@pytest.mark.parametrize("content", [b"not an image", None])
def test_a_bad_mask_is_a_one_line_error(tmp_home, tiny_models, tmp_path, init_and_mask, content):
    init, _, _, _ = init_and_mask
    path = tmp_path / "bad-mask.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInputError, match="mask") as caught:
        generate(tmp_home, str(tiny_models["sd1"]), params(), img2img=Img2ImgParams(init, mask=path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("option,value", [("masked_content", "blur"), ("inpaint_area", "half"), ("mask_blur", 65),
                                          ("masked_padding", -1)])
def test_bad_inpaint_settings_are_refused_in_one_line(tmp_home, tiny_models, init_and_mask, option, value):
    init, mask_path, _, _ = init_and_mask
    settings = Img2ImgParams(init, mask=mask_path, **{option: value})
    with pytest.raises(UsageError) as caught:
        generate(tmp_home, str(tiny_models["sd1"]), params(), img2img=settings)
    assert "\n" not in str(caught.value)


def test_img2img_api_reaches_inpaint_from_the_package():
    import sdhub

    settings = sdhub.Img2ImgParams("in.png", mask="mask.png", masked_content="Latent Noise", inpaint_area="only masked")
    settings.validate()
    assert (settings.masked_content, settings.inpaint_area) == ("latent noise", "Only masked")
