"""docs/python-api.md is run as written: its python blocks, in order, in an empty folder, offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def python_blocks(markdown: str) -> list[str]:
    """The fenced ```python blocks of ``markdown``, in order (other fences are prose)."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_python_api_page_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 10
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "python_api_docs"}
    for number, block in enumerate(blocks, 1):
        # Named after the block, so a failure's traceback says which example broke.
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    shown = capsys.readouterr().out
    assert "converted" in shown and "Seed: 1234" in shown
    assert "exit code" in shown  # the errors section caught what it meant to
    assert (tmp_path / "my-library" / "models" / "tiny-fox.safetensors").is_file()
