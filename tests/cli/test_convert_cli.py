"""``sdhub convert`` and ``sdhub scan-pickle`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from formats.malicious import build_corpus
from sdhub.testing import factory


def test_convert_writes_beside_the_source_and_says_so(run_cli, tmp_path: Path) -> None:
    source = factory.sd1_checkpoint(tmp_path / "model.ckpt", fmt="ckpt", ema=True)
    result = run_cli("convert", source, "--verify")
    assert result.exit_code == 0, result.stderr
    assert "converted" in result.stderr and "verified" in result.stderr
    out = tmp_path / "model.safetensors"
    assert out.exists() and source.exists()
    assert "model.diffusion_model.input_blocks.0.0.weight" in load_file(out)


def test_convert_json_output_is_the_report(run_cli, tmp_path: Path) -> None:
    source = tmp_path / "w.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 2}, source)
    result = run_cli("convert", source, "-o", tmp_path / "out.safetensors", "--dtype", "fp16", "--json")
    assert result.exit_code == 0, result.stderr
    [report] = json.loads(result.stdout)
    assert report["status"] == "converted" and report["dtype"] == "fp16" and report["tensors"] == 1
    assert report["extras"] == {"epoch": 2} and len(report["source_sha256"]) == 64
    assert load_file(tmp_path / "out.safetensors")["w"].dtype == torch.float16


def test_convert_refuses_every_hostile_file_with_one_line(run_cli, tmp_path: Path) -> None:
    cases = build_corpus(tmp_path / "hostile")
    before = sorted(p.name for p in (tmp_path / "hostile").iterdir())
    for case in cases:
        result = run_cli("convert", case.path)
        assert result.exit_code in (1, 2), case.name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sdhub: error: "), (case.name, result.stderr)
        assert "Traceback" not in result.stderr and not case.canary.exists(), case.name
    assert sorted(p.name for p in (tmp_path / "hostile").iterdir()) == before


def test_folder_mode_skips_converted_and_delete_original_removes_sources(run_cli, tmp_path: Path) -> None:
    torch.save({"a": torch.ones(2)}, tmp_path / "a.ckpt")
    torch.save({"b": torch.ones(2)}, tmp_path / "b.ckpt")
    run_cli("convert", tmp_path / "a.ckpt")
    result = run_cli("convert", tmp_path, "--delete-original", "--json")
    assert result.exit_code == 0, result.stderr
    status = {Path(r["source"]).name: r["status"] for r in json.loads(result.stdout)}
    assert status == {"a.ckpt": "skipped", "b.ckpt": "converted"}
    assert (tmp_path / "a.ckpt").exists() and not (tmp_path / "b.ckpt").exists()


def test_usage_errors_and_missing_files_exit_2(run_cli, tmp_path: Path) -> None:
    source = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2)}, source)
    bad_dtype = run_cli("convert", source, "--dtype", "fp8")
    assert bad_dtype.exit_code == 2 and "fp8" in bad_dtype.stderr
    missing = run_cli("convert", tmp_path / "nope.ckpt")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    run_cli("convert", source)
    again = run_cli("convert", source)
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_scan_pickle_lists_globals_and_gives_the_verdict(run_cli, tmp_path: Path) -> None:
    source = factory.sd1_checkpoint(tmp_path / "model.ckpt", fmt="ckpt", training_state=True)
    result = run_cli("scan-pickle", source, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "safe" and report["tensors"] > 100
    assert report["globals"]["torch._utils._rebuild_tensor_v2"] == "allowed"
    assert report["globals"]["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"] == "placeholder"
    assert not (tmp_path / "model.safetensors").exists()

    hostile = next(c for c in build_corpus(tmp_path / "hostile") if c.name == "reduce_os_system")
    refused = run_cli("scan-pickle", hostile.path)
    assert refused.exit_code == 1
    assert "os.system" in refused.stdout and "refused" in refused.stdout
    assert not hostile.canary.exists()


def test_one_hostile_file_in_a_folder_does_not_stop_the_others(run_cli, tmp_path: Path) -> None:
    hostile = next(c for c in build_corpus(tmp_path / "models") if c.name == "reduce_os_system")
    for case_file in (tmp_path / "models").iterdir():
        if case_file != hostile.path:
            case_file.unlink()
    torch.save({"w": torch.ones(2)}, tmp_path / "models" / "good.ckpt")
    result = run_cli("convert", tmp_path / "models")
    assert result.exit_code == 1
    assert f"failed {hostile.path}" in result.stderr and "os.system" in result.stderr
    assert (tmp_path / "models" / "good.safetensors").exists()
    assert not (tmp_path / "models" / f"{hostile.path.stem}.safetensors").exists()
    assert not hostile.canary.exists()
