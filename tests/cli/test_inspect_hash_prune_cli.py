"""The inspect, hash and prune commands as a user runs them: output, JSON, exit codes, one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sdhub.testing import factory


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-models")
    factory.sd1_checkpoint(folder / "sd1.ckpt", fmt="ckpt", ema=True, training_state=True)
    factory.lora(folder / "style.safetensors", base="sdxl", fmt="kohya")
    factory.vae(folder / "vae.safetensors", seed=3)
    return folder


def test_inspect_prints_a_summary_and_json(run_cli, files: Path) -> None:
    result = run_cli("inspect", files / "sd1.ckpt")
    assert result.exit_code == 0, result.stderr
    assert "checkpoint" in result.stdout and "sd1" in result.stdout
    assert "optimizer_states" in result.stdout  # training state named
    as_json = run_cli("inspect", files / "style.safetensors", "--json")
    data = json.loads(as_json.stdout)
    assert (data["kind"], data["base_model"], data["lora_flavour"]) == ("lora", "sdxl", "kohya")
    assert data["lora"]["network_module"] == "networks.lora"


def test_hash_json_lists_every_file(run_cli, files: Path) -> None:
    result = run_cli("hash", files / "sd1.ckpt", files / "vae.safetensors", "--json")
    assert result.exit_code == 0, result.stderr
    first, second = json.loads(result.stdout)
    assert first["sha256"] == hashlib.sha256((files / "sd1.ckpt").read_bytes()).hexdigest()
    assert first["civitai"]["AutoV2"] == first["sha256"][:10].upper()
    assert first["addnet_hash"] is None and second["addnet_hash"] is None  # not a LoRA: no AutoV3
    assert set(first["components"]) == {"unet", "vae", "text_encoder"}
    assert second["kind"] == "vae" and set(second["components"]) == {"vae"}


def test_hash_takes_autov3_for_loras_and_with_all_for_every_safetensors(run_cli, files: Path) -> None:
    data = (files / "vae.safetensors").read_bytes()
    vae_addnet = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()
    lora = json.loads(run_cli("hash", files / "style.safetensors", "--json").stdout)[0]
    assert lora["autov3"] == lora["addnet_hash"][:12] and lora["civitai"]["AutoV3"] == lora["autov3"].upper()
    text = run_cli("hash", files / "vae.safetensors")
    assert "taken for LoRAs; --all" in text.stdout and "AutoV3" not in json.dumps(
        json.loads(run_cli("hash", files / "vae.safetensors", "--json").stdout)[0]["civitai"])
    everything = json.loads(run_cli("hash", files / "vae.safetensors", "--all", "--json").stdout)[0]
    assert everything["addnet_hash"] == vae_addnet and everything["civitai"]["AutoV3"] == vae_addnet[:12].upper()


def test_prune_writes_the_file_and_reports_sizes(run_cli, files: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.safetensors"
    result = run_cli("prune", files / "sd1.ckpt", "-o", out, "--ema", "use", "--dtype", "fp16", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["output"] == str(out) and out.stat().st_size == report["bytes_after"]
    assert report["ema"] == "used" and "optimizer_states" in report["training_entries_dropped"]
    text = run_cli("prune", files / "sd1.ckpt", "-o", tmp_path / "again.safetensors", "--vae", "bake",
                   files / "vae.safetensors")
    assert text.exit_code == 0, text.stderr
    assert "saved" in text.stderr and "baked from" in text.stderr


def test_prune_errors_are_one_line_with_the_right_exit_code(run_cli, files: Path, tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "model.safetensors")
    same = run_cli("prune", model, "-o", model)
    assert same.exit_code == 2 and same.stderr.count("\n") == 1
    assert same.stderr.startswith("sdhub: error:") and "never overwrites its input" in same.stderr
    no_vae_file = run_cli("prune", model, "--vae", "bake")
    assert no_vae_file.exit_code == 2 and "VAE_FILE" in no_vae_file.stderr
    missing = run_cli("inspect", tmp_path / "missing.safetensors")
    assert missing.exit_code == 2 and missing.stderr.startswith("sdhub: error:")

    state = factory.tiny_state_dicts("sd1")
    state["model.diffusion_model.out.2.bias"] = torch.tensor([1e6, 0.0, 0.0, 0.0])
    save_file(state, tmp_path / "hot.safetensors")
    overflow = run_cli("prune", tmp_path / "hot.safetensors")
    assert overflow.exit_code == 1 and "--force" in overflow.stderr and "Traceback" not in overflow.stderr
    assert not (tmp_path / "hot-pruned.safetensors").exists()
