"""Ctrl-C and SIGTERM sent to real ``sdhub`` processes: exit 130, one line saying what was left, no
output and no temporary files, from the first instruction on.

Each command runs through ``stop_driver.py`` (the real entry point). "Right after start" is the
moment the process has its stop handlers (read from /proc, no sleeps); "mid-work" is a progress
report the driver holds until the signal comes. Most runs start with SIGINT ignored, as a
non-interactive shell starts a background job (`sdhub prune X &`): the case where Ctrl-C was lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdhub.config import init_home
from sdhub.testing import factory

DRIVER = Path(__file__).with_name("stop_driver.py")
TIMEOUT = 120

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal dispositions from /proc")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stop-models")
    factory.sd1_checkpoint(folder / "model.ckpt", fmt="ckpt", ema=True)
    (folder / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024))  # hashed by the threaded reader, with reports
    return folder


class Run:
    """One ``sdhub`` process started in ``folder``."""

    def __init__(self, folder: Path, args: list[str], *, hold: str | None = None, sigint_ignored: bool = True,
                 home: Path | None = None) -> None:
        self.folder = folder
        self.marker = folder.parent / f"{folder.name}.held"
        env = {**os.environ, "SDHUB_TEST_HOLD": hold or "", "SDHUB_TEST_MARKER": str(self.marker)}
        if home is not None:
            env["SDHUB_HOME"] = str(home)
        command = [sys.executable, str(DRIVER), *args]
        if sigint_ignored:
            command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
        self.process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)

    def wait_until(self, ready, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not ready():
            if self.process.poll() is not None:
                out, err = self.process.communicate()
                pytest.fail(f"sdhub exited {self.process.returncode} before {what}: {err}{out}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.002)

    def handlers_installed(self) -> bool:
        """True once sdhub caught SIGTERM (Python itself never does): its first instructions ran."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return False
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        return bool(caught >> (signal.SIGTERM - 1) & 1)

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=TIMEOUT)
        return self.process.returncode, out, err


def copy_of(models: Path, tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    for name in names:
        os.link(models / name, folder / name)
    return folder


def left_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


COMMANDS = {
    "prune": (["prune", "model.ckpt", "-o", "out.safetensors"], ["model.ckpt"]),
    "convert": (["convert", "model.ckpt", "-o", "out.safetensors"], ["model.ckpt"]),
    "hash": (["hash", "model.ckpt", "big.bin"], ["big.bin", "model.ckpt"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_stop_right_after_start_ends_the_command_with_nothing_written(command: str, models: Path,
                                                                         tmp_path: Path) -> None:
    args, files = COMMANDS[command]
    folder = copy_of(models, tmp_path, *files)
    # Held at its first report in case the signal is slower than the start-up it is aimed at.
    run = Run(folder, args, hold="*")
    run.wait_until(run.handlers_installed, "installing its stop handlers")
    code, out, err = run.stop(signal.SIGINT)
    assert code == 130, err
    assert len(err.splitlines()) == 1 and err.startswith("sdhub: interrupted"), err
    assert "Traceback" not in err and out == ""
    assert left_in(folder) == files


def test_a_scan_stopped_right_after_start_catalogues_nothing(run_cli, models: Path, tmp_path: Path) -> None:
    home = init_home(tmp_path / "home", "sdhub")
    factory.lora(home.folder("lora") / "style.safetensors")
    run = Run(tmp_path, ["scan"], hold="*", home=home.root)
    run.wait_until(run.handlers_installed, "installing its stop handlers")
    code, out, err = run.stop(signal.SIGINT)
    assert code == 130 and len(err.splitlines()) == 1 and err.startswith("sdhub: interrupted"), err
    listing = run_cli("--home", home.root, "ls", "--json")
    assert json.loads(listing.stdout or "[]") == []


@pytest.mark.parametrize("command, signum, word", [("prune", signal.SIGINT, "interrupted"),
                                                   ("prune", signal.SIGTERM, "terminated"),
                                                   ("convert", signal.SIGINT, "interrupted")])
def test_a_stop_while_writing_removes_the_partial_output(command: str, signum: int, word: str, models: Path,
                                                         tmp_path: Path) -> None:
    args, files = COMMANDS[command]
    folder = copy_of(models, tmp_path, *files)
    run = Run(folder, args, hold="Writing out.safetensors")
    run.wait_until(run.marker.exists, "writing")
    assert [n for n in left_in(folder) if n.startswith(".")], "the temporary output exists while writing"
    code, out, err = run.stop(signum)
    assert code == 130
    assert err == f"sdhub: {word}; no output written (out.safetensors)\n"
    assert left_in(folder) == files  # no output, no temporary file


def test_ctrl_c_in_a_terminal_session_is_honoured_too(models: Path, tmp_path: Path) -> None:
    folder = copy_of(models, tmp_path, "model.ckpt")
    run = Run(folder, COMMANDS["prune"][0], hold="Writing", sigint_ignored=False)
    run.wait_until(run.marker.exists, "writing")
    code, out, err = run.stop(signal.SIGINT)
    assert (code, err) == (130, "sdhub: interrupted; no output written (out.safetensors)\n")
    assert left_in(folder) == ["model.ckpt"]


def test_a_stopped_hash_batch_says_how_far_it_got(models: Path, tmp_path: Path) -> None:
    folder = copy_of(models, tmp_path, "model.ckpt", "big.bin")
    run = Run(folder, ["hash", "model.ckpt", "big.bin"], hold="Hashing big.bin")
    run.wait_until(run.marker.exists, "hashing big.bin")
    code, out, err = run.stop(signal.SIGINT)
    assert (code, out) == (130, "")
    assert err == "sdhub: interrupted; 1 of 2 files hashed, nothing printed\n"


def test_a_stopped_scan_keeps_what_it_catalogued(run_cli, tmp_path: Path) -> None:
    home = init_home(tmp_path / "home", "sdhub")
    factory.lora(home.folder("lora") / "style.safetensors")
    factory.embedding(home.folder("embedding") / "easy.pt")
    factory.vae(home.folder("vae") / "vae.safetensors")
    run = Run(tmp_path, ["scan"], hold="Reading files 2/3", home=home.root)
    run.wait_until(run.marker.exists, "reading the second file")
    code, out, err = run.stop(signal.SIGINT)
    assert code == 130
    assert err == ("sdhub: interrupted; 1 of 3 files to read were read and are catalogued; "
                   "the next scan reads the rest\n")
    assert len(json.loads(run_cli("--home", home.root, "ls", "--json").stdout)) == 1
    again = run_cli("--home", home.root, "scan", "--json")
    assert json.loads(again.stdout)["files_read"] == 2
    assert len(json.loads(run_cli("--home", home.root, "ls", "--json").stdout)) == 3


def test_no_heavy_library_takes_the_stop_handlers_away() -> None:
    code = ("import signal; from sdhub.cli import signals; signals.install_stop_handlers(); "
            "import torch, diffusers, transformers, huggingface_hub, textual.app, sdhub.cli.app, sdhub.generate.pipeline; "
            "print(all(signal.getsignal(s) is signals._on_stop_signal for s in (signal.SIGINT, signal.SIGTERM)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.stdout.strip() == "True", done.stderr
