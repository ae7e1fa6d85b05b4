"""Generation and reference tests stop when their progress is cancelled: between sampler steps, inside the
UNet and VAE (a full-size step or decode takes seconds on a CPU), and say what they left."""

from __future__ import annotations

import shutil

import pytest
import torch

from sdhub.catalog import Catalog
from sdhub.errors import Interrupted
from sdhub.generate.generate import generate
from sdhub.generate.pipeline import GenerationParams, stops_inside
from sdhub.generate.reference_tests import run_smoke
from sdhub.progress import RecordingProgress
from sdhub.testing.stopping import CancelWhen

PARAMS = GenerationParams(prompt="a cat", steps=4, sampler="Euler a", seed=7, width=64, height=64)


def after_steps(count: int):
    return lambda task: task.description == "Sampling" and task.completed >= count


def pngs(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.png")) if folder.exists() else []


def test_a_generation_cancelled_between_steps_writes_no_image(tmp_home, tiny_models) -> None:
    progress = CancelWhen(after_steps(1))
    with pytest.raises(Interrupted) as stopped:
        generate(tmp_home, str(tiny_models["sd1"]), PARAMS, progress)
    assert str(stopped.value) == "cancelled; no image written"
    [sampling] = [t for t in progress.tasks if t.description == "Sampling"]
    assert sampling.completed == 1  # stopped at the next step, not at the end
    assert pngs(tmp_home.outputs_dir) == []


def test_a_cancel_stops_the_vae_decode_between_its_blocks() -> None:
    from diffusers import AutoencoderKL

    from sdhub.testing.tiny_configs import vae_config

    vae = AutoencoderKL(**vae_config("sd1")).eval()
    latents = torch.zeros(1, 4, 8, 8)
    blocks_run = []
    first_block = next(m for m in vae.decoder.modules() if type(m).__name__ == "ResnetBlock2D")
    first_block.register_forward_hook(lambda *_: blocks_run.append(1))
    progress = RecordingProgress()
    with torch.inference_mode(), stops_inside(progress, vae):
        vae.decode(latents)  # runs while nobody asked to stop
        progress.cancel()
        with pytest.raises(Interrupted):
            vae.decode(latents)
    assert len(blocks_run) == 1  # the second decode stopped before its first block
    with torch.inference_mode():
        vae.decode(latents)  # the checks go with the block that added them


def test_a_cancelled_smoke_test_records_no_verdict(tmp_home, tiny_models) -> None:
    model = tmp_home.folder("checkpoint") / "tiny.safetensors"
    shutil.copy(tiny_models["sd1"], model)
    with Catalog(tmp_home) as catalog:
        catalog.add_file(model)
    with pytest.raises(Interrupted) as stopped:
        run_smoke(tmp_home, ["tiny"], steps=3, progress=CancelWhen(after_steps(1)))
    assert str(stopped.value) == "cancelled; no image written; no verdict recorded"
    with Catalog(tmp_home) as catalog:
        [asset] = catalog.list_assets()
        assert asset.status is None
    assert pngs(tmp_home.outputs_dir) == []
    [result] = run_smoke(tmp_home, ["tiny"], steps=2)  # the same test, not stopped, is recorded
    with Catalog(tmp_home) as catalog:
        assert catalog.list_assets()[0].status == result.verdict and result.recorded


def test_a_cancelled_asuka_test_records_no_verdict(tmp_home, tiny_models) -> None:
    from sdhub.generate.reference_tests import run_asuka

    progress = CancelWhen(after_steps(1))
    with pytest.raises(Interrupted) as stopped:
        run_asuka(tmp_home, str(tiny_models["sd1"]), force=True, progress=progress,
                  overrides={"width": 64, "height": 64, "steps": 4})
    assert str(stopped.value) == "cancelled; no image written; no verdict recorded"
    assert pngs(tmp_home.outputs_dir) == []
