"""The Asuka test checks the model before it draws, and on a CPU says how long drawing will take."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sdhub.generate.generate import ResolvedFile
from sdhub.generate.reference_tests import ASUKA_MODEL_HASH, WrongModelError, check_asuka_model, run_asuka
from sdhub.progress import RecordingProgress
from sdhub.testing import factory


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint that is not NovelAI's animefull-final-pruned (the factory's tiny SD1)."""
    return factory.sd1_checkpoint(tmp_path_factory.mktemp("asuka") / "not-animefull.safetensors")


def test_a_wrong_model_is_refused_before_anything_is_drawn(run_cli, tmp_home, other_model: Path) -> None:
    started = time.perf_counter()
    result = run_cli("--home", tmp_home.root, "test", "asuka", "--model", other_model, "--json")
    assert time.perf_counter() - started < 30  # the hash, not 28 steps at 512x512 (minutes on a CPU)
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdhub: error: not-animefull.safetensors has model hash ")
    assert f"not {ASUKA_MODEL_HASH}" in lines[0] and "animefull-final-pruned" in lines[0]
    assert "nothing was drawn" in lines[0] and "--force" in lines[0]
    assert not (tmp_home.outputs_dir / "tests").exists() or not any((tmp_home.outputs_dir / "tests").iterdir())


def test_help_names_force(run_cli) -> None:
    result = run_cli("test", "asuka", "--help")
    assert result.exit_code == 0 and "--force" in result.stdout


def test_the_test_model_passes_the_check_and_a_folder_gets_a_note(tmp_path: Path) -> None:
    assert check_asuka_model(ResolvedFile(tmp_path / "animefull-final-pruned.ckpt", "ab" * 32, ASUKA_MODEL_HASH)) is None
    note = check_asuka_model(ResolvedFile(tmp_path))
    assert note is not None and "cannot be checked" in note
    with pytest.raises(WrongModelError) as refused:
        check_asuka_model(ResolvedFile(tmp_path / "other.ckpt", "cd" * 32, "0badc0de"))
    assert refused.value.exit_code == 1 and refused.value.actual_hash == "0badc0de"


def test_forced_on_a_cpu_it_says_how_long_before_and_after_the_first_step(tmp_home, other_model: Path) -> None:
    progress = RecordingProgress()
    result = run_asuka(tmp_home, str(other_model), device="cpu", progress=progress, force=True,
                       overrides={"steps": 3, "width": 64, "height": 64})
    before, forced_note, estimate = None, None, None
    for index, text in enumerate(progress.messages):
        if "draws 3 steps at 64x64 on the CPU" in text:
            before = index
        if "drawing anyway (--force)" in text:
            forced_note = index
        if text.startswith("first step took ") and "for all 3 steps" in text:
            estimate = index
    assert forced_note is not None and before is not None and estimate is not None, progress.messages
    assert forced_note < before < estimate
    sampling = [task for task in progress.tasks if task.unit == "steps"]
    assert sampling and sampling[0].completed == 3 and sampling[0].finished
    assert result.verdict in ("wrong-model", "black", "uniform")  # judged, and never a pass
    assert any("the test expects " + ASUKA_MODEL_HASH in reason for reason in result.reasons)
    assert Path(result.image_path).is_file()
    assert json.dumps(result.to_dict())  # still the --json shape
