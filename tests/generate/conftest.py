"""Fixtures for the generation tests: tiny factory checkpoints written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # The test machines are small and shared: torch's default thread pool makes tiny models spin-wait.
    torch.set_num_threads(1)


FINAL_NORM_BIAS = "cond_stage_model.transformer.text_model.final_layer_norm.bias"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SD1 checkpoints (safetensors and zip .ckpt with the same weights) and a tiny VAE.

    The factory's CLIP keeps a freshly initialised final layer norm (weight 1, bias 0), so every token's
    hidden state has mean 0 and A1111's emphasis renormalisation (divide by the mean) turns some prompts
    into NaN. Real CLIP weights have a learnt bias; the fixture gives the tiny model one too.
    """
    from safetensors.torch import load_file, save_file

    from sdhub.testing import factory

    folder = tmp_path_factory.mktemp("tiny-models")
    source = factory.sd1_checkpoint(folder / "factory-sd1.safetensors")
    state = load_file(str(source))
    generator = torch.Generator().manual_seed(3)
    state[FINAL_NORM_BIAS] = torch.randn(state[FINAL_NORM_BIAS].shape, generator=generator) * 0.5
    safetensors_path = folder / "tiny-sd1.safetensors"
    save_file(state, str(safetensors_path))
    ckpt_path = folder / "tiny-sd1.ckpt"
    torch.save({"state_dict": state, "global_step": 500}, ckpt_path)
    return {
        "sd1": safetensors_path,
        "sd1_ckpt": ckpt_path,
        "vae": factory.vae(folder / "tiny-vae.safetensors", seed=5),
    }


@pytest.fixture
def home_with_model(tmp_home, tiny_models):
    """A home whose catalog holds the tiny SD1 checkpoint as models/tiny-sd1.safetensors."""
    import shutil

    from sdhub.catalog import Catalog

    target = tmp_home.folder("checkpoint") / "tiny-sd1.safetensors"
    shutil.copy(tiny_models["sd1"], target)
    with Catalog(tmp_home) as catalog:
        catalog.add_file(target)
    return tmp_home
