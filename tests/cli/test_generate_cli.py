"""`sdhub generate`, `sdhub smoke`, `sdhub test asuka` and `sdhub doctor` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sdhub.generate.infotext import read_png_parameters


@pytest.fixture(scope="module")
def tiny_sd1(tmp_path_factory) -> Path:
    """The factory's tiny SD1 with a learnt-looking CLIP final-norm bias (see tests/generate/conftest.py)."""
    from safetensors.torch import load_file, save_file

    from sdhub.testing import factory

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("cli-models")
    state = load_file(str(factory.sd1_checkpoint(folder / "factory.safetensors")))
    key = "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    state[key] = torch.randn(state[key].shape, generator=torch.Generator().manual_seed(3)) * 0.5
    save_file(state, str(folder / "tiny-sd1.safetensors"))
    return folder / "tiny-sd1.safetensors"


def test_generate_writes_pngs_and_prints_json(run_cli, tmp_home, tiny_sd1, tmp_path):
    out = tmp_path / "out"
    result = run_cli("--home", tmp_home.root, "generate", "a (cat:1.1)", "--model", tiny_sd1, "--steps", "2",
                     "--width", "64", "--height", "64", "--seed", "3", "--batch", "2", "--sampler", "Euler a",
                     "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["seeds"] == [3, 4] and data["params"]["seed"] == 3
    assert [Path(p).parent for p in data["images"]] == [out, out]
    assert all(Path(p).is_file() for p in data["images"])
    assert "Seed: 4" in read_png_parameters(Path(data["images"][1]))
    assert data["timings"]["seconds_per_step"] > 0


def test_generate_prints_image_paths_and_the_seed(run_cli, tmp_home, tiny_sd1):
    result = run_cli("--home", tmp_home.root, "generate", "a cat", "--model", tiny_sd1, "--steps", "2",
                     "--width", "64", "--height", "64")
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == tmp_home.outputs_dir and path.is_file()
    assert "seed " in result.stderr and "it/s" in result.stderr


def test_from_png_reruns_the_image(run_cli, tmp_home, tiny_sd1):
    from sdhub.catalog import Catalog

    model = tmp_home.folder("checkpoint") / "tiny-sd1.safetensors"
    shutil.copy(tiny_sd1, model)
    with Catalog(tmp_home) as catalog:
        catalog.add_file(model)
    first = run_cli("--home", tmp_home.root, "generate", "a dog", "--model", "tiny-sd1", "--steps", "2",
                    "--width", "64", "--height", "64", "--seed", "9", "--json")
    image = json.loads(first.stdout)["images"][0]
    again = run_cli("--home", tmp_home.root, "generate", "--from-png", image, "--json")
    assert again.exit_code == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["params"]["seed"] == 9 and data["model"]["name"] == "tiny-sd1"
    assert Path(data["images"][0]).read_bytes() == Path(image).read_bytes()


@pytest.mark.parametrize("args,code,message", [
    (["generate", "a cat", "--model", "no-such-model"], 1, "no-such-model"),
    (["generate", "a cat"], 2, "--model"),
    (["generate", "a cat", "--model", "{model}", "--width", "70"], 2, "multiples of 8"),
    (["generate", "a cat", "--model", "{model}", "--sampler", "Fancy"], 2, "unknown sampler"),
    (["generate", "a cat", "--model", "{model}", "--rng", "dice"], 2, "unknown RNG"),
    (["test", "asuka", "--model", "no-such-model"], 1, "no-such-model"),
])
def test_bad_input_is_one_line_and_an_exit_code(run_cli, tmp_home, tiny_sd1, args, code, message):
    args = [str(tiny_sd1) if arg == "{model}" else arg for arg in args]
    result = run_cli("--home", tmp_home.root, *args)
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_smoke_judges_and_records(run_cli, tmp_home, tiny_sd1):
    result = run_cli("--home", tmp_home.root, "smoke", tiny_sd1, "--steps", "2", "--json")
    data = json.loads(result.stdout)
    assert len(data) == 1 and data[0]["verdict"] in ("pass", "washed-out", "uniform")
    assert result.exit_code == (0 if data[0]["verdict"] == "pass" else 1)
    assert data[0]["recorded"] and Path(data[0]["image_path"]).is_file()


def test_smoke_needs_models_or_all(run_cli, tmp_home):
    result = run_cli("--home", tmp_home.root, "test", "smoke")
    assert result.exit_code == 2 and "--all" in result.stderr


def test_doctor_finds_the_tokenizers_offline_in_open_clips_vocabulary(run_cli, tmp_home):
    result = run_cli("--home", tmp_home.root, "doctor", "--json")
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    for name in ("CLIP tokenizer", "OpenCLIP bigG tokenizer (SDXL)"):  # no Hugging Face cache in the tests
        assert checks[name]["status"] == "ok" and "open_clip_torch" in checks[name]["detail"], checks[name]
    assert checks["catalog"]["status"] == "ok" and checks["config sdxl"]["status"] == "ok"
    assert checks["diffusers"]["status"] == "ok"


def test_doctor_fetches_the_tokenizers_then_finds_them(run_cli, tmp_home, hub, tmp_path):
    from sdhub.testing import factory

    folder = factory.tokenizer_dir(tmp_path / "tokenizer")
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    hub.add_repo("openai/clip-vit-large-patch14", {**files, "pytorch_model.bin": b"weights we must not fetch"})
    hub.add_repo("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", files)
    result = run_cli("--home", tmp_home.root, "doctor", "--fetch-tokenizers", "--json")
    data = json.loads(result.stdout)
    assert data["fetched"] == ["openai/clip-vit-large-patch14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"]
    checks = {check["name"]: check for check in data["checks"]}
    assert checks["CLIP tokenizer"]["status"] == "ok"
    assert checks["OpenCLIP bigG tokenizer (SDXL)"]["status"] == "ok"
    assert not any("pytorch_model.bin" in request.path for request in hub.log)
