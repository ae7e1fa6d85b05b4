"""A new user's small stumbles, fixed: exit codes for missing files, batches that carry on, messages that
say what to do, no raw markup, prune on folders / LoRAs / embeddings, rm that asks, doctor, offline get."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdhub.config import init_home
from sdhub.testing import factory


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("first-day")
    factory.sd1_checkpoint(folder / "tinymix.ckpt", fmt="ckpt", ema=True, training_state=True)
    factory.lora(folder / "inkstyle.safetensors", seed=4)
    factory.embedding(folder / "badhands.pt", seed=5)
    factory.embedding(folder / "goodhands.safetensors", fmt="safetensors", seed=6)
    return folder


@pytest.mark.parametrize("command", [["inspect"], ["convert"], ["prune"], ["hash"], ["scan-pickle"]])
def test_a_missing_file_is_bad_input_exit_2(run_cli, tmp_path: Path, command: list[str]) -> None:
    result = run_cli(*command, tmp_path / "nope.ckpt")
    assert result.exit_code == 2
    assert result.stderr.startswith("sdhub: error:") and "nope.ckpt: no such file" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_hash_carries_on_past_a_missing_file_and_fails_at_the_end(run_cli, models: Path, tmp_path: Path) -> None:
    result = run_cli("hash", models / "tinymix.ckpt", tmp_path / "missing.safetensors", models / "inkstyle.safetensors",
                     "--json", "--no-components")
    assert result.exit_code == 2
    hashed = json.loads(result.stdout)
    assert [Path(entry["path"]).name for entry in hashed] == ["tinymix.ckpt", "inkstyle.safetensors"]
    assert "missing.safetensors: no such file" in result.stderr and "1 of 3 files not hashed" in result.stderr
    text = run_cli("hash", tmp_path / "missing.safetensors", models / "inkstyle.safetensors", "--no-components")
    assert text.exit_code == 2 and "inkstyle.safetensors" in text.stdout and "sha256" in text.stdout


def test_converting_a_safetensors_says_it_already_is_one_and_what_to_do(run_cli, tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "tinymix.safetensors")
    plain = run_cli("convert", model)
    assert plain.exit_code == 2 and "would be overwritten" not in plain.stderr
    assert "tinymix.safetensors is already .safetensors: nothing to convert" in plain.stderr
    assert "--dtype fp16 -o tinymix-fp16.safetensors" in plain.stderr and "sdhub prune" in plain.stderr
    cast = run_cli("convert", model, "--dtype", "fp16")
    assert cast.exit_code == 2 and "to store it as fp16, name the new file: -o tinymix-fp16.safetensors" in cast.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tinymix.safetensors"]
    done = run_cli("convert", model, "--dtype", "fp16", "-o", tmp_path / "tinymix-fp16.safetensors")
    assert done.exit_code == 0, done.stderr
    assert (tmp_path / "tinymix-fp16.safetensors").is_file()


def test_inspect_prints_words_not_markup(run_cli, models: Path, tmp_path: Path) -> None:
    result = run_cli("inspect", models / "tinymix.ckpt", "--quick")
    assert result.exit_code == 0, result.stderr
    assert "pickle_placeholders" in result.stdout and "info" in result.stdout
    assert "[dim]" not in result.stdout and "[/]" not in result.stdout
    bracketed = shutil.copyfile(models / "inkstyle.safetensors", tmp_path / "ink[v2].safetensors")
    for command in ("inspect", "hash"):
        shown = run_cli(command, bracketed, *(["--quick"] if command == "inspect" else []))
        assert shown.exit_code == 0 and str(bracketed) in shown.stdout and "\\[" not in shown.stdout


def test_file_names_with_brackets_are_printed_as_they_are(run_cli, models: Path, tmp_path: Path) -> None:
    import contextlib
    import io

    from sdhub.cli.progress import RichProgress

    odd = shutil.copyfile(models / "tinymix.ckpt", tmp_path / "[red]tinymix.ckpt")
    result = run_cli("convert", odd)
    assert result.exit_code == 0, result.stderr
    assert f"converted {odd} -> {odd.with_suffix('.safetensors')}" in result.stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err), RichProgress() as progress:  # what core code reports as it works
        progress.message("[bold]x.safetensors is already in the library\x1b[2J")
    assert "[bold]x.safetensors is already in the library\\x1b[2J" in err.getvalue()


def test_pruning_a_lora_says_nothing_about_a_vae(run_cli, models: Path, tmp_path: Path) -> None:
    out = tmp_path / "inkstyle-small.safetensors"
    text = run_cli("prune", models / "inkstyle.safetensors", "-o", out)
    assert text.exit_code == 0, text.stderr
    assert "VAE" not in text.stderr and "EMA" not in text.stderr and "fp16" in text.stderr and out.is_file()
    as_json = run_cli("prune", models / "inkstyle.safetensors", "-o", tmp_path / "again.safetensors", "--json")
    report = json.loads(as_json.stdout)
    assert (report["vae"], report["ema"]) == ("none", "none")
    checkpoint = run_cli("prune", models / "tinymix.ckpt", "-o", tmp_path / "ckpt.safetensors", "--vae", "drop")
    assert "VAE dropped" in checkpoint.stderr and "EMA used" in checkpoint.stderr


def test_prune_takes_a_folder_as_its_output_like_convert(run_cli, models: Path, tmp_path: Path) -> None:
    existing = tmp_path / "models"
    existing.mkdir()
    result = run_cli("prune", models / "tinymix.ckpt", "-o", existing)
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in existing.iterdir()] == ["tinymix-pruned.safetensors"]
    new = tmp_path / "new-folder"
    slash = run_cli("prune", models / "tinymix.ckpt", "-o", f"{new}/")
    assert slash.exit_code == 0, slash.stderr
    assert (new / "tinymix-pruned.safetensors").is_file()
    again = run_cli("prune", models / "tinymix.ckpt", "-o", existing)
    assert again.exit_code == 2 and "tinymix-pruned.safetensors already exists" in again.stderr
    bad_dtype = run_cli("prune", models / "tinymix.ckpt", "-o", existing, "--dtype", "fp7")
    assert bad_dtype.exit_code == 2 and "--dtype must be fp16, bf16, fp32, fp8 or keep, not 'fp7'" in bad_dtype.stderr
    refused = run_cli("prune", models / "tinymix.ckpt", "-o", tmp_path / "nope" / "x.ckpt")
    assert refused.exit_code == 2 and "give the output that extension" in refused.stderr
    assert not (tmp_path / "nope").exists()


def test_prune_refuses_an_embedding_and_writes_nothing_beside_it(run_cli, models: Path, tmp_path: Path) -> None:
    home = init_home(tmp_path / "webui", "a1111")
    for name in ("badhands.pt", "goodhands.safetensors"):
        embedding = shutil.copyfile(models / name, home.folder("embedding") / name)
        result = run_cli("prune", embedding)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
        assert f"{name} is a textual-inversion embedding: there is nothing to prune" in result.stderr
        assert "loaded by A1111 as another embedding" in result.stderr
    assert "sdhub convert badhands.pt --delete-original" in run_cli("prune", embedding.with_name("badhands.pt")).stderr
    assert sorted(p.name for p in home.folder("embedding").iterdir()) == ["badhands.pt", "goodhands.safetensors"]


def _sdhub_on_a_terminal(home: Path, args: list[str], answer: str) -> subprocess.CompletedProcess:
    """Run sdhub with a real terminal on stdin and type ``answer``."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "sdhub", "--home", str(home), *args], stdin=terminal,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(controller, answer.encode() + b"\n")
        out, err = process.communicate(timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_rm_files_asks_first(run_cli, models: Path, tmp_path: Path) -> None:
    home = init_home(tmp_path / "webui", "a1111")
    lora = shutil.copyfile(models / "inkstyle.safetensors", home.folder("lora") / "inkstyle.safetensors")
    assert run_cli("--home", home.root, "scan").exit_code == 0
    piped = run_cli("--home", home.root, "rm", "inkstyle", "--files")
    assert piped.exit_code == 2 and "add --yes to confirm" in piped.stderr and lora.exists()
    declined = _sdhub_on_a_terminal(home.root, ["rm", "inkstyle", "--files"], "n")
    assert declined.returncode == 1, declined.stderr
    assert str(lora) in declined.stderr and "Delete 1 file of inkstyle" in declined.stderr
    assert "nothing removed" in declined.stderr and lora.exists()
    assert run_cli("--home", home.root, "show", "inkstyle").exit_code == 0
    accepted = _sdhub_on_a_terminal(home.root, ["rm", "inkstyle", "--files"], "y")
    assert accepted.returncode == 0, accepted.stderr
    assert f"deleted {lora}" in accepted.stderr and not lora.exists()


def test_doctor_lists_torch_once(run_cli, tmp_home) -> None:
    result = run_cli("--home", tmp_home.root, "doctor", "--json")
    names = [check["name"] for check in json.loads(result.stdout)["checks"]]
    assert names.count("torch") == 1 and names.count("device") == 1


def test_doctor_names_catalogued_files_it_cannot_use_and_an_unreadable_catalog(run_cli, models: Path,
                                                                               tmp_path: Path) -> None:
    home = init_home(tmp_path / "webui", "a1111")
    shutil.copyfile(models / "inkstyle.safetensors", home.folder("lora") / "inkstyle.safetensors")
    (home.folder("checkpoint") / "page.safetensors").write_text("<html>Sign in to download</html>")
    assert run_cli("--home", home.root, "scan").exit_code == 0
    checks = {c["name"]: c for c in json.loads(run_cli("--home", home.root, "doctor", "--json").stdout)["checks"]}
    assert checks["catalog"]["status"] == "warn"
    assert "1 of 2 catalogued files cannot be used as models (1 broken)" in checks["catalog"]["detail"]
    assert "page.safetensors" in checks["catalog"]["detail"] and "sdhub ls --problems" in checks["catalog"]["fix"]
    for leftover in home.database_path.parent.glob(home.database_path.name + "-*"):
        leftover.unlink()
    home.database_path.write_bytes(b"not a database at all, just junk" * 100)
    result = run_cli("--home", home.root, "doctor", "--json")
    assert result.exit_code == 1, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["catalog"]["status"] == "fail" and "unreadable" in checks["catalog"]["detail"]


def test_get_from_the_hub_offline_is_one_line_at_once(run_cli, tmp_home, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import huggingface_hub.constants

    with socket.socket() as closed:  # a port nothing listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for ref in ("hf:someone/tiny/model.safetensors", "hf:someone/tiny-pipeline"):
        started = time.perf_counter()
        result = run_cli("--home", tmp_home.root, "get", ref)
        assert time.perf_counter() - started < 10  # not five retries over 23 seconds
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"cannot reach 127.0.0.1:{port} (connection refused): offline?" in result.stderr
        assert "Retrying" not in result.stderr
