"""`sdhub generate --init-image IMG --mask MASK` as a user runs it: A1111's fields, reruns, one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdhub.generate.infotext import Infotext, read_png_parameters


@pytest.fixture(scope="module")
def tiny_sd1(tmp_path_factory) -> Path:
    from sdhub.testing import factory

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("cli-inpaint-models")
    return factory.sd1_checkpoint(folder / "tiny-sd1.safetensors")


@pytest.fixture
def home_and_files(tmp_home, tiny_sd1, tmp_path):
    from sdhub.catalog import Catalog

    model = tmp_home.folder("checkpoint") / "tiny-sd1.safetensors"
    shutil.copy(tiny_sd1, model)
    with Catalog(tmp_home) as catalog:
        catalog.add_file(model)
    init = tmp_path / "init.png"
    values = np.zeros((64, 64, 3), dtype=np.uint8)
    values[:, :, 1] = np.arange(64, dtype=np.uint8)[:, None] * 3
    Image.fromarray(values).save(init)
    mask = tmp_path / "mask.png"
    square = np.zeros((64, 64), dtype=np.uint8)
    square[16:48, 16:48] = 255
    Image.fromarray(square, "L").save(mask)
    return tmp_home, init, mask, values


def test_inpaint_writes_a1111s_fields_and_reruns_with_the_same_init_image_and_mask(run_cli, home_and_files):
    home, init, mask, values = home_and_files
    first = run_cli("--home", home.root, "generate", "a cat", "--model", "tiny-sd1", "--steps", "3", "--width", "64",
                    "--height", "64", "--seed", "5", "--init-image", init, "--mask", mask, "--mask-blur", "2",
                    "--masked-content", "latent noise", "--inpaint-area", "Only masked", "--masked-padding", "8",
                    "--denoising-strength", "0.8", "--json")
    assert first.exit_code == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["img2img"]["mask"] == str(mask) and data["img2img"]["masked_content"] == "latent noise"
    image = Path(data["images"][0])
    fields = Infotext.from_text(read_png_parameters(image)).params
    assert (fields["Mask blur"], fields["Inpaint area"], fields["Masked area padding"], fields["Masked content"]) == (
        "2", "Only masked", "8", "latent noise")
    drawn = np.asarray(Image.open(image).convert("RGB"))
    assert np.array_equal(drawn[:8], values[:8]) and not np.array_equal(drawn[24:40], values[24:40])

    refused = run_cli("--home", home.root, "generate", "--from-png", image, "--init-image", init)
    assert refused.exit_code == 2 and "--mask" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    again = run_cli("--home", home.root, "generate", "--from-png", image, "--init-image", init, "--mask", mask,
                    "--json")
    assert again.exit_code == 0, again.stderr
    assert Path(json.loads(again.stdout)["images"][0]).read_bytes() == image.read_bytes()


@pytest.mark.parametrize("extra,message", [
    ((), "--init-image"),
    (("--init-image", "INIT", "--masked-content", "smudge"), "masked content"),
])
def test_bad_inpaint_options_are_one_line_errors(run_cli, home_and_files, extra, message):
    home, init, mask, _ = home_and_files
    args = [str(init) if value == "INIT" else value for value in extra]
    result = run_cli("--home", home.root, "generate", "a cat", "--model", "tiny-sd1", "--steps", "2", "--width", "64",
                     "--height", "64", "--mask", mask, *args)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_mask_that_is_not_an_image_is_a_one_line_error(run_cli, home_and_files, tmp_path):
    home, init, _, _ = home_and_files
    bad = tmp_path / "mask.txt"
    bad.write_text("not a mask")
    result = run_cli("--home", home.root, "generate", "a cat", "--model", "tiny-sd1", "--steps", "2", "--width", "64",
                     "--height", "64", "--init-image", init, "--mask", bad)
    assert result.exit_code == 2 and "mask" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
