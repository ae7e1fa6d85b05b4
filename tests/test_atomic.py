"""Atomic output: a file appears under its final name complete, or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdhub.atomic import TEMP_PREFIX, atomic_output


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
