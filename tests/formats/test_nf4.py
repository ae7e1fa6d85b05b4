"""bitsandbytes NF4 checkpoints (Forge's flux1-dev-bnb-nf4 v1 and v2): recognised, detected from the
weights' real shapes, hashed and catalogued; prune, cast and convert refuse them in one line."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from safetensors import safe_open

from sdhub.formats import open_model
from sdhub.ops.hashing import hash_model
from sdhub.ops.inspect import inspect_file
from sdhub.testing import bnb_files, families, writers

SHAPES = families.flux_checkpoint_shapes("dev")
QUANTISED = sorted(name for name, shape in SHAPES.items()
                   if name.startswith("model.diffusion_model.") and name.endswith(".weight") and len(shape) == 2)


@pytest.fixture(scope="module", params=["v2", "v1"])
def nf4(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Forge's v2 (absmax in float32) and v1 (double quantisation) layouts."""
    folder = tmp_path_factory.mktemp("nf4")
    return bnb_files.write_nf4(folder / f"flux1-dev-bnb-nf4-{request.param}.safetensors", SHAPES,
                               double_quant=request.param == "v1")


@pytest.fixture(scope="module")
def nf4_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bnb_files.write_nf4(tmp_path_factory.mktemp("nf4") / "flux1-dev-bnb-nf4-v2.safetensors", SHAPES)


def test_the_file_is_in_bitsandbytes_layout(nf4: Path) -> None:
    """What the factory writes is what bitsandbytes' Params4bit saves: packed bytes and their state."""
    name = "model.diffusion_model.double_blocks.0.img_attn.qkv.weight"
    with safe_open(str(nf4), "pt") as handle:
        keys = set(handle.keys())
        packed = handle.get_tensor(name)
        state = json.loads(bytes(handle.get_tensor(f"{name}.quant_state.bitsandbytes__nf4").tolist()))
    assert packed.dtype.itemsize == 1 and tuple(packed.shape) == (math.prod(SHAPES[name]) // 2, 1)
    assert {f"{name}.absmax", f"{name}.quant_map"} <= keys
    assert ({f"{name}.nested_absmax", f"{name}.nested_quant_map"} <= keys) == ("v1" in nf4.name)
    assert state["quant_type"] == "nf4" and state["shape"] == list(SHAPES[name]) and state["blocksize"] == 64


def test_nf4_weights_are_described_by_their_model_shapes(nf4: Path) -> None:
    with open_model(nf4) as model:
        assert model.quantisation.scheme == "bitsandbytes"
        assert model.quantisation.types["NF4"] == len(QUANTISED)
        for name in QUANTISED:
            info = model.tensors[name]
            assert (info.dtype_name, info.shape, info.nbytes) == ("NF4", SHAPES[name], math.prod(SHAPES[name]) // 2)


def test_inspect_reports_the_quantisation_and_detects_flux(nf4: Path, run_cli) -> None:
    report = inspect_file(nf4)
    assert (report.detection.kind, report.detection.architecture, report.base_model) == (
        "checkpoint", "flux1-dev", "flux1")
    assert report.quantisation["summary"] == f"bitsandbytes NF4 quantised, {len(QUANTISED)} tensors"
    assert report.prune is None and not [p for p in report.problems if p.severity == "error"]
    result = run_cli("inspect", nf4)
    assert result.exit_code == 0, result.stderr
    assert f"quantisation      bitsandbytes NF4 quantised, {len(QUANTISED)} tensors" in result.stdout


def test_hash_and_scan_take_nf4_checkpoints(nf4_v2: Path, tmp_home, run_cli) -> None:
    nf4 = nf4_v2
    hashes = hash_model(nf4)
    assert hashes.file.sha256 == hashlib.sha256(nf4.read_bytes()).hexdigest()
    assert hashes.kind == "checkpoint" and "unet" in hashes.components
    (tmp_home.folder("checkpoint") / nf4.name).write_bytes(nf4.read_bytes())
    assert run_cli("--home", tmp_home.root, "scan").exit_code == 0
    [entry] = json.loads(run_cli("--home", tmp_home.root, "ls", "--json").stdout)
    assert (entry["file_name"], entry["kind"], entry["sha256"]) == (nf4.name, "checkpoint", hashes.file.sha256)


@pytest.mark.parametrize("command", [["prune"], ["prune", "--dtype", "fp16"], ["convert", "--dtype", "fp16"]])
def test_prune_cast_and_convert_refuse_nf4_in_one_line(nf4_v2: Path, tmp_path: Path, run_cli, command) -> None:
    nf4 = nf4_v2
    out = tmp_path / "out.safetensors"
    result = run_cli(*command, nf4, "-o", out)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "quantised" in result.stderr and "does not dequantise" in result.stderr
    assert not out.exists()


def test_a_weight_whose_state_cannot_be_read_keeps_its_stored_shape(tmp_path: Path) -> None:
    import torch

    weight = torch.randn(8, 64, dtype=torch.bfloat16)
    entries = bnb_files.nf4_entries("model.diffusion_model.img_in.weight", weight)
    entries["model.diffusion_model.img_in.weight.quant_state.bitsandbytes__nf4"] = torch.tensor(
        list(b'{"shape": [8, 65]}'), dtype=torch.uint8)
    path = writers.save_tensors(tmp_path / "odd.safetensors", entries)
    with open_model(path) as model:
        assert model.tensors["model.diffusion_model.img_in.weight"].shape == (256, 1)
        assert model.quantisation.types["NF4"] == 1 and model.rewrite_refusal is not None
