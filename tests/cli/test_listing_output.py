"""Listings as a user pipes them (grep, cut, awk, a CSV reader), names that tell files apart, and
broken files that show up as broken."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdhub.config import init_home
from sdhub.testing import factory

LONG_NAME = "easynegative_very_long_file_name_that_a_table_would_wrap_at_eighty_columns_v2"


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("templates")
    return {
        "checkpoint": factory.sd1_checkpoint(folder / "tinymix_v1.safetensors", seed=21),
        "lora": factory.lora(folder / f"{LONG_NAME}.safetensors", seed=22),
        "embedding": factory.embedding(folder / "easynegative.pt", seed=23),
    }


@pytest.fixture
def home(tmp_path: Path, templates: dict[str, Path]) -> Path:
    """An A1111 install: a checkpoint (twice), a LoRA with a long name, an embedding, and junk."""
    home = init_home(tmp_path / "webui", "a1111")
    for kind, template in templates.items():
        shutil.copyfile(template, home.folder(kind) / template.name)
    checkpoints = home.folder("checkpoint")
    shutil.copyfile(templates["checkpoint"], checkpoints / "tinymix_v1-copy.safetensors")
    (checkpoints / "realistic.safetensors").write_text("<!DOCTYPE html><html><body>Log in</body></html>")
    (checkpoints / "empty.ckpt").write_bytes(b"")
    data = templates["checkpoint"].read_bytes()
    (checkpoints / "half.safetensors").write_bytes(data[: len(data) // 3])
    return home.root


JUNK = ["empty.ckpt", "half.safetensors", "realistic.safetensors"]


def scan(run_cli, home: Path) -> dict:
    result = run_cli("--home", home, "scan", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_piped_ls_prints_one_unwrapped_record_per_line(run_cli, home: Path) -> None:
    scan(run_cli, home)
    piped = run_cli("--home", home, "ls")  # stdout is not a terminal here
    assert piped.exit_code == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert len(lines) == 6  # one line per asset, no header, no rules
    matches = [line for line in lines if "easynegative" in line]  # sdhub ls | grep easynegative
    assert len(matches) == 2
    fields = [line.split("\t") for line in lines]
    assert {len(f) for f in fields} == {10}
    by_file = {f[2]: f for f in fields}  # sdhub ls | cut -f3
    assert by_file[f"{LONG_NAME}.safetensors"][1] == LONG_NAME  # the whole name, unwrapped
    assert by_file["easynegative.pt"][3] == "embedding"
    assert "\x1b" not in piped.stdout and "│" not in piped.stdout and "━" not in piped.stdout


def test_explicit_formats_tsv_csv_json(run_cli, home: Path) -> None:
    scan(run_cli, home)
    tsv = run_cli("--home", home, "ls", "--format", "tsv", "--kind", "lora").stdout.splitlines()
    assert tsv[0].split("\t") == ["id", "name", "file", "kind", "base", "size", "dtype", "status", "copies",
                                  "autov2"]
    assert tsv[1].split("\t")[1] == LONG_NAME and len(tsv) == 2
    rows = list(csv.DictReader(io.StringIO(run_cli("--home", home, "ls", "--format", "csv").stdout)))
    assert sorted(r["file"] for r in rows if r["status"] == "broken") == JUNK
    as_json = json.loads(run_cli("--home", home, "ls", "--format", "json").stdout)
    assert as_json == json.loads(run_cli("--home", home, "ls", "--json").stdout)
    assert {"file_name", "condition", "defect"} <= set(as_json[0])
    bad = run_cli("--home", home, "ls", "--format", "yaml")
    assert bad.exit_code == 2 and "choose one of: table, tsv, csv, json" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_every_listing_command_pipes_one_record_per_line(run_cli, home: Path) -> None:
    scan(run_cli, home)
    found = run_cli("--home", home, "search", "easyneg").stdout.splitlines()
    assert sorted(line.split("\t")[2] for line in found) == ["easynegative.pt", f"{LONG_NAME}.safetensors"]
    dupes = run_cli("--home", home, "dupes").stdout.splitlines()  # a line per path, not a cell per group
    assert sorted(Path(line.split("\t")[-1]).name for line in dupes) == ["tinymix_v1-copy.safetensors",
                                                                          "tinymix_v1.safetensors"]
    roots = run_cli("--home", home, "roots").stdout.splitlines()
    # A1111's folders, each once (Stable-diffusion holds diffusion models too, ControlNet IP-Adapters).
    assert [line.split("\t")[1] for line in roots] == [
        "checkpoint", "lora", "embedding", "vae", "text-encoder", "controlnet", "clip-vision", "upscaler",
        "preview-decoder", "hypernetwork", "wildcards"]
    roots_csv = list(csv.reader(io.StringIO(run_cli("--home", home, "roots", "--format", "csv").stdout)))
    assert roots_csv[0] == ["path", "kind", "from", "exists"] and len(roots_csv) == 12


def test_control_characters_from_file_names_are_escaped(run_cli, home: Path, templates) -> None:
    hostile = home / "models/Lora" / "evil\x1b]0;owned\x07\tname.safetensors"
    shutil.copyfile(templates["lora"], hostile)
    (home / "models/Lora" / f"{LONG_NAME}.safetensors").unlink()
    scan(run_cli, home)
    line = next(l for l in run_cli("--home", home, "ls", "--kind", "lora").stdout.splitlines())
    assert "\x1b" not in line and "\x07" not in line
    assert line.split("\t")[2] == "evil\\x1b]0;owned\\x07\\tname.safetensors"


def test_scan_counts_broken_files_and_ls_problems_lists_them(run_cli, home: Path) -> None:
    report = scan(run_cli, home)
    assert sorted(Path(item["path"]).name for item in report["broken"]) == JUNK
    summary = run_cli("--home", home, "scan")
    assert summary.exit_code == 0
    assert any(line.split() == ["broken", "3"] for line in summary.stdout.splitlines())
    assert "sdhub ls --problems" in summary.stderr and "realistic.safetensors" in summary.stderr
    listing = {line.split("\t")[2]: line.split("\t")[7] for line in run_cli("--home", home, "ls").stdout.splitlines()}
    assert [listing[name] for name in JUNK] == ["broken"] * 3 and listing["easynegative.pt"] == ""
    problems = run_cli("--home", home, "ls", "--problems")
    rows = [line.split("\t") for line in problems.stdout.splitlines()]
    assert sorted(row[2] for row in rows) == JUNK
    why = {row[2]: row[5] for row in rows}
    assert "truncated" in why["half.safetensors"]
    assert "web page" in why["realistic.safetensors"] and "empty (0 bytes)" in why["empty.ckpt"]
    shown = run_cli("--home", home, "show", "realistic.safetensors").stdout.splitlines()
    assert any(line.split() == ["status", "broken"] for line in shown)
    problems_json = json.loads(run_cli("--home", home, "ls", "--problems", "--json").stdout)
    assert sorted(a["file_name"] for a in problems_json) == JUNK
    assert {a["defect"] for a in problems_json} == {"broken"}


def test_derived_files_have_their_own_names_and_ambiguity_names_the_files(run_cli, home: Path) -> None:
    source = home / "models/Stable-diffusion/tinymix_v1.safetensors"
    source.with_name("tinymix_v1-copy.safetensors").unlink()
    for args in (["--dtype", "fp16", "-o", str(source.with_name("tinymix_v1-fp16.safetensors"))],
                 ["--dtype", "keep", "-o", str(source.with_name("tinymix_v1-pruned.safetensors"))]):
        result = run_cli("--home", home, "prune", source, *args)
        assert result.exit_code == 0, result.stderr
    scan(run_cli, home)
    names = [line.split("\t")[1] for line in run_cli("--home", home, "ls", "--kind", "checkpoint").stdout.splitlines()]
    assert names.count("tinymix_v1") == 1
    assert {"tinymix_v1-fp16", "tinymix_v1-pruned"} <= set(names)
    shown = json.loads(run_cli("--home", home, "show", "tinymix_v1-fp16", "--json").stdout)
    assert shown["name"] == "tinymix_v1-fp16" and shown["ancestors"][0]["name"] == "tinymix_v1"
    # Two files of the same stem: the error names both files, and the file name picks one.
    source.with_name("tinymix_v1-fp16.ckpt").write_bytes(b"\0" * 10)
    scan(run_cli, home)
    ambiguous = run_cli("--home", home, "show", "tinymix_v1-fp16")
    assert ambiguous.exit_code == 2 and ambiguous.stderr.count("\n") == 1
    assert "tinymix_v1-fp16.safetensors" in ambiguous.stderr and "tinymix_v1-fp16.ckpt" in ambiguous.stderr
    picked = run_cli("--home", home, "show", "tinymix_v1-fp16.safetensors", "--json")
    assert picked.exit_code == 0 and json.loads(picked.stdout)["dtype"] == "F16"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_on_a_terminal_ls_prints_a_table(home: Path) -> None:
    scan_result = subprocess.run([sys.executable, "-m", "sdhub", "--home", str(home), "scan"],
                                 capture_output=True, text=True, timeout=120)
    assert scan_result.returncode == 0, scan_result.stderr
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "LINES": "40", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "sdhub", "--home", str(home), "ls"], stdout=follower,
                               stderr=subprocess.PIPE, env=env)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=120)
    os.close(leader)
    text = output.decode("utf-8", "replace")
    assert process.returncode == 0
    header = next(line for line in text.splitlines() if "autov2" in line)
    assert "name" in header and "file" in header and "┃" in header  # rich's table, not tab-separated lines


def test_doctor_pipes_one_check_per_line_and_takes_a_format(run_cli, home: Path) -> None:
    scan(run_cli, home)
    piped = run_cli("--home", home, "doctor").stdout.splitlines()
    checks = {line.split("\t")[1]: line.split("\t")[0] for line in piped}
    assert checks["torch"] == "ok" and checks["catalog"] == "warn"  # the catalog holds broken files
    rows = list(csv.DictReader(io.StringIO(run_cli("--home", home, "doctor", "--format", "csv").stdout)))
    assert [r["check"] for r in rows] == list(checks)
    assert run_cli("--home", home, "smoke", "--format", "xml").exit_code == 2
