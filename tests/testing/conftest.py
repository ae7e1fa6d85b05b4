"""Factory files shared by the tests of sdhub.testing (written once per session; tests never modify them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Everything here loads from local folders; refuse the Hub outright so a slip shows up as an error.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sdhub.testing import factory  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP spinning makes them 10x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def sd1_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.diffusers_config_dir(tmp_path_factory.mktemp("config") / "sd1", arch="sd1")


@pytest.fixture(scope="session")
def sd1_safetensors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.sd1_checkpoint(tmp_path_factory.mktemp("models") / "tiny-sd1.safetensors")


@pytest.fixture
def load_sd1(sd1_config_dir: Path):
    """Load a single-file SD1 checkpoint with diffusers' own loader, offline, from the factory's config folder."""
    from diffusers import StableDiffusionPipeline

    def load(path: Path):
        pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(sd1_config_dir), local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return load


@pytest.fixture
def generate():
    """Draw a 64x64, 3-step image (seed 0) and return it as a float array (H, W, 3) in [0, 1]."""
    import torch

    def draw(pipe, prompt: str = "a photo of a cat", **kwargs):
        options = {"num_inference_steps": 3, "height": 64, "width": 64, "output_type": "np",
                   "generator": torch.Generator().manual_seed(0), **kwargs}
        return pipe(prompt, **options).images[0]

    return draw
