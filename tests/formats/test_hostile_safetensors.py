"""Hostile and odd .safetensors files: each ends in one line and the right exit code, at a cost bounded
by its size; fp8 checkpoints go through every command; names from a file never reach the terminal raw."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sdhub.formats.safetensors_file import MAX_HEADER_BYTES, TENSOR_COUNT_FLOOR
from sdhub.testing.layouts import checkpoint_state


def _write(path: Path, header: bytes, data: bytes = b"", claimed: int | None = None) -> Path:
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header) if claimed is None else claimed) + header + data)
    return path


def _entries(count: int) -> bytes:
    return json.dumps({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)},
                      separators=(",", ":")).encode()


def build_hostile(folder: Path) -> dict[str, Path]:
    """One file per way a header can cost more than its size, or hold what torch cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    one = b',"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    return {
        # The safetensors library's own limit is 100,000,000 header bytes.
        "claims-huge-header": _write(folder / "claims-huge-header.safetensors", b"{}", claimed=MAX_HEADER_BYTES + 8),
        # Many empty tensors: nothing to store, but each one costs work in every command.
        "many-empty-tensors": _write(folder / "many-empty-tensors.safetensors", _entries(TENSOR_COUNT_FLOOR * 4)),
        # Millions of tiny arrays where a shape should be: gigabytes of Python objects if parsed.
        "array-bomb": _write(folder / "array-bomb.safetensors",
                             b'{"x":{"dtype":"F32","shape":[' + b"[]," * 4_000_000 + b'[]],"data_offsets":[0,0]}'
                             + one, b"\0" * 4),
        "deep-nesting": _write(folder / "deep-nesting.safetensors",
                               b'{"__metadata__":' + b"[" * 200_000 + b"]" * 200_000 + one, b"\0" * 4),
        "dimension-2**100": _write(folder / "dimension-2**100.safetensors", json.dumps(
            {"t": {"dtype": "F32", "shape": [0, 2**100], "data_offsets": [0, 0]}}).encode()),
        "dimensions-overflow-64-bits": _write(folder / "dimensions-overflow-64-bits.safetensors", json.dumps(
            {"t": {"dtype": "F32", "shape": [0, 2**62, 4], "data_offsets": [0, 0]}}).encode()),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_hostile(tmp_path_factory.mktemp("hostile-safetensors"))


@pytest.mark.parametrize("case", ["claims-huge-header", "many-empty-tensors", "array-bomb", "deep-nesting",
                                  "dimension-2**100", "dimensions-overflow-64-bits"])
