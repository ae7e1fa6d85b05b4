"""Diffusers pipeline folders (what `sdhub get hf:org/repo` places) load and draw like the single file they hold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sdhub.config import init_home
from sdhub.errors import BadInputError
from sdhub.generate.generate import generate, rerun_png
from sdhub.generate.loading import load_checkpoint
from sdhub.generate.pipeline import GenerationParams, sample_images
from sdhub.testing import factory
from sdhub.testing.images import assert_same_picture

PIPELINES = {
    "sd1": ("StableDiffusionPipeline", lambda path: factory.sd1_checkpoint(path)),
    "sd1-inpainting": ("StableDiffusionInpaintPipeline", lambda path: factory.sd1_checkpoint(path, inpainting=True)),
    "sd2-v": ("StableDiffusionPipeline", lambda path: factory.sd2_checkpoint(path, v_prediction=True)),
    "sdxl": ("StableDiffusionXLPipeline", lambda path: factory.sdxl_checkpoint(path)),
    "sdxl-refiner": ("StableDiffusionXLImg2ImgPipeline", lambda path: factory.sdxl_checkpoint(path, refiner=True)),
}
FINAL_NORM = "cond_stage_model.transformer.text_model.final_layer_norm.bias"


def checkpoint_and_folder(tmp_path: Path, arch: str, **save_options) -> tuple[Path, Path]:
    """A factory checkpoint, and the pipeline folder diffusers itself saves from it (as Hub repos are made)."""
    import diffusers
    from safetensors.torch import load_file, save_file

    class_name, make = PIPELINES[arch]
    checkpoint = make(tmp_path / f"{arch}.safetensors")
    if arch.startswith("sd1"):  # a learnt final-norm bias, as real CLIPs have (see tests/generate/conftest.py)
        state = load_file(str(checkpoint))
        state[FINAL_NORM] = torch.randn(state[FINAL_NORM].shape, generator=torch.Generator().manual_seed(3)) * 0.5
        save_file(state, str(checkpoint))
    config = factory.diffusers_config_dir(tmp_path / f"{arch}-config", arch)
    pipeline = getattr(diffusers, class_name).from_single_file(str(checkpoint), config=str(config),
                                                               local_files_only=True)
    folder = tmp_path / f"{arch}-pipeline"
    pipeline.save_pretrained(folder, **save_options)
    return checkpoint, folder


def assert_same_weights(folder_model, file_model) -> None:
    pairs = [(folder_model.unet, file_model.unet), (folder_model.vae, file_model.vae)]
    pairs += [(folder_model.text_encoders[name], file_model.text_encoders[name]) for name in file_model.text_encoders]
    for ours, theirs in pairs:
        their_state = theirs.state_dict()
        our_state = ours.state_dict()
        assert set(our_state) == set(their_state)
        for name, tensor in our_state.items():
            assert torch.equal(tensor, their_state[name]), name


@pytest.mark.parametrize("arch", list(PIPELINES))
def test_a_pipeline_folder_loads_the_weights_of_its_single_file(tmp_path: Path, arch: str) -> None:
    checkpoint, folder = checkpoint_and_folder(tmp_path, arch)
    from_folder = load_checkpoint(folder, device="cpu")
    from_file = load_checkpoint(checkpoint, device="cpu")
    assert (from_folder.arch, from_folder.variant, from_folder.prediction_type) == (
        from_file.arch, from_file.variant, from_file.prediction_type)
    assert from_folder.vae_source == "baked-in" and from_folder.path == folder
    assert set(from_folder.text_encoders) == set(from_file.text_encoders)
    assert torch.allclose(from_folder.alphas_cumprod, from_file.alphas_cumprod)
    assert_same_weights(from_folder, from_file)


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_a_pipeline_folder_draws_the_image_its_single_file_draws(tmp_path: Path, arch: str) -> None:
    checkpoint, folder = checkpoint_and_folder(tmp_path, arch)
    params = GenerationParams("a (red:1.3) cat", "blurry", steps=3, sampler="Euler a", seed=7, width=64, height=64)
    from_folder = np.asarray(sample_images(load_checkpoint(folder, device="cpu"), params).images[0])
    from_file = np.asarray(sample_images(load_checkpoint(checkpoint, device="cpu"), params).images[0])
    assert from_folder.std() > 1
    assert_same_picture(from_folder, from_file)  # other loads may round the last float bit otherwise


def test_sharded_and_pickled_folders_load_through_the_safe_reader(tmp_path: Path) -> None:
    checkpoint, sharded = checkpoint_and_folder(tmp_path, "sd1", max_shard_size="200KB")
    assert list((sharded / "unet").glob("*.safetensors.index.json"))
    pickled = tmp_path / "pickled"
    shutil.copytree(sharded, pickled)
    for weights in pickled.rglob("*.safetensors"):  # the same weights as torch .bin files, as old repos have
        from safetensors.torch import load_file

        torch.save(load_file(str(weights)), weights.with_suffix(".bin"))
        weights.unlink()
    for index in pickled.rglob("*.safetensors.index.json"):
        data = json.loads(index.read_text())
        data["weight_map"] = {k: v.replace(".safetensors", ".bin") for k, v in data["weight_map"].items()}
        index.with_name(index.name.replace(".safetensors", ".bin")).write_text(json.dumps(data))
        index.unlink()
    from_file = load_checkpoint(checkpoint, device="cpu")
    assert_same_weights(load_checkpoint(sharded, device="cpu"), from_file)
    assert_same_weights(load_checkpoint(pickled, device="cpu"), from_file)


def test_a_variant_only_folder_loads_its_fp16_weights_not_the_training_ones(tmp_path: Path) -> None:
    """Hub repos often hold only ``*.fp16.safetensors`` (sharded or not) beside ``*.non_ema.*`` training weights."""
    from safetensors.torch import load_file, save_file

    checkpoint, folder = checkpoint_and_folder(tmp_path, "sd1", variant="fp16", max_shard_size="200KB")
    assert list((folder / "unet").glob("diffusion_pytorch_model.fp16-00001-of-*.safetensors"))
    assert not list(folder.rglob("diffusion_pytorch_model.safetensors"))
    for component in ("unet", "vae"):  # training weights that must not be picked
        decoy = next((folder / component).glob("*.fp16*.safetensors"))
        save_file({k: torch.zeros_like(v) for k, v in load_file(str(decoy)).items()},
                  str(folder / component / "diffusion_pytorch_model.non_ema.safetensors"))
    assert_same_weights(load_checkpoint(folder, device="cpu"), load_checkpoint(checkpoint, device="cpu"))


def test_a_hugging_face_cache_snapshot_with_linked_shards_loads(tmp_path: Path) -> None:
    """In the Hub cache every file of a snapshot is a link into ``blobs/``; an index must not send reads elsewhere."""
    checkpoint, folder = checkpoint_and_folder(tmp_path, "sd1", max_shard_size="200KB")
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for number, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        blob = blobs / f"{number:04d}"
        path.rename(blob)
        path.symlink_to(blob)
    assert_same_weights(load_checkpoint(folder, device="cpu"), load_checkpoint(checkpoint, device="cpu"))
    index = next((folder / "unet").glob("*.index.json"))
    data = json.loads(index.read_text())
    data["weight_map"][next(iter(data["weight_map"]))] = "../vae/diffusion_pytorch_model.safetensors"
    index.unlink()
    index.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match="names a shard outside its folder"):
        load_checkpoint(folder)


def test_an_incomplete_folder_is_a_one_line_error(tmp_path: Path) -> None:
    _, folder = checkpoint_and_folder(tmp_path, "sd1")
    shutil.rmtree(folder / "vae")
    with pytest.raises(BadInputError, match=r"vae/config.json is missing; the pipeline folder is incomplete"):
        load_checkpoint(folder)
    with pytest.raises(BadInputError, match="not a diffusers pipeline"):
        load_checkpoint(tmp_path / "sd1-config" / "unet")
    (folder / "vae").mkdir()
    shutil.copy(tmp_path / "sd1-config" / "vae" / "config.json", folder / "vae" / "config.json")
    with pytest.raises(BadInputError, match=r"vae/ holds no weights"):
        load_checkpoint(folder)


def test_generate_takes_a_pipeline_folder_by_path_or_catalog_name(tmp_path: Path) -> None:
    from sdhub.catalog import Catalog

    _, made = checkpoint_and_folder(tmp_path, "sd1")
    home = init_home(tmp_path / "webui", "a1111")
    folder = shutil.copytree(made, home.folder("checkpoint") / "tiny-pipeline")
    params = GenerationParams("a cat", "", steps=2, sampler="Euler", seed=3, width=64, height=64)
    by_path = generate(home, str(folder), params, out_dir=tmp_path / "by-path")
    assert by_path.model.name == "tiny-pipeline" and by_path.model.sha256 is None
    assert "Model: tiny-pipeline" in by_path.infotexts[0] and "Model hash" not in by_path.infotexts[0]
    with Catalog(home) as catalog:
        catalog.scan()
        asset = catalog.find("tiny-pipeline")
    by_name = generate(home, "tiny-pipeline", params, out_dir=tmp_path / "by-name")
    assert by_name.model.path == folder and by_name.model.sha256 == asset.sha256
    infotext = by_name.infotexts[0]
    assert "Model: tiny-pipeline" in infotext and f"Model hash: {asset.sha256[:10]}" in infotext
    assert np.array_equal(np.asarray(_image(by_path.images[0])), np.asarray(_image(by_name.images[0])))
    with pytest.raises(BadInputError, match="is a folder but not a diffusers pipeline"):
        generate(home, str(tmp_path / "by-path"), params)
    again = rerun_png(home, by_name.images[0], out_dir=tmp_path / "again")  # the folder found by its hash
    assert again.model.path == folder
    assert np.array_equal(np.asarray(_image(again.images[0])), np.asarray(_image(by_name.images[0])))


def _image(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")
