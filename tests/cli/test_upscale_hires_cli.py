"""`sdhub generate --hires / --init-image` and `sdhub upscale` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from sdhub.generate.infotext import read_png_parameters


@pytest.fixture(scope="module")
def tiny_sd1(tmp_path_factory) -> Path:
    from safetensors.torch import load_file, save_file

    from sdhub.testing import factory

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("cli-hires-models")
    state = load_file(str(factory.sd1_checkpoint(folder / "factory.safetensors")))
    key = "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    state[key] = torch.randn(state[key].shape, generator=torch.Generator().manual_seed(3)) * 0.5
    save_file(state, str(folder / "tiny-sd1.safetensors"))
    return folder / "tiny-sd1.safetensors"


@pytest.fixture
def catalogued(tmp_home, tiny_sd1):
    from sdhub.catalog import Catalog

    model = tmp_home.folder("checkpoint") / "tiny-sd1.safetensors"
    shutil.copy(tiny_sd1, model)
    with Catalog(tmp_home) as catalog:
        catalog.add_file(model)
    return tmp_home


def test_hires_image_reruns_from_png_to_the_same_bytes(run_cli, catalogued):
    first = run_cli("--home", catalogued.root, "generate", "a dog", "--model", "tiny-sd1", "--steps", "2",
                    "--width", "64", "--height", "64", "--seed", "9", "--hires-scale", "1.5", "--hires-steps", "2",
                    "--hires-upscaler", "Latent (nearest-exact)", "--denoising-strength", "0.55", "--json")
    assert first.exit_code == 0, first.stderr
    image = Path(json.loads(first.stdout)["images"][0])
    assert Image.open(image).size == (96, 96)
    assert "Hires upscaler: Latent (nearest-exact)" in read_png_parameters(image)
    again = run_cli("--home", catalogued.root, "generate", "--from-png", image, "--json")
    assert again.exit_code == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["hires"]["denoising_strength"] == 0.55 and data["hires"]["upscaler"] == "Latent (nearest-exact)"
    assert Path(data["images"][0]).read_bytes() == image.read_bytes()


def test_img2img_image_reruns_with_its_init_image(run_cli, catalogued, tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (80, 64), (20, 160, 90)).save(init)
    first = run_cli("--home", catalogued.root, "generate", "a field", "--model", "tiny-sd1", "--steps", "3",
                    "--width", "64", "--height", "64", "--seed", "4", "--init-image", init,
                    "--resize-mode", "Crop and resize", "--denoising-strength", "0.5", "--json")
    assert first.exit_code == 0, first.stderr
    image = Path(json.loads(first.stdout)["images"][0])
    refused = run_cli("--home", catalogued.root, "generate", "--from-png", image)
    assert refused.exit_code == 2 and "--init-image" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    again = run_cli("--home", catalogued.root, "generate", "--from-png", image, "--init-image", init,
                    "--resize-mode", "Crop and resize", "--json")
    assert again.exit_code == 0, again.stderr
    assert Path(json.loads(again.stdout)["images"][0]).read_bytes() == image.read_bytes()


def test_upscale_writes_a_bigger_png_with_the_scripts_infotext(run_cli, catalogued, tmp_path):
    from sdhub.testing import aux_models

    aux_models.upscaler(catalogued.folder("upscaler") / "2x-Tiny.pth", "realesrgan", 2)
    source = tmp_path / "small.png"
    Image.new("RGB", (64, 64), (200, 100, 50)).save(source)
    result = run_cli("--home", catalogued.root, "upscale", source, "--model", "tiny-sd1", "--upscaler", "2x-Tiny",
                     "--scale", "2", "--overlap", "16", "--steps", "2", "--seed", "5", "--denoising-strength", "0.3")
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert Image.open(path).size == (128, 128)
    text = read_png_parameters(path)
    assert "SD upscale overlap: 16" in text and "SD upscale upscaler: 2x-Tiny" in text and "Seed: 5" in text


@pytest.mark.parametrize("args,code,message", [
    (["upscale", "{image}", "--model", "{model}", "--upscaler", "Nope", "--overlap", "16"], 1, "unknown upscaler"),
    (["upscale", "{bad}", "--model", "{model}", "--overlap", "16"], 2, "not a readable image"),
    (["upscale", "{image}", "--model", "{model}", "--overlap", "64"], 2, "--overlap"),
    (["generate", "a cat", "--model", "{model}", "--init-image", "{bad}"], 2, "not a readable image"),
    (["generate", "a cat", "--model", "{model}", "--hires-upscaler", "Nope"], 1, "unknown upscaler"),
    (["generate", "a cat", "--model", "{model}", "--hires-resize", "big"], 2, "WxH"),
    (["generate", "a cat", "--model", "{model}", "--denoising-strength", "0.5"], 2, "--init-image"),
])
def test_bad_input_is_one_line_and_an_exit_code(run_cli, tmp_home, tiny_sd1, tmp_path, args, code, message):
    image, bad = tmp_path / "ok.png", tmp_path / "bad.png"
    Image.new("RGB", (64, 64)).save(image)
    bad.write_bytes(b"not a png")
    values = {"{model}": str(tiny_sd1), "{image}": str(image), "{bad}": str(bad)}
    result = run_cli("--home", tmp_home.root, *[values.get(arg, arg) for arg in args])
    assert result.exit_code == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
