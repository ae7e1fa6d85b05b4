"""``sdhub mv NAME --kind KIND`` / ``--to FOLDER``: a catalogued file and its sidecars move, the catalog follows."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import sdhub
from sdhub.catalog import Catalog
from sdhub.catalog.kind_choice import recorded_choice
from sdhub.config import Home

SIDECARS = (".civitai.info", ".preview.png", ".json")


def _kept_download(home: Home, name: str = "mystery") -> Path:
    """A file of unknown kind kept in downloads/, with the sidecars a get or A1111 writes, catalogued."""
    path = home.downloads_dir / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"mystery.weight": torch.ones(3, 3)}, str(path))
    path.with_suffix(".civitai.info").write_text(json.dumps({"id": 7, "model": {"name": "Mystery", "type": "Other"}}))
    path.with_suffix(".preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    path.with_suffix(".json").write_text(json.dumps({"notes": "from a friend"}))
    with Catalog(home) as catalog:
        catalog.add_file(path)  # as get does: downloads/ is not a folder scans walk
    return path


def _inspect(home: Home, ref: str) -> str:
    with Catalog(home) as catalog:
        asset = catalog.find(ref)
        return catalog.db.execute("SELECT inspect FROM assets WHERE id = ?", [asset.id]).fetchone()[0]


def test_mv_kind_files_a_kept_download_with_its_sidecars(tmp_home: Home, run_cli) -> None:
    kept = _kept_download(tmp_home)
    result = run_cli("--home", tmp_home.root, "mv", "mystery.safetensors", "--kind", "controlnet", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    target = tmp_home.folder("controlnet") / "mystery.safetensors"
    assert report["moved"] == [{"from": str(kept), "to": str(target)}]
    assert report["kind"] == "controlnet" and report["previous_kind"] == "other" and report["kind_set_by_user"]
    assert target.is_file() and not kept.exists()
    for suffix in SIDECARS:
        assert target.with_suffix(suffix).is_file() and not kept.with_suffix(suffix).exists()
    assert sorted(report["sidecars"]) == sorted(str(target.with_suffix(s)) for s in SIDECARS)

    with Catalog(tmp_home) as catalog:
        asset = catalog.find("mystery")
        assert [f.path for f in asset.files] == [str(target)] and asset.kind == "controlnet"
        # The move is the user's word: a full rescan reads the file again and keeps the kind.
        catalog.scan(full=True)
        assert catalog.find("mystery").kind == "controlnet"
    choice = recorded_choice(_inspect(tmp_home, "mystery"))
    assert choice == {"kind": "controlnet", "by": "user", "evidence": "set by the user"}


def test_the_users_kind_wins_over_the_tensors(tmp_home: Home, run_cli) -> None:
    path = tmp_home.folder("lora") / "odd.safetensors"
    module = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{module}.lora_down.weight": torch.zeros(4, 320), f"{module}.lora_up.weight": torch.zeros(320, 4),
               f"{module}.alpha": torch.tensor(4.0)}, str(path))  # the tensors say: a kohya LoRA
    data = path.read_bytes()
    assert run_cli("--home", tmp_home.root, "scan").exit_code == 0
    result = run_cli("--home", tmp_home.root, "mv", "odd", "--kind", "ip-adapter")
    assert result.exit_code == 0, result.stderr
    assert "moved:" in result.stderr and "now filed as ip-adapter (was lora)" in " ".join(result.stderr.split())
    assert (tmp_home.folder("ip-adapter") / "odd.safetensors").read_bytes() == data
    assert run_cli("--home", tmp_home.root, "scan", "--full").exit_code == 0
    shown = json.loads(run_cli("--home", tmp_home.root, "show", "odd", "--json").stdout)
    assert shown["kind"] == "ip-adapter"
    assert json.loads(_inspect(tmp_home, "odd"))["kind"] == "lora"  # what the tensors say is kept beside it


def test_mv_to_never_overwrites_a_file_already_there(tmp_home: Home, tmp_path: Path) -> None:
    _kept_download(tmp_home)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mystery.safetensors").write_bytes(b"someone else's file")
    report = sdhub.move("mystery", tmp_home, to=elsewhere)
    assert isinstance(report, sdhub.MoveReport)
    assert report.moved[0]["to"] == str(elsewhere / "mystery-2.safetensors")
    assert (elsewhere / "mystery.safetensors").read_bytes() == b"someone else's file"
    assert (elsewhere / "mystery-2.civitai.info").is_file()
    assert not report.kind_set_by_user and report.kind == "other"  # --to alone says nothing of the kind


def _other_file_system(near: Path) -> Path | None:
    for candidate in ("/dev/shm", tempfile.gettempdir()):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK) \
                and os.stat(candidate).st_dev != os.stat(near).st_dev:
            return Path(candidate)
    return None


def test_mv_across_file_systems_copies_then_removes(tmp_home: Home) -> None:
    other = _other_file_system(tmp_home.root)
    if other is None:
        pytest.skip("no second writable file system here")
    kept = _kept_download(tmp_home)
    data = kept.read_bytes()
    folder = Path(tempfile.mkdtemp(dir=other, prefix="sdhub-mv-test-"))
    try:
        report = sdhub.move(str(kept), tmp_home, to=folder)
        target = folder / "mystery.safetensors"
        assert report.moved == [{"from": str(kept), "to": str(target)}]
        assert target.read_bytes() == data and not kept.exists()
        assert target.with_suffix(".json").read_text() == json.dumps({"notes": "from a friend"})
        assert not kept.with_suffix(".json").exists()
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"mystery{s}" for s in (".safetensors", *SIDECARS))
        with Catalog(tmp_home) as catalog:
            assert [f.path for f in catalog.find("mystery").present_files] == [str(target)]
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def test_mv_errors_are_one_clear_line(tmp_home: Home, run_cli, tmp_path: Path) -> None:
    kept = _kept_download(tmp_home)
    cases = [
        (("mv", "mystery"), 2, "--kind KIND"),
        (("mv", "mystery", "--kind", "motion"), 2, "unknown kind 'motion'"),
        (("mv", "nothing-like-this", "--kind", "lora"), 1, "nothing in the catalog matches"),
        (("mv", "mystery", "--to", kept), 2, "is a file, not a folder"),
    ]
    for args, code, words in cases:
        result = run_cli("--home", tmp_home.root, *args)
        assert result.exit_code == code, (args, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert kept.is_file()  # nothing moved by a refused command

    copy = tmp_home.folder("vae") / "mystery.safetensors"
    copy.write_bytes(kept.read_bytes())
    assert run_cli("--home", tmp_home.root, "scan").exit_code == 0
    several = run_cli("--home", tmp_home.root, "mv", "mystery", "--kind", "controlnet")
    assert several.exit_code == 2 and "has 2 copies" in several.stderr and "by its path" in several.stderr
    assert run_cli("--home", tmp_home.root, "mv", copy, "--kind", "controlnet").exit_code == 0
    assert (tmp_home.folder("controlnet") / "mystery.safetensors").is_file() and kept.is_file()
