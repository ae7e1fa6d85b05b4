"""The library commands as a user types them: scan, ls, search, show, dupes, rm, tag, roots, export-sidecars."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from sdhub.config import init_home
from sdhub.testing import factory


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("templates")
    return {
        "checkpoint": factory.sd1_checkpoint(folder / "dreamy.safetensors", seed=11),
        "lora": factory.lora(folder / "inkstyle.safetensors", seed=12),
        "embedding": factory.embedding(folder / "badhands.pt", seed=13),
    }


@pytest.fixture
def home(tmp_path: Path, templates: dict[str, Path]) -> Path:
    """An A1111 install with a checkpoint, a LoRA, an embedding and a second copy of the checkpoint."""
    home = init_home(tmp_path / "webui", "a1111")
    for kind, template in templates.items():
        shutil.copyfile(template, home.folder(kind) / template.name)
    shutil.copyfile(templates["checkpoint"], home.folder("checkpoint") / "dreamy-copy.safetensors")
    return home.root


def scan(run_cli, home: Path) -> dict:
    result = run_cli("--home", home, "scan", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_scan_then_rescan(run_cli, home: Path) -> None:
    first = scan(run_cli, home)
    assert first["files_seen"] == 4 and first["files_read"] == 4 and first["assets_added"] == 3
    second = scan(run_cli, home)
    assert second["files_read"] == 0 and second["bytes_read"] == 0 and second["files_unchanged"] == 4
    table = run_cli("--home", home, "scan")
    assert table.exit_code == 0 and "unchanged" in table.stdout


def test_ls_filters_by_kind_and_sorts(run_cli, home: Path) -> None:
    scan(run_cli, home)
    listing = json.loads(run_cli("--home", home, "ls", "--json", "--sort", "size").stdout)
    assert [a["kind"] for a in listing][0] == "checkpoint"
    loras = json.loads(run_cli("--home", home, "ls", "--kind", "lora", "--json").stdout)
    assert [a["name"] for a in loras] == ["inkstyle"]
    table = run_cli("--home", home, "ls")
    assert "inkstyle" in table.stdout and "badhands" in table.stdout
    bad = run_cli("--home", home, "ls", "--sort", "colour")
    assert bad.exit_code == 2 and bad.stderr.startswith("sdhub: error:") and "Traceback" not in bad.stderr


def test_show_by_legacy_hash_autov2_and_name_prefix(run_cli, home: Path) -> None:
    scan(run_cli, home)
    by_path = json.loads(run_cli("--home", home, "show", home / "models/Stable-diffusion/dreamy.safetensors",
                                 "--json").stdout)
    hashes = by_path["hashes"]
    for ref in (hashes["legacy_model_hash"], hashes["autov2"].upper(), "dream"):
        result = run_cli("--home", home, "show", ref, "--json")
        assert result.exit_code == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["id"] == by_path["id"]
        assert sorted(f["path"] for f in shown["files"]) == sorted([
            str(home / "models/Stable-diffusion/dreamy.safetensors"),
            str(home / "models/Stable-diffusion/dreamy-copy.safetensors")])
    table = run_cli("--home", home, "show", hashes["legacy_model_hash"])
    assert "dreamy-copy.safetensors" in table.stdout and hashes["sha256"] in table.stdout


def test_show_errors_are_one_line(run_cli, home: Path) -> None:
    scan(run_cli, home)
    missing = run_cli("--home", home, "show", "nothing-like-this")
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1
    assert "nothing in the catalog matches" in missing.stderr


def test_search_finds_tags(run_cli, home: Path) -> None:
    scan(run_cli, home)
    tagged = run_cli("--home", home, "tag", "inkstyle", "calligraphy", "bw", "--json")
    assert tagged.exit_code == 0 and json.loads(tagged.stdout)["tags"] == ["calligraphy", "bw"]
    found = json.loads(run_cli("--home", home, "search", "callig", "--json").stdout)
    assert [a["name"] for a in found] == ["inkstyle"]
    assert "inkstyle" in run_cli("--home", home, "search", "callig").stdout


def test_dupes_link_hard_frees_bytes_and_keeps_paths(run_cli, home: Path) -> None:
    scan(run_cli, home)
    report = json.loads(run_cli("--home", home, "dupes", "--json").stdout)
    size = (home / "models/Stable-diffusion/dreamy.safetensors").stat().st_size
    assert report["wasted_bytes"] == size and len(report["groups"]) == 1
    linked = run_cli("--home", home, "dupes", "--link", "hard", "--json")
    assert linked.exit_code == 0, linked.stderr
    assert json.loads(linked.stdout)["bytes_freed"] == size
    a, b = (home / "models/Stable-diffusion" / name for name in ("dreamy.safetensors", "dreamy-copy.safetensors"))
    assert a.exists() and b.exists() and os.path.samefile(a, b)
    assert json.loads(run_cli("--home", home, "dupes", "--json").stdout)["wasted_bytes"] == 0
    wrong = run_cli("--home", home, "dupes", "--link", "soft")
    assert wrong.exit_code == 2 and "Traceback" not in wrong.stderr


def test_dupes_delete(run_cli, home: Path) -> None:
    scan(run_cli, home)
    result = run_cli("--home", home, "dupes", "--delete")
    assert result.exit_code == 0, result.stderr
    remaining = [p for p in (home / "models/Stable-diffusion").iterdir() if p.suffix == ".safetensors"]
    assert len(remaining) == 1


def test_rm_with_files(run_cli, home: Path) -> None:
    scan(run_cli, home)
    unconfirmed = run_cli("--home", home, "rm", "badhands", "--files", "--json")  # stdin is no terminal here
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.stderr and unconfirmed.stdout == ""
    assert (home / "embeddings/badhands.pt").exists() and run_cli("--home", home, "show", "badhands").exit_code == 0
    result = run_cli("--home", home, "rm", "badhands", "--files", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["files_deleted"] == [str(home / "embeddings/badhands.pt")]
    assert not (home / "embeddings/badhands.pt").exists()
    assert run_cli("--home", home, "show", "badhands").exit_code == 1


def test_roots_add_list_remove(run_cli, home: Path, tmp_path: Path, templates) -> None:
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    shutil.copyfile(templates["lora"], downloads / "copy.safetensors")
    added = run_cli("--home", home, "roots", "add", downloads, "--kind", "lora")
    assert added.exit_code == 0, added.stderr
    roots = json.loads(run_cli("--home", home, "roots", "--json").stdout)
    assert {"path": str(downloads), "kind": "lora", "source": "added", "exists": True} in roots
    assert scan(run_cli, home)["files_seen"] == 5
    assert run_cli("--home", home, "roots", "remove", downloads).exit_code == 0
    assert run_cli("--home", home, "roots", "remove", downloads).exit_code == 1
    assert run_cli("--home", home, "roots", "add", tmp_path / "nope").exit_code == 2
    assert run_cli("--home", home, "roots", "frobnicate").exit_code == 2


def test_export_sidecars(run_cli, home: Path) -> None:
    scan(run_cli, home)
    (home / "models/Lora/inkstyle.json").write_text(json.dumps({"activation text": "inkstyle"}))
    scan(run_cli, home)
    result = run_cli("--home", home, "export-sidecars", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads((home / "models/Lora/inkstyle.json").read_text())
    assert data["activation text"] == "inkstyle" and data["sd version"] in ("SD1", "Unknown")


def test_commands_explain_themselves(run_cli) -> None:
    for command in ("scan", "ls", "search", "show", "dupes", "rm", "tag", "roots", "export-sidecars"):
        result = run_cli(command, "--help")
        assert result.exit_code == 0 and "Example:" in result.stdout, command


def test_show_lists_the_files_of_a_pipeline_folder(run_cli, home: Path, pipeline_files: dict[str, bytes]) -> None:
    folder = home / "models/Stable-diffusion/tiny-pipeline"
    for name, data in pipeline_files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    scan(run_cli, home)
    table = run_cli("--home", home, "show", "tiny-pipeline")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    unet = next(line for line in lines if "unet/diffusion_pytorch_model.safetensors" in line)
    assert "contains" in unet
    assert sum("contains" in line for line in lines) == len(pipeline_files)
