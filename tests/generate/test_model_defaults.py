"""Per-model defaults (``sdhub set``) used by generate, smoke and the Asuka test; verdicts that name their fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from sdhub.catalog import Catalog
from sdhub.generate.infotext import read_png_parameters
from sdhub.generate.model_defaults import set_model_defaults
from sdhub.generate.reference_tests import run_asuka, run_smoke

SMALL = {"steps": 2, "width": 64, "height": 64}


def _vae_variant(source: Path, target: Path, change) -> Path:
    from safetensors.torch import load_file, save_file

    state = load_file(str(source))
    change(state)
    save_file(state, str(target))
    return target


@pytest.fixture()
def library(tmp_home, tiny_models, tmp_path_factory):
    """A home with the tiny checkpoint, its VAE, a VAE that overflows fp16 and one that draws grey, catalogued."""
    vaes = tmp_home.folder("vae")
    vaes.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_models["sd1"], tmp_home.folder("checkpoint") / "tiny-sd1.safetensors")
    shutil.copy(tiny_models["vae"], vaes / "tiny-vae.safetensors")

    def overflow(state):
        for key in ("decoder.conv_in.weight", "decoder.conv_in.bias"):
            state[key] = state[key] * 2e5  # fp16 holds the weights, not the sums: NaN in half precision

    def grey(state):
        for key in ("decoder.conv_out.weight", "decoder.conv_out.bias"):
            state[key] = state[key][:1].repeat(3, *([1] * (state[key].dim() - 1)))  # R = G = B

    _vae_variant(tiny_models["vae"], vaes / "overflow-vae.safetensors", overflow)
    _vae_variant(tiny_models["vae"], vaes / "grey-vae.safetensors", grey)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    return tmp_home


def _label(home, name: str, base: str) -> None:
    """Give a VAE the base model Civitai would (its tensors cannot tell SD1's VAE from SDXL's)."""
    with Catalog(home) as catalog:
        asset = catalog.find(name)
        catalog.set_remote(asset.sha256, "civitai", {
            "id": 100 + asset.id, "modelId": 200 + asset.id, "name": "v1", "baseModel": base,
            "model": {"name": name, "type": "VAE"},
            "files": [{"name": asset.file_name, "primary": True, "hashes": {"SHA256": asset.sha256.upper()}}]})


def _autov2(home, name: str) -> str:
    with Catalog(home) as catalog:
        return catalog.find(name).autov2


def test_defaults_are_used_by_generate_and_asuka_and_an_option_overrides_them(library, run_cli):
    set_model_defaults(library, "tiny-sd1", vae="tiny-vae", clip_skip=2, cfg_scale=5, sampler="Euler",
                       negative="lowres")
    vae_hash = _autov2(library, "tiny-vae")
    result = run_cli("--home", library.root, "generate", "a cat", "--model", "tiny-sd1", "--steps", "2",
                     "--width", "64", "--height", "64", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    text = read_png_parameters(Path(result.stdout.strip()))
    assert "Clip skip: 2" in text and f"VAE hash: {vae_hash}" in text and "CFG scale: 5," in text
    assert "Sampler: Euler," in text and "Negative prompt: lowres" in text
    assert "the model's defaults (sdhub set)" in result.stderr

    given = run_cli("--home", library.root, "generate", "a cat", "--model", "tiny-sd1", "--steps", "2",
                    "--width", "64", "--height", "64", "--seed", "3", "--clip-skip", "1", "--cfg", "7",
                    "--vae", "overflow-vae", "--vae-dtype", "fp32")
    assert given.exit_code == 0, given.stderr
    text = read_png_parameters(Path(given.stdout.strip()))
    assert "Clip skip" not in text and "CFG scale: 7," in text
    assert f"VAE hash: {_autov2(library, 'overflow-vae')}" in text and "Sampler: Euler," in text

    asuka = run_asuka(library, "tiny-sd1", overrides=SMALL, record=False, force=True)
    text = Image.open(asuka.image_path).info["parameters"]
    assert "Clip skip: 2" in text and f"VAE hash: {vae_hash}" in text
    assert "CFG scale: 12," in text and "lowres, bad anatomy" in text  # the test's own settings stay


def test_a_black_verdict_names_the_fp32_vae_and_retry_fixes_passes(library):
    set_model_defaults(library, "tiny-sd1", vae="overflow-vae")
    [black] = run_smoke(library, ["tiny-sd1"], steps=2, size=64, vae_dtype="fp16", vae_fallback=False)
    assert black.verdict == "black" and "--vae-dtype fp32" in black.reasons[0]
    assert [fix["option"] for fix in black.fixes] == ["--vae-dtype fp32"]
    [fixed] = run_smoke(library, ["tiny-sd1"], steps=2, size=64, vae_dtype="fp16", vae_fallback=False,
                        retry_fixes=True)
    assert fixed.verdict == "pass" and fixed.retried_with == "--vae-dtype fp32"
    assert fixed.first_try["verdict"] == "black" and fixed.image_path != fixed.first_try["image_path"]


def test_a_washed_out_verdict_names_a_library_vae_of_the_models_family(library):
    _label(library, "tiny-vae", "SD 1.5")
    _label(library, "overflow-vae", "SDXL 1.0")  # the wrong family: never offered for an SD1 model
    set_model_defaults(library, "tiny-sd1", vae="grey-vae")
    [grey] = run_smoke(library, ["tiny-sd1"], steps=2, size=64)
    assert grey.verdict == "washed-out" and "try --vae tiny-vae" in grey.reasons[0]
    assert grey.fixes[0]["option"] == "--vae tiny-vae" and "sd1" in grey.fixes[0]["why"]
    [fixed] = run_smoke(library, ["tiny-sd1"], steps=2, size=64, retry_fixes=True)
    assert fixed.verdict == "pass" and fixed.retried_with == "--vae tiny-vae"
    assert f"VAE hash: {_autov2(library, 'tiny-vae')}" in Image.open(fixed.image_path).info["parameters"]
