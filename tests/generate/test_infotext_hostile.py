"""Infotext as Civitai writes it (bare JSON values) and as a hostile file may carry it: read whole, in time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdhub.errors import BadInputError
from sdhub.generate.infotext import Infotext
from sdhub.generate.pnginfo import read_image_metadata

CIVITAI_LINE = (
    'Steps: 30, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 6ce0161689, '
    'Hashes: {"model": "6ce0161689", "lora:add_detail": "7c6bad76eb", "embed:easynegative": "c74b4e810b"}, '
    'Civitai resources: [{"type":"checkpoint","modelVersionId":128713,"modelName":"DreamShaper, v8"},'
    '{"type":"lora","weight":0.8,"modelVersionId":62833}], Version: v1.10.1'
)


def test_bare_json_values_are_read_whole_and_written_back_as_a1111_quotes_them() -> None:
    parsed = Infotext.from_text(f"a castle\n{CIVITAI_LINE}")
    assert json.loads(parsed.params["Hashes"])["lora:add_detail"] == "7c6bad76eb"
    resources = json.loads(parsed.params["Civitai resources"])
    assert [r["modelVersionId"] for r in resources] == [128713, 62833]
    assert resources[0]["modelName"] == "DreamShaper, v8"
    assert list(parsed.params)[-1] == "Version" and parsed.params["Version"] == "v1.10.1"
    again = Infotext.from_text(parsed.to_text())
    assert again.params == parsed.params
    assert 'Hashes: "{\\"model\\"' in parsed.to_text()


def test_a_json_looking_prompt_word_is_not_taken_for_a_field() -> None:
    parsed = Infotext.from_text('Hashes: {"a": 1} in a prompt\nSteps: 20, Sampler: Euler, Seed: 3')
    assert parsed.prompt == 'Hashes: {"a": 1} in a prompt' and "Hashes" not in parsed.params


@pytest.mark.parametrize("line", ["a" * (250 << 10), "a" * (8 << 20), "a " * (4 << 20), "Hashes: [" * (1 << 18),
                                  "k: \"\\\"" * (1 << 18), " " * (8 << 20) + "b: 1"])
def test_megabytes_of_parameters_are_read_in_well_under_a_second_each(line: str) -> None:
    started = time.monotonic()
    parsed = Infotext.from_text(f"prompt\n{line}")
    assert time.monotonic() - started < 3
    assert parsed.prompt.startswith("prompt")


def _png(path: Path, **chunks: str) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value, zip=key.startswith("z_"))
    Image.new("RGB", (8, 8)).save(path, "PNG", pnginfo=info)
    return path


def test_a_compressed_chunk_past_pillows_limit_is_one_bad_input_error(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("parameters", "a" * (20 << 20), zip=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "bomb.png", "PNG", pnginfo=info)
    with pytest.raises(BadInputError, match="not a readable image"):
        read_image_metadata(tmp_path / "bomb.png")


def test_hostile_comfyui_graphs_read_without_error(tmp_path: Path) -> None:
    looping = {"1": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "seed": "inf", "steps": 1e999}},
               "2": {"class_type": "LoraLoader", "inputs": {"model": ["3", 0]}},
               "3": {"class_type": "LoraLoader", "inputs": {"model": ["2", 0]}},
               "4": {"class_type": "X", "inputs": ["not", "a", "dict"]}}
    metadata = read_image_metadata(_png(tmp_path / "loop.png", prompt=json.dumps(looping)))
    assert metadata.source == "comfyui" and metadata.model is None and metadata.seed is None
    deep = read_image_metadata(_png(tmp_path / "deep.png", prompt='{"a":' * 100_000 + "1" + "}" * 100_000))
    assert deep.source == "comfyui" and deep.parameters["prompt"] is None
