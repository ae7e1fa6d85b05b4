"""Long model-file operations stop when their progress is cancelled, leaving no output and no temporary file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdhub.errors import Interrupted
from sdhub.ops.convert import convert, convert_paths
from sdhub.ops.hashing import hash_model
from sdhub.ops.prune import prune
from sdhub.testing import factory
from sdhub.testing.stopping import CancelWhen


def halfway(task) -> bool:
    return bool(task.total) and task.completed >= task.total / 2


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.sd1_checkpoint(tmp_path_factory.mktemp("stop-ops") / "model.ckpt", fmt="ckpt", ema=True)


def folder_with(tmp_path: Path, *sources: Path) -> Path:
    for source in sources:
        os.link(source, tmp_path / source.name)
    return tmp_path


@pytest.mark.parametrize("operation", ["convert", "prune"])
def test_a_cancel_mid_write_leaves_no_output(operation: str, checkpoint: Path, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, checkpoint)
    progress = CancelWhen(halfway)
    run = convert if operation == "convert" else prune
    with pytest.raises(Interrupted) as stopped:
        run(folder / "model.ckpt", folder / "out.safetensors", progress=progress)
    assert str(stopped.value) == "cancelled; no output written (out.safetensors)"
    assert progress.cancelled_at[0] == "Writing out.safetensors"
    assert sorted(os.listdir(folder)) == ["model.ckpt"]  # no output, no temporary file


def test_a_cancelled_batch_conversion_keeps_the_files_done_before(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        factory.embedding(tmp_path / f"{name}.pt", seed=ord(name))
    progress = CancelWhen(lambda task: task.description == "Writing b.safetensors" and halfway(task))
    with pytest.raises(Interrupted) as stopped:
        convert_paths([tmp_path], progress=progress)
    assert str(stopped.value) == ("cancelled; no output written (b.safetensors); "
                                  "1 of 3 files converted before it (a.safetensors)")
    assert sorted(os.listdir(tmp_path)) == ["a.pt", "a.safetensors", "b.pt", "c.pt"]


def test_a_cancelled_hash_stops_within_one_buffer(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    progress = CancelWhen(lambda task: task.completed > 0)
    with pytest.raises(Interrupted, match="^cancelled$"):
        hash_model(big, progress=progress)
    [task] = progress.tasks
    assert task.completed < task.total / 2  # stopped after its first 4 MiB buffer, not at the end


def test_a_background_source_hash_stops_with_the_write(checkpoint: Path, tmp_path: Path) -> None:
    from sdhub.ops.hashing import BackgroundSha256
    from sdhub.progress import RecordingProgress

    progress = RecordingProgress()
    progress.cancel()
    digest = BackgroundSha256(checkpoint, progress=progress)
    with pytest.raises(Interrupted):
        digest.result()
