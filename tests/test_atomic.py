"""Atomic output: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdhub.atomic import TEMP_PREFIX, atomic_output, remove_stale_temps


def test_the_file_appears_complete(tmp_path: Path) -> None:
    target = tmp_path / "lib" / "model.safetensors"
    with atomic_output(target) as handle:
        handle.write(b"x" * 1000)
        assert not target.exists()  # nothing under the final name while writing
    assert target.read_bytes() == b"x" * 1000
    assert [p.name for p in target.parent.iterdir()] == ["model.safetensors"]


def test_an_error_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"original")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as handle:
            handle.write(b"half")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"original"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_no_overwrite_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError):
        with atomic_output(target, overwrite=False) as handle:
            handle.write(b"new")
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


_HOLD_A_TEMP = """
import os, sys
from pathlib import Path
from sdhub.atomic import create_temp
fd, temp = create_temp(Path(sys.argv[1]))
os.write(fd, b"half of a model" * 1000)
print(temp, flush=True)
sys.stdin.read()  # hold it (and its lock) until the parent closes our stdin or kills us
"""


def _hold_temp_in_child(target: Path) -> tuple[subprocess.Popen, Path]:
    child = subprocess.Popen([sys.executable, "-c", _HOLD_A_TEMP, str(target)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    return child, Path(child.stdout.readline().strip())


def test_the_next_write_of_a_target_takes_over_the_leftover_of_a_killed_one(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    child, temp = _hold_temp_in_child(target)
    child.kill()
    child.communicate()
    assert temp.name == ".sdhub-tmp-model.safetensors.part" and temp.stat().st_size == 15000
    with atomic_output(target) as handle:
        handle.write(b"complete")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_temporary_file_a_live_process_writes_is_never_taken(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    child, temp = _hold_temp_in_child(target)
    try:
        assert remove_stale_temps(target) == []
        with atomic_output(target) as handle:  # a second writer of the same file gets a name of its own
            handle.write(b"mine")
        assert target.read_bytes() == b"mine"
        assert temp.stat().st_size == 15000
    finally:
        child.kill()
        child.communicate()
    assert remove_stale_temps(target) == [temp]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
