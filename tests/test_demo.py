"""The demo: a newcomer's first run drives every capability on a tiny model, offline."""

from __future__ import annotations

import json
from pathlib import Path


def test_demo_runs_the_whole_workflow_and_leaves_models_to_play_with(tmp_path: Path, run_cli) -> None:
    home = tmp_path / "demo-home"
    result = run_cli("--home", home, "demo", "--json")
    assert result.exit_code == 0, result.stderr
    first_listing = json.loads(run_cli("--home", home, "ls", "--json").stdout)
    # scripts/demo runs in the repository's own home, so a second run must work there too.
    result = run_cli("--home", home, "demo", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    listing = json.loads(run_cli("--home", home, "ls", "--json").stdout)
    assert sorted((a["name"], a["sha256"]) for a in listing) == sorted((a["name"], a["sha256"]) for a in first_listing)
    assert len(listing) == 3 and not any(a["missing"] for a in listing)
    steps = {step["title"]: step["data"] for step in report["steps"]}

    trap = next(data for title, data in steps.items() if "booby-trapped" in title)
    assert trap["payload_ran"] is False and trap["outputs"] == []
    assert "posix.system" in trap["refusal"]

    converted = next(data for title, data in steps.items() if title.startswith("Convert"))
    assert converted["verified"] is True
    assert "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" in converted["placeholders"]

    inspected = next(data for title, data in steps.items() if title.startswith("Inspect"))
    assert inspected["kind"] == "checkpoint" and inspected["architecture"] == "sd1" and inspected["ema"] is True

    pruned = next(data for title, data in steps.items() if title.startswith("Prune"))
    assert pruned["bytes_after"] < pruned["bytes_before"] / 3  # EMA dropped and fp16

    generated = next(data for title, data in steps.items() if title.startswith("Generate"))
    assert "Lora hashes:" in generated["infotext"] and "TI hashes:" in generated["infotext"]
    assert Path(generated["images"][0]).is_file()

    smoke = next(data for title, data in steps.items() if "smoke test" in title)
    assert smoke["verdict"] == "pass", smoke["reasons"]

    shown = next(data for title, data in steps.items() if title.startswith("Everything known"))
    assert shown["ancestors"], "the pruned model should remember the file it came from"

    for left in report["left_in_home"]:
        assert (home / left).is_file()
    assert (home / "models" / "sdhub-demo-tiny.safetensors").is_file()
