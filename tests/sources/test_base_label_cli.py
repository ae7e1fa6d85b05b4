"""Civitai's base-model label and the family the tensors prove, as a user meets them on the command line.

A LoRA Civitai labels "Pony" is an SDXL LoRA: ``sdhub ls --base sdxl`` lists it, ``--base pony``
lists only such LoRAs, and ``ls``/``show`` say both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer, civitai_model

PONY = (7100, 71001, 710011)  # model, version, file ids
ILLUSTRIOUS = (7200, 72001, 720011)


@pytest.fixture
def site(civitai: CivitaiServer, tmp_path: Path) -> CivitaiServer:
    """Civitai serving two real SDXL LoRAs (factory-made), one labelled Pony and one Illustrious."""
    made = tmp_path / "made"
    made.mkdir()
    for (model_id, version_id, file_id), label, seed in ((PONY, "Pony", 1), (ILLUSTRIOUS, "Illustrious", 2)):
        name = f"{label.lower()}-eyes.safetensors"
        lora = factory.lora(made / name, base="sdxl", seed=seed)
        civitai.add_model(civitai_model(model_id, version_id, file_id, name=f"{label} Eyes", file_name=name,
                                        base=label), {file_id: lora})
    return civitai


def _listed(run_cli, home: Home, *options: str) -> dict[str, tuple]:
    result = run_cli("--home", home.root, "ls", *options, "--json")
    assert result.exit_code == 0, result.stderr
    return {item["name"]: (item["kind"], item["base_model"], item["base_label"]) for item in json.loads(result.stdout)}


def test_ls_base_sdxl_lists_a_lora_civitai_labels_pony(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    got = run_cli("--home", tmp_home.root, "get", f"civitai:{PONY[0]}@{PONY[1]}", "--json")
    assert got.exit_code == 0, got.stderr
    result = json.loads(got.stdout)["results"][0]
    assert (result["remote"]["base_model"], result["remote"]["base_label"]) == ("sdxl", "Pony")
    # A plain SDXL LoRA of the user's own, never seen by Civitai, beside it.
    factory.lora(tmp_home.folder("lora") / "homemade-xl.safetensors", base="sdxl", seed=9)
    assert run_cli("--home", tmp_home.root, "scan").exit_code == 0

    assert _listed(run_cli, tmp_home, "--base", "sdxl") == {
        "Pony Eyes": ("lora", "sdxl", "Pony"),
        "homemade-xl": ("lora", "sdxl", "stable-diffusion-xl-v1-base/lora"),  # its own metadata's label
    }
    assert _listed(run_cli, tmp_home, "--base", "pony") == {"Pony Eyes": ("lora", "sdxl", "Pony")}
    assert _listed(run_cli, tmp_home, "--base", "sd1") == _listed(run_cli, tmp_home, "--base", "SD 1.5") == {}

    table = run_cli("--home", tmp_home.root, "ls", "--kind", "lora", "--format", "tsv")
    rows = {row.split("\t")[1]: row.split("\t")[4] for row in table.stdout.splitlines()[1:]}
    assert rows == {"Pony Eyes": "sdxl (Pony)", "homemade-xl": "sdxl"}
    shown = run_cli("--home", tmp_home.root, "show", "Pony Eyes")
    assert shown.exit_code == 0, shown.stderr
    assert any(line.split() == ["base", "model", "sdxl"] for line in shown.stdout.splitlines())
    assert any(line.split() == ["base", "label", "Pony", "(civitai)"] for line in shown.stdout.splitlines())
    details = json.loads(run_cli("--home", tmp_home.root, "show", "Pony Eyes", "--json").stdout)
    assert (details["base_model"], details["base_model_from"], details["base_label"], details["base_label_from"]) == (
        "sdxl", "detection", "Pony", "civitai")


def test_civitai_sync_writes_the_label_and_search_narrows_by_it(site: CivitaiServer, tmp_home: Home,
                                                                run_cli) -> None:
    folder = tmp_home.folder("lora")
    folder.mkdir(parents=True, exist_ok=True)
    # The same bytes Civitai serves, found in the library under another name: sync finds them by hash.
    (folder / "eyes-i-found.safetensors").write_bytes(site.served(ILLUSTRIOUS[2]).path.read_bytes())
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    synced = run_cli("--home", tmp_home.root, "civitai", "sync", "--json")
    assert synced.exit_code == 0, synced.stderr
    assert _listed(run_cli, tmp_home, "--base", "Illustrious") == {"Illustrious Eyes": ("lora", "sdxl", "Illustrious")}
    assert _listed(run_cli, tmp_home, "--base", "pony") == {}
    found = run_cli("--home", tmp_home.root, "search", "eyes", "--base", "sdxl", "--json")
    assert [item["name"] for item in json.loads(found.stdout)] == ["Illustrious Eyes"]
    assert json.loads(run_cli("--home", tmp_home.root, "search", "illustrious", "--json").stdout)[0]["base_label"] == (
        "Illustrious")


def test_an_unknown_base_is_one_line_with_the_choices(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    assert run_cli("--home", tmp_home.root, "get", f"civitai:{PONY[0]}@{PONY[1]}").exit_code == 0
    result = run_cli("--home", tmp_home.root, "ls", "--base", "xl")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "unknown base model 'xl'" in result.stderr and "labels in this catalog: Pony" in result.stderr
