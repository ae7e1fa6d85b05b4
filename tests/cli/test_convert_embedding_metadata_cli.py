"""Converting an A1111 embedding keeps what A1111 pickled beside its vectors, as safetensors metadata."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from sdhub.testing import factory, writers


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def test_name_step_and_checkpoint_go_into_the_metadata(tmp_path: Path, run_cli) -> None:
    source = factory.embedding(tmp_path / "inkstyle.pt", fmt="pt")
    result = run_cli("convert", source)
    assert result.exit_code == 0, result.stderr
    metadata = _metadata(tmp_path / "inkstyle.safetensors")
    # The keys and values of A1111's Embedding.save, as text (safetensors metadata holds only strings).
    assert {k: metadata[k] for k in ("name", "step", "sd_checkpoint", "sd_checkpoint_name")} == {
        "name": "inkstyle", "step": "500", "sd_checkpoint": "cc6cb27103", "sd_checkpoint_name": "v1-5-pruned-emaonly"}
    assert metadata["format"] == "pt" and metadata["sdhub.converted_from"] == "inkstyle.pt"


def test_empty_entries_are_left_out_and_other_scalars_kept(tmp_path: Path, run_cli) -> None:
    source = writers.save_pickle(tmp_path / "fresh.pt", {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": torch.zeros(2, 768)},
        "name": "fresh", "step": 0, "sd_checkpoint": None, "sd_checkpoint_name": None,
        "format": "evil",  # never replaces sdhub's own key
        "learning_rate": 0.005,
    })
    assert run_cli("convert", source).exit_code == 0
    metadata = _metadata(tmp_path / "fresh.safetensors")
    assert metadata["name"] == "fresh" and metadata["step"] == "0" and metadata["learning_rate"] == "0.005"
    assert "sd_checkpoint" not in metadata and "sd_checkpoint_name" not in metadata
    assert metadata["format"] == "pt"
