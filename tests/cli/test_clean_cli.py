"""Leftovers: what a killed convert or prune or a stopped download leaves is found, reported and cleaned,
and never what a live process is still writing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from sdhub.config import Home
from sdhub.ops.leftovers import UNLOCKED_GRACE_SECONDS
from sdhub.sources.download import part_paths
from sdhub.sources.placing import exclusive_lock
from sdhub.testing import factory

# A convert (or prune) in a child process that stops, holding its half-written output, once the
# writer reports its first bytes: it says "writing" and waits. The parent kills it (or not).
_STOPPING_WRITER = """
import sys
from sdhub.progress import NullProgress

class StopWhileWriting(NullProgress):
    def task(self, description, total=None, unit=""):
        task = super().task(description, total, unit)
        if description.startswith("Writing"):
            def advance(amount=1):
                print("writing", flush=True)
                sys.stdin.read()  # until the parent closes our stdin (or kills us)
            task.advance = advance
        return task

operation, source, output = sys.argv[1:4]
if operation == "convert":
    from sdhub.ops.convert import convert
    convert(source, output, progress=StopWhileWriting())
else:
    from sdhub.ops.prune import prune
    prune(source, output, progress=StopWhileWriting())
"""


def _start_writer(operation: str, source: Path, output: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", _STOPPING_WRITER, operation, str(source), str(output)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = process.stdout.readline()
    assert line == b"writing\n", process.communicate()[1].decode()
    return process


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    for stream in (process.stdin, process.stdout, process.stderr):
        stream.close()


def _hidden(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


@pytest.fixture
def source_ckpt(tmp_path: Path) -> Path:
    return factory.sd1_checkpoint(tmp_path / "tinymix_v1.ckpt", fmt="ckpt")


def test_a_killed_convert_is_reported_by_scan_and_doctor_and_removed_by_clean(
        tmp_home: Home, source_ckpt: Path, run_cli) -> None:
    folder = tmp_home.folder("checkpoint")
    output = folder / "tinymix_v1.safetensors"
    _kill(_start_writer("convert", source_ckpt, output))
    [leftover] = _hidden(folder)
    size = (folder / leftover).stat().st_size  # what was written before the kill, under a hidden name
    assert not output.exists()

    scan = run_cli("--home", tmp_home.root, "scan", "--json")
    assert scan.exit_code == 0, scan.stderr
    [reported] = json.loads(scan.stdout)["leftovers"]
    assert reported["path"] == str(folder / leftover) and reported["size"] == size
    assert reported["state"] == "stale"
    said = run_cli("--home", tmp_home.root, "scan")
    assert "1 stale temporary" in said.stderr and "sdhub clean" in said.stderr

    doctor = run_cli("--home", tmp_home.root, "doctor", "--json")
    [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "leftovers"]
    assert check["status"] == "warn" and leftover in check["detail"] and "sdhub clean" in check["fix"]

    dry = run_cli("--home", tmp_home.root, "clean", "--dry-run", "--json")
    assert dry.exit_code == 0
    assert [item["action"] for item in json.loads(dry.stdout)["leftovers"]] == ["would remove"]
    assert _hidden(folder) == [leftover]

    cleaned = run_cli("--home", tmp_home.root, "clean")
    assert cleaned.exit_code == 0, cleaned.stderr
    assert "removed 1 of 1" in cleaned.stderr
    assert _hidden(folder) == []
    assert json.loads(run_cli("--home", tmp_home.root, "scan", "--json").stdout)["leftovers"] == []


@pytest.mark.parametrize("operation", ["convert", "prune"])
def test_a_rerun_of_the_same_operation_replaces_its_own_leftover(
        tmp_home: Home, source_ckpt: Path, operation: str) -> None:
    folder = tmp_home.folder("checkpoint")
    output = folder / f"tinymix_v1-{operation}.safetensors"
    _kill(_start_writer(operation, source_ckpt, output))
    assert len(_hidden(folder)) == 1

    if operation == "convert":
        from sdhub.ops.convert import convert

        convert(source_ckpt, output)
    else:
        from sdhub.ops.prune import prune

        prune(source_ckpt, output)
    assert _hidden(folder) == []
    with safe_open(output, "pt") as opened:
        assert len(list(opened.keys())) > 10


def test_clean_leaves_a_file_a_live_process_is_writing(tmp_home: Home, source_ckpt: Path, run_cli) -> None:
    folder = tmp_home.folder("checkpoint")
    writer = _start_writer("convert", source_ckpt, folder / "tinymix_v1.safetensors")
    try:
        [being_written] = _hidden(folder)
        result = run_cli("--home", tmp_home.root, "clean", "--json")
        assert result.exit_code == 0
        [item] = json.loads(result.stdout)["leftovers"]
        assert (item["state"], item["action"]) == ("in use", "kept")
        assert _hidden(folder) == [being_written]
    finally:
        _kill(writer)
    assert run_cli("--home", tmp_home.root, "clean").exit_code == 0
    assert _hidden(folder) == []


def test_stopped_downloads_are_kept_unless_partials_are_asked_for(tmp_home: Home, run_cli) -> None:
    folder = tmp_home.folder("lora")
    part, state, lock = part_paths(folder, "https://example.org/style.safetensors")
    part.write_bytes(b"\0" * 5000)
    state.write_text('{"segments": [[0, null, 5000]]}')

    kept = run_cli("--home", tmp_home.root, "clean", "--json")
    [item] = json.loads(kept.stdout)["leftovers"]
    assert (item["kind"], item["state"], item["action"]) == ("download", "resumable", "kept")
    assert item["size"] == 5000 + state.stat().st_size and item["companions"] == [str(state)]
    assert part.exists()
    assert "run the same `sdhub get` to resume" in run_cli("--home", tmp_home.root, "clean").stderr

    with exclusive_lock(lock):  # a download of the same URL is running
        busy = run_cli("--home", tmp_home.root, "clean", "--partials", "--json")
        assert [i["state"] for i in json.loads(busy.stdout)["leftovers"]] == ["in use"]
        assert part.exists() and state.exists()

    removed = run_cli("--home", tmp_home.root, "clean", "--partials")
    assert removed.exit_code == 0, removed.stderr
    assert _hidden(folder) == []


def test_only_sdhub_names_are_touched_and_unlocked_old_temporaries_wait_for_their_grace(
        tmp_home: Home, tmp_path: Path, run_cli) -> None:
    folder = tmp_home.folder("checkpoint")
    others = ["model.safetensors.part", ".DS_Store", "notes.part", ".hidden.part"]
    for name in others:
        (folder / name).write_bytes(b"x")
    old = folder / ".tinymix_v1.safetensors.k2j4x9ab.part"  # the writer's names before it took a lock
    recent = folder / ".other.safetensors.abcdefgh.part"
    old.write_bytes(b"y" * 300)
    recent.write_bytes(b"z" * 100)
    staging = folder / ".sdhub-k2j4x9ab.part"  # a Hub pipeline folder being copied in, by an older sdhub
    (staging / "unet").mkdir(parents=True)
    (staging / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"w" * 700)
    long_ago = time.time() - UNLOCKED_GRACE_SECONDS - 60
    for path in (old, staging, staging / "unet", staging / "unet" / "diffusion_pytorch_model.safetensors"):
        os.utime(path, (long_ago, long_ago))

    result = run_cli("--home", tmp_home.root, "clean", "--json")
    report = json.loads(result.stdout)
    assert {Path(i["path"]).name: i["state"] for i in report["leftovers"]} == {
        old.name: "stale", recent.name: "recently changed", staging.name: "stale"}
    assert report["freed_bytes"] == 300 + 700
    assert not staging.exists()
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(others + [recent.name])


def test_clean_takes_folders_and_refuses_a_missing_one(tmp_path: Path, run_cli) -> None:
    elsewhere = tmp_path / "converted"
    elsewhere.mkdir()
    (elsewhere / ".sdhub-tmp-x.safetensors.part").write_bytes(b"1234")
    result = run_cli("clean", elsewhere)
    assert result.exit_code == 0, result.stderr
    assert os.listdir(elsewhere) == []
    missing = run_cli("clean", tmp_path / "nope")
    assert missing.exit_code == 2 and "not a folder" in missing.stderr
