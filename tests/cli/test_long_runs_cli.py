"""`sdhub generate --batch-count`, `--forever` stopped by Ctrl-C, and `--last`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from sdhub.generate.infotext import read_png_parameters

DRIVER = Path(__file__).with_name("stop_driver.py")
SMALL = ["--steps", "2", "--width", "64", "--height", "64", "--sampler", "Euler a"]


@pytest.fixture(scope="module")
def tiny_sd1(tmp_path_factory) -> Path:
    from safetensors.torch import load_file, save_file

    from sdhub.testing import factory

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("long-run-models")
    state = load_file(str(factory.sd1_checkpoint(folder / "factory.safetensors")))
    key = "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    state[key] = torch.randn(state[key].shape, generator=torch.Generator().manual_seed(3)) * 0.5
    save_file(state, str(folder / "tiny-sd1.safetensors"))
    return folder / "tiny-sd1.safetensors"


def pixels(path: Path) -> str:
    with Image.open(path) as image:
        return hashlib.sha256(image.tobytes()).hexdigest()


def test_batch_count_draws_batches_with_a1111s_seeds(run_cli, tmp_home, tiny_sd1, tmp_path):
    result = run_cli("--home", tmp_home.root, "generate", "a cat", "--model", tiny_sd1, *SMALL, "--seed", "10",
                     "--batch", "2", "--batch-count", "3", "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["seeds"] == [10, 11, 12, 13, 14, 15] and data["batch_count"] == 3
    images = [Path(p) for p in data["images"]]
    assert [p.name for p in images] == [f"{n:05d}-{10 + n}.png" for n in range(6)]
    assert all(f"Seed: {10 + n}," in read_png_parameters(p) for n, p in enumerate(images))
    # batch 2's first image is what a single run with its seed draws
    single = run_cli("--home", tmp_home.root, "generate", "a cat", "--model", tiny_sd1, *SMALL, "--seed", "12",
                     "--batch", "2", "--out", tmp_path / "single")
    assert single.exit_code == 0, single.stderr
    assert pixels(Path(single.stdout.split()[0])) == pixels(images[2])


def test_last_draws_the_same_picture_and_options_override_it(run_cli, tmp_home, tiny_sd1, tmp_path):
    first = run_cli("--home", tmp_home.root, "generate", "a red cat", "--model", tiny_sd1, *SMALL, "--cfg", "5",
                    "--out", tmp_path / "out")  # a random seed: --last must draw it again
    assert first.exit_code == 0, first.stderr
    again = run_cli("--home", tmp_home.root, "generate", "--last", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.stderr
    original, repeated = Path(first.stdout.strip()), Path(again.stdout.strip())
    assert pixels(original) == pixels(repeated)
    assert read_png_parameters(original) == read_png_parameters(repeated)
    changed = run_cli("--home", tmp_home.root, "generate", "--last", "--cfg", "9", "--out", tmp_path / "changed")
    assert changed.exit_code == 0, changed.stderr
    text = read_png_parameters(Path(changed.stdout.strip()))
    assert "CFG scale: 9," in text and text.replace("CFG scale: 9,", "CFG scale: 5,") == read_png_parameters(original)
    saved = json.loads((tmp_home.catalog_dir / "last-generation.json").read_text())
    assert saved["options"]["cfg"] == 9 and saved["options"]["model"] == str(tiny_sd1)


def test_last_without_an_earlier_generation_is_refused_in_one_line(run_cli, tmp_home):
    result = run_cli("--home", tmp_home.root, "generate", "--last")
    assert result.exit_code == 1 and "no earlier generation" in result.stderr
    assert result.stderr.count("\n") == 1


def test_forever_stopped_by_ctrl_c_keeps_every_finished_image(tmp_home, tiny_sd1, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(DRIVER), "--home", str(tmp_home.root), "generate", "a cat",
                                "--model", str(tiny_sd1), *SMALL, "--seed", "20", "--forever", "--out", str(out)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "SDHUB_TEST_HOLD": ""})
    deadline = time.monotonic() + 300
    while not (out.is_dir() and list(out.glob("*.png"))):  # one image finished: stop it while it draws on
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no image written"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    kept = sorted(out.iterdir())
    assert kept and all(path.suffix == ".png" for path in kept)  # no temporary file left
    assert [path.name for path in kept] == [f"{n:05d}-{20 + n}.png" for n in range(len(kept))]
    assert all(f"Seed: {20 + n}," in read_png_parameters(p) for n, p in enumerate(kept))
    assert f"{len(kept)} finished image" in err and "kept" in err and "Traceback" not in err
