"""Tiny FLUX.1, SD3, UNet-alone, text-encoder and 16-channel VAE files in a user's library: scan, inspect, hash."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import sdhub
from sdhub.testing import families

FP8 = torch.float8_e4m3fn
#: file name -> (writer, kind, architecture, family), as users download them
FILES = {
    "flux1-dev-fp8.safetensors": (lambda p: families.write_flux_checkpoint(p, "dev", dtype=FP8),
                                  "checkpoint", "flux1-dev", "flux1"),
    "sd3.5_medium_incl_clips.safetensors": (lambda p: families.write_sd3_checkpoint(p, "sd3.5-medium", t5=False),
                                            "checkpoint", "sd3.5-medium", "sd3"),
    "flux1-schnell.safetensors": (lambda p: families.write_flux(p, "schnell"), "diffusion-model", "flux1-schnell",
                                  "flux1"),
    "flux1-fill-dev.safetensors": (lambda p: families.write_flux(p, "fill", layout="diffusers"),
                                   "diffusion-model", "flux1-fill", "flux1"),
    "sd3.5_large.safetensors": (lambda p: families.write_sd3(p, "sd3.5-large"), "diffusion-model", "sd3.5-large",
                                "sd3"),
    "sdxl_unet.safetensors": (lambda p: families.write_unet(p, "sdxl", layout="diffusers"),
                              "diffusion-model", "sdxl", "sdxl"),
    "t5xxl_fp8_e4m3fn.safetensors": (lambda p: families.write_text_encoder(p, "t5xxl", dtype=FP8),
                                     "text-encoder", None, None),
    "clip_g.safetensors": (lambda p: families.write_text_encoder(p, "clip-g"), "text-encoder", None, None),
    "ae.safetensors": (lambda p: families.write_vae16(p), "vae", None, None),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("families")
    return {name: writer(folder / name) for name, (writer, *_) in FILES.items()}


@pytest.mark.parametrize("layout", ["sdhub", "a1111", "comfyui", "stabilitymatrix"])
def test_each_family_is_catalogued_with_its_kind_and_family_in_every_layout(made: dict[str, Path], tmp_path: Path,
                                                                            layout: str) -> None:
    home = sdhub.init_home(tmp_path / layout, layout)
    for name, (_, kind, _, _) in FILES.items():
        (home.folder(kind) / name).write_bytes(made[name].read_bytes())
    report = sdhub.scan(home)
    assert report.files_added == len(FILES) and not report.errors
    with sdhub.Catalog(home) as catalog:
        found = {asset.name: (asset.kind, asset.architecture, asset.base_model) for asset in catalog.list_assets()}
    assert found == {Path(name).stem: tuple(expected) for name, (_, *expected) in FILES.items()}


def test_an_fp8_flux_checkpoint_is_inspected_and_hashed_by_its_parts(made: dict[str, Path]) -> None:
    parts = {"unet", "vae", "text_encoder", "text_encoder_3"}
    inspected = sdhub.inspect(made["flux1-dev-fp8.safetensors"])
    assert inspected.kind == "checkpoint" and inspected.dtype == "F8_E4M3"
    assert not inspected.problems  # every part found, nothing unrecognised
    assert {c.name for c in inspected.components} == parts
    assert set(sdhub.hash(made["flux1-dev-fp8.safetensors"]).components) == parts


@pytest.mark.parametrize("name", ["t5xxl_fp8_e4m3fn.safetensors", "clip_g.safetensors", "sd3.5_large.safetensors",
                                  "ae.safetensors"])
def test_parts_alone_inspect_without_problems(made: dict[str, Path], name: str) -> None:
    inspected = sdhub.inspect(made[name])
    assert inspected.kind == FILES[name][1] and not inspected.problems


def test_flux_and_sd3_pipeline_folders_are_catalogued_and_inspected(tmp_path: Path) -> None:
    home = sdhub.init_home(tmp_path / "home", "comfyui")
    flux = families.write_transformer_pipeline(home.folder("checkpoint") / "FLUX.1-schnell", "flux1-schnell")
    families.write_transformer_pipeline(home.folder("checkpoint") / "stable-diffusion-3.5-large", "sd3.5-large")
    report = sdhub.scan(home)
    assert report.files_added == 2 and not report.errors
    with sdhub.Catalog(home) as catalog:
        found = {a.name: (a.kind, a.architecture, a.base_model, a.format) for a in catalog.list_assets()}
    assert found == {"FLUX.1-schnell": ("checkpoint", "flux1-schnell", "flux1", "diffusers"),
                     "stable-diffusion-3.5-large": ("checkpoint", "sd3.5-large", "sd3", "diffusers")}
    inspected = sdhub.inspect(flux)
    # FLUX.1 keeps T5 in text_encoder_2: reported as the checkpoint's T5 part, and nothing is missing.
    assert [c.name for c in inspected.components] == ["unet", "vae", "text_encoder", "text_encoder_3"]
    assert not inspected.problems
    with pytest.raises(sdhub.SdhubError, match="not a Stable Diffusion pipeline sdhub can generate with"):
        sdhub.generate(str(flux), "a cat")


def test_an_e5m2_file_is_read_inspected_hashed_and_catalogued(tmp_path: Path) -> None:
    import hashlib

    from safetensors.torch import load_file, save_file

    home = sdhub.init_home(tmp_path / "home", "comfyui")
    path = families.write_flux(home.folder("diffusion-model") / "flux-e5m2.safetensors", "dev")
    state = {name: (t.to(torch.float8_e5m2) if t.dim() >= 2 else t) for name, t in load_file(str(path)).items()}
    save_file(state, str(path))
    inspected = sdhub.inspect(path)
    assert (inspected.kind, inspected.base_model, inspected.dtype) == ("diffusion-model", "flux1", "F8_E5M2")
    assert inspected.values_checked and not inspected.problems
    assert sdhub.hash(path).file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sdhub.scan(home).files_added == 1
    with sdhub.Catalog(home) as catalog:
        [asset] = catalog.list_assets()
    assert (asset.kind, asset.base_model, asset.dtype) == ("diffusion-model", "flux1", "F8_E5M2")
