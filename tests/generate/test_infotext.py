"""A1111 infotext: the exact text A1111 writes, parsed back identically, stored in real PNG files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdhub.errors import BadInputError
from sdhub.generate.infotext import Infotext, hashes_value, parse_hashes, read_png_parameters, save_png_with_parameters
from sdhub.generate.pnginfo import read_image_metadata

A1111_EXAMPLE = (
    "masterpiece, best quality, (1girl:1.2), <lora:add_detail:0.5>\n"
    "Negative prompt: (worst quality, low quality:1.3), (bad-hands-5:0.8)\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, "
    'Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "bad-hands-5: c74b4e810b03", Version: v1.10.1'
)


def _params() -> dict:
    return {
        "Version": "v1.10.1", "Seed": 1234, "Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras",
        "CFG scale": 7.0, "Size": "512x768", "Model hash": "6ce0161689", "Model": "v1-5-pruned-emaonly",
        "Clip skip": 2, "Lora hashes": hashes_value({"add_detail": "7c6bad76eb54"}),
        "TI hashes": hashes_value({"bad-hands-5": "c74b4e810b03"}), "VAE": None,
    }


def test_infotext_is_written_exactly_as_a1111_writes_it():
    info = Infotext.create("masterpiece, best quality, (1girl:1.2), <lora:add_detail:0.5>",
                           "(worst quality, low quality:1.3), (bad-hands-5:0.8)", _params())
    assert info.to_text() == A1111_EXAMPLE


def test_infotext_read_back_is_identical():
    info = Infotext.from_text(A1111_EXAMPLE)
    assert info.prompt == "masterpiece, best quality, (1girl:1.2), <lora:add_detail:0.5>"
    assert info.negative_prompt == "(worst quality, low quality:1.3), (bad-hands-5:0.8)"
    assert info.params["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert parse_hashes(info.params["TI hashes"]) == {"bad-hands-5": "c74b4e810b03"}
    assert info.to_text() == A1111_EXAMPLE
    fields = info.generation_fields()
    assert (fields["Size-1"], fields["Size-2"], fields["Clip skip"], fields["RNG"]) == ("512", "768", "2", "GPU")


@pytest.mark.parametrize("prompt,negative,params", [
    ("multi\nline prompt", "multi\nline negative", {"Steps": 30, "Sampler": "Euler a", "Seed": 7}),
    ("no negative", "", {"Steps": 5, "Sampler": "Euler", "CFG scale": 7.5}),
    ("quoted, values", "", {"Steps": 5, "Sampler": "DDIM", "Model": 'odd: name, "quoted"', "Hires prompt": "a\nb"}),
    ("unicode 猫 prompt", "ネガ", {"Steps": 1, "Sampler": "Euler", "Seed": -1, "Model": "モデル"}),
])
def test_write_then_read_round_trips(prompt, negative, params):
    info = Infotext.create(prompt, negative, params)
    again = Infotext.from_text(info.to_text())
    assert again == info
    assert again.to_text() == info.to_text()


def test_a_last_line_with_fewer_than_three_parameters_is_prompt_text():
    info = Infotext.from_text("a cat\nSteps: 20, Seed: 3")
    assert info.prompt == "a cat\nSteps: 20, Seed: 3" and info.params == {}


def test_values_with_commas_colons_or_newlines_are_json_quoted():
    text = Infotext.create("p", "", {"Steps": 1, "Sampler": "Euler", "Model": "a,b", "VAE": "x:y"}).to_text()
    assert text == 'p\nSteps: 1, Sampler: Euler, Model: "a,b", VAE: "x:y"'


def test_png_parameters_chunk_round_trips(tmp_path: Path):
    path = save_png_with_parameters(Image.new("RGB", (8, 8), "red"), tmp_path / "out.png", A1111_EXAMPLE)
    assert read_png_parameters(path) == A1111_EXAMPLE
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left behind
    metadata = read_image_metadata(path)
    assert metadata.source == "a1111"
    assert (metadata.steps, metadata.sampler, metadata.cfg_scale, metadata.seed) == (20, "DPM++ 2M", 7.0, 1234)
    assert (metadata.width, metadata.height, metadata.model_hash) == (512, 768, "6ce0161689")
    assert metadata.negative_prompt.startswith("(worst quality")


def test_non_latin1_parameters_are_stored_and_read(tmp_path: Path):
    text = "猫\nSteps: 1, Sampler: Euler, Seed: 2"
    path = save_png_with_parameters(Image.new("RGB", (8, 8)), tmp_path / "u.png", text)
    assert read_png_parameters(path) == text


def _png_with(path: Path, chunks: dict[str, str], size=(64, 48)) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", size).save(path, pnginfo=info)
    return path


def test_comfyui_graph_is_read(tmp_path: Path):
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 99, "steps": 25, "cfg": 6.5, "sampler_name": "euler",
                                                    "scheduler": "normal", "model": ["10", 0], "positive": ["6", 0],
                                                    "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "x"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 640, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    }
    path = _png_with(tmp_path / "comfy.png", {"prompt": json.dumps(graph), "workflow": json.dumps({"nodes": []})})
    metadata = read_image_metadata(path)
    assert metadata.source == "comfyui"
    assert (metadata.prompt, metadata.negative_prompt, metadata.seed, metadata.steps) == ("a castle", "blurry", 99, 25)
    assert (metadata.cfg_scale, metadata.sampler, metadata.model) == (6.5, "euler", "sd15.safetensors")
    assert (metadata.width, metadata.height) == (512, 640)
    assert metadata.parameters["workflow"] == {"nodes": []}


def test_novelai_metadata_is_read(tmp_path: Path):
    comment = {"prompt": "1girl, solo", "uc": "lowres", "steps": 28, "scale": 11, "seed": 3846372, "width": 512,
               "height": 768, "sampler": "k_euler_ancestral", "strength": 0.7, "noise": 0.2}
    path = _png_with(tmp_path / "nai.png", {"Title": "AI generated image", "Description": "1girl, solo",
                                            "Software": "NovelAI", "Source": "Stable Diffusion 1D44365E",
                                            "Comment": json.dumps(comment)})
    metadata = read_image_metadata(path)
    assert metadata.source == "novelai"
    assert (metadata.prompt, metadata.negative_prompt, metadata.steps, metadata.cfg_scale) == ("1girl, solo", "lowres", 28, 11.0)
    assert (metadata.seed, metadata.sampler, metadata.model) == (3846372, "k_euler_ancestral", "Stable Diffusion 1D44365E")


def test_jpeg_user_comment_is_read(tmp_path: Path):
    image = Image.new("RGB", (16, 16))
    exif = image.getexif()
    text = "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 16x16"
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    image.save(tmp_path / "a.jpg", exif=exif)
    metadata = read_image_metadata(tmp_path / "a.jpg")
    assert metadata.source == "a1111" and metadata.prompt == "a cat" and metadata.seed == 5


def test_images_without_metadata_and_non_images(tmp_path: Path):
    plain = _png_with(tmp_path / "plain.png", {})
    assert read_image_metadata(plain).source == "none"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(BadInputError, match="not a readable image"):
        read_image_metadata(bad)
    with pytest.raises(BadInputError, match="does not exist"):
        read_image_metadata(tmp_path / "missing.png")


@pytest.mark.parametrize("version,prompt,sampler,expected", [
    ("v1.5.1", "a [b:c:5]", "DDIM", {"Old prompt editing timelines", "Pad conds v0", "Downcast alphas_cumprod"}),
    ("v1.5.1", "a b", "Euler", {"Downcast alphas_cumprod"}),
    ("v1.7.0-224-gabc1234", "a [b:3]", "Euler", {"Downcast alphas_cumprod"}),
    ("v1.7.0-225-gabc1234", "a [b:3]", "Euler", set()),
    ("v1.10.1", "a [b:3]", "DDIM", set()),
    ("not a version", "a [b:3]", "DDIM", set()),
])
def test_backcompat_switches_follow_the_version(version, prompt, sampler, expected):
    from sdhub.generate.infotext import backcompat_fields

    text = Infotext.create(prompt, "", {"Steps": 20, "Sampler": sampler, "Seed": 1, "Version": version}).to_text()
    fields = Infotext.from_text(text).generation_fields()
    added = set(backcompat_fields(fields)) - set(fields)
    assert added == expected
