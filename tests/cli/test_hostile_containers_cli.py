"""Container polyglots and FIFOs as every command meets them: refused in one line with the right exit
code, nothing run, nothing left behind, in at most 2 s of CPU each."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from formats.malicious import Case, build_corpus, fifo_never_opened
from sdhub.config import init_home

# The container ambiguities and the exit code each earns: 1 refused as unsafe, 2 corrupt input.
EXIT_CODES = {
    "zip64_second_directory": 1, "end_record_in_comment": 1, "legacy_tar_polyglot": 1,
    "bytes_before_end_record": 1, "unlisted_record_in_gap": 1, "end_signature_in_comment": 1,
    "zip64_huge_offset": 2, "zip64_huge_entry": 2,
}
CPU_SECONDS = 2.0


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    cases = [c for c in build_corpus(tmp_path_factory.mktemp("polyglots")) if c.name in EXIT_CODES]
    folder = cases[0].path.parent
    for other in folder.iterdir():  # only the container cases stay, for the nothing-left-behind check
        if other not in {c.path for c in cases}:
            other.unlink()
    return cases


def _timed(run_cli, *args):
    started = time.process_time()
    result = run_cli(*args)
    return result, time.process_time() - started


def _warm_up(run_cli, folder: Path) -> None:
    """First calls pay for imports; a benign file goes through every command once before timing."""
    folder.mkdir()
    good = folder / "warm.pt"
    torch.save({"w": torch.ones(2)}, good)
    for command in ("convert", "scan-pickle", "inspect", "hash", "prune"):
        run_cli(command, good, cwd=folder)
    shutil.rmtree(folder)


def test_every_command_refuses_each_polyglot_in_one_line(run_cli, hostile: list[Case], tmp_path: Path) -> None:
    assert {"zip64_second_directory", "end_record_in_comment", "legacy_tar_polyglot"} <= {c.name for c in hostile}
    _warm_up(run_cli, tmp_path / "warm")
    folder = hostile[0].path.parent
    before = sorted(p.name for p in folder.iterdir())
    for case in hostile:
        code = EXIT_CODES[case.name]
        for command in ("convert", "inspect", "prune"):
            result, cpu = _timed(run_cli, command, case.path)
            lines = result.stderr.strip().splitlines()
            assert result.exit_code == code, (case.name, command, result.stderr)
            assert len(lines) == 1 and lines[0].startswith(f"sdhub: error: {case.path.name}: "), (case.name, command)
            assert cpu <= CPU_SECONDS, (case.name, command, cpu)

        result, cpu = _timed(run_cli, "scan-pickle", case.path, "--json")
        report = json.loads(result.stdout)
        assert result.exit_code == code and report["verdict"] == ("refused" if code == 1 else "corrupt"), case.name
        assert report["reason"].startswith(f"{case.path.name}: ") and "\n" not in report["reason"]
        assert cpu <= CPU_SECONDS, (case.name, "scan-pickle", cpu)

        # hash reads bytes, never the pickle: the file hashes stand, nothing of the model is claimed.
        result, cpu = _timed(run_cli, "hash", case.path, "--json")
        [hashes] = json.loads(result.stdout)
        assert result.exit_code == 0 and hashes["sha256"] == hashlib.sha256(case.path.read_bytes()).hexdigest()
        assert hashes["kind"] is None and hashes["components"] is None, case.name
        assert cpu <= CPU_SECONDS, (case.name, "hash", cpu)
        assert not case.canary.exists(), case.name
    assert sorted(p.name for p in folder.iterdir()) == before


def test_scan_catalogues_each_polyglot_as_broken_and_goes_on(run_cli, hostile: list[Case], tmp_path: Path) -> None:
    home = init_home(tmp_path / "home", "sdhub")
    for case in hostile:
        shutil.copyfile(case.path, home.folder("checkpoint") / case.path.name)
    torch.save({"w": torch.ones(2)}, home.folder("checkpoint") / "good.pt")
    _warm_up(run_cli, tmp_path / "warm")
    result, cpu = _timed(run_cli, "--home", home.root, "scan", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    broken = {Path(b["path"]).name: b for b in report["broken"]}
    assert set(broken) == {c.path.name for c in hostile}
    for case in hostile:
        reason = broken[case.path.name]["reason"]
        assert reason.startswith(f"{case.path.name}: ") and "\n" not in reason
        assert not case.canary.exists()
    assert report["files_seen"] == len(hostile) + 1 and report["assets_added"] == len(hostile) + 1
    assert cpu <= CPU_SECONDS * (len(hostile) + 1)


def test_a_fifo_named_like_a_model_is_refused_by_every_command_unopened(run_cli, tmp_path: Path) -> None:
    home = init_home(tmp_path / "home", "sdhub")
    torch.save({"w": torch.ones(2)}, home.folder("checkpoint") / "good.pt")
    with fifo_never_opened(home.folder("checkpoint") / "x.ckpt") as fifo, \
            fifo_never_opened(home.folder("checkpoint") / "good.civitai.info"):  # a sidecar is read too
        before = sorted(p.name for p in fifo.parent.iterdir())
        for command in ("convert", "scan-pickle", "inspect", "hash", "prune"):
            result = run_cli(command, fifo)
            assert result.exit_code == 2, (command, result.stderr)
            assert result.stderr.strip() == f"sdhub: error: {fifo} is a FIFO (named pipe); refusing to read it " \
                                            "(model files are regular files)", command
        scan = run_cli("--home", home.root, "scan", "--json")
    assert scan.exit_code == 0, scan.stderr
    report = json.loads(scan.stdout)
    assert report["errors"] == [{"path": str(fifo), "error": "a FIFO (named pipe), not a model file; not read"}]
    assert report["files_seen"] == 1 and report["assets_added"] == 1
    assert sorted(p.name for p in fifo.parent.iterdir()) == before