def test_each_command_refuses_in_one_line_and_leaves_nothing(run_cli, hostile: dict[str, Path], tmp_path: Path,
                                                             case: str) -> None:
    path = hostile[case]
    for command in (["inspect"], ["prune", "-o", tmp_path / "pruned.safetensors"],
                    ["convert", "--dtype", "fp16", "-o", tmp_path / "converted.safetensors"]):
        result = run_cli(*command[:1], path, *command[1:])
        assert result.exit_code == 2, (command, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("sdhub: error: "), result.stderr
        assert "internal error" not in result.stderr
    hashed = run_cli("hash", path, "--json")  # a file that is no model still has its file hashes
    assert hashed.exit_code == 0, hashed.stderr
    assert len(json.loads(hashed.stdout)[0]["sha256"]) == 64
    reason = json.loads(hashed.stdout)[0]["not_a_model"]  # and says why it has nothing more
    assert reason and path.name in reason
    assert f"file hashes only, not read as a model: {reason}" in " ".join(hashed.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors" or p.name.startswith(".")) == []


def test_hostile_headers_cost_at_most_two_seconds_and_256_mb_each(hostile: dict[str, Path]) -> None:
    """Measured in a fresh process: CPU per file, and the peak over the process after its imports."""
    script = textwrap.dedent("""
        import json, resource, sys, time
        import torch  # imported before the baseline, as every command that reads tensors has it
        from sdhub.errors import SdhubError
        from sdhub.ops.inspect import inspect_file
        from sdhub.ops.prune import prune
        from sdhub.ops.hashing import hash_model
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        costs = {}
        for path in sys.argv[1:]:
            started = time.process_time()
            for run in (lambda: inspect_file(path), lambda: prune(path, path + ".out"), lambda: hash_model(path)):
                try:
                    run()
                except SdhubError:
                    pass
            costs[path] = time.process_time() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline
        print(json.dumps({"cpu": costs, "peak_mb": peak / 1024}))
    """)
    result = subprocess.run([sys.executable, "-c", script, *map(str, hostile.values())], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["peak_mb"] < 256, measured
    slow = {Path(p).name: round(s, 2) for p, s in measured["cpu"].items() if s > 2.0}
    assert slow == {}, measured


def test_a_scan_catalogues_the_good_file_beside_hostile_ones(run_cli, tmp_home, hostile: dict[str, Path]) -> None:
    folder = tmp_home.folder("checkpoint")
    folder.mkdir(parents=True, exist_ok=True)
    for path in hostile.values():
        (folder / path.name).write_bytes(path.read_bytes())
    save_file(checkpoint_state("sd1"), str(folder / "good.safetensors"))
    result = run_cli("--home", tmp_home.root, "scan", "--check-values")
    assert result.exit_code == 0, result.stderr
    listing = run_cli("--home", tmp_home.root, "ls", "--json")
    rows = {row["file_name"]: row for row in json.loads(listing.stdout)}
    assert "good.safetensors" in rows and rows["good.safetensors"]["base_model"] == "sd1"
    assert rows["good.safetensors"]["defect"] is None
    assert {name for name, row in rows.items() if row["defect"] == "broken"} == {p.name for p in hostile.values()}


@pytest.fixture(scope="module")
def fp8_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SD1 checkpoint whose UNet is stored in fp8 (e4m3), as Flux- and SDXL-era files often are."""
    state = {key: value.to(torch.float8_e4m3fn) if key.startswith("model.diffusion_model.") and
             value.is_floating_point() else value for key, value in checkpoint_state("sd1").items()}
    state["model.diffusion_model.out.2.bias"] = torch.tensor([float("nan"), 1.0, 2.0, 3.0]).to(torch.float8_e4m3fn)
    path = tmp_path_factory.mktemp("fp8") / "fp8-unet.safetensors"
    save_file(state, str(path))
    return path


def test_fp8_checkpoints_inspect_and_count_their_nan(run_cli, fp8_checkpoint: Path) -> None:
    result = run_cli("inspect", fp8_checkpoint, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["base_model"] == "sd1"
    assert "F8_E4M3" in json.dumps(report)
    assert "nan" in json.dumps(report["problems"]).lower()


def test_fp8_stays_fp8_when_pruned_or_cast_to_fp16_and_widens_exactly_to_fp32(run_cli, fp8_checkpoint: Path,
                                                                              tmp_path: Path) -> None:
    source = load_file(str(fp8_checkpoint))
    unet_key = next(k for k, v in source.items() if v.dtype == torch.float8_e4m3fn and v.numel() > 8)
    pruned = run_cli("prune", fp8_checkpoint, "-o", tmp_path / "pruned.safetensors")
    assert pruned.exit_code == 0, pruned.stderr
    assert (tmp_path / "pruned.safetensors").stat().st_size < fp8_checkpoint.stat().st_size
    assert load_file(str(tmp_path / "pruned.safetensors"))[unet_key].dtype == torch.float8_e4m3fn
    half = run_cli("convert", fp8_checkpoint, "--dtype", "fp16", "-o", tmp_path / "half.safetensors")
    assert half.exit_code == 0, half.stderr
    assert torch.equal(load_file(str(tmp_path / "half.safetensors"))[unet_key].view(torch.uint8),
                       source[unet_key].view(torch.uint8))
    full = run_cli("convert", fp8_checkpoint, "--dtype", "fp32", "-o", tmp_path / "full.safetensors")
    assert full.exit_code == 0, full.stderr
    assert torch.equal(load_file(str(tmp_path / "full.safetensors"))[unet_key], source[unet_key].float())


ESCAPES = "\x1b]0;pwned\x07\x1b[2J\r\u202e"


def test_names_from_a_file_are_printed_with_their_control_characters_escaped(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "escapes.safetensors"
    save_file({f"evil{ESCAPES}name": torch.zeros(2)}, str(path), metadata={"ss_output_name": f"x{ESCAPES}"})
    for json_flag in ((), ("--json",)):
        result = run_cli("inspect", path, *json_flag)
        assert result.exit_code == 0, result.stderr
        for raw in ("\x1b", "\x07", "\r", "\u202e"):
            assert raw not in result.stdout and raw not in result.stderr, (json_flag, raw)
    assert "x\\x1b]0;pwned" in run_cli("inspect", path).stdout


def test_an_error_naming_something_from_the_file_stays_one_visible_line(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    _write(path, json.dumps({f"t{ESCAPES}": {"dtype": "F32", "shape": [2], "data_offsets": [0, 999]}}).encode())
    result = run_cli("inspect", path)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "\\x1b]0;pwned" in result.stderr
    assert not any(raw in result.stderr for raw in ("\x1b", "\x07", "\r", "\u202e"))
