"""A download killed half-way (SIGKILL, no chance to clean up) resumes from its .part and verifies."""

from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from sdhub.config import Home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer


def _sdhub(home: Home, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sdhub", "--home", str(home.root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))


def _read_until(process: subprocess.Popen, text: bytes, timeout: float) -> bytes:
    """Read the process's stderr until ``text`` shows (or it exits, or ``timeout`` passes); return what was read."""
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:  # epoll: no limit on the descriptor's number
        selector.register(process.stderr, selectors.EVENT_READ)
        while text not in seen and time.monotonic() < deadline:
            if selector.select(0.5):
                chunk = os.read(process.stderr.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
    return seen


def test_a_killed_download_resumes_and_verifies(civitai: CivitaiServer, fixture_json, tmp_home: Home,
                                                tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "made.safetensors")
    size = model.stat().st_size
    civitai.add_model(fixture_json("model"), {194: model, 5149: b"unused"})
    civitai.served(194).trickle = size // 6  # about six seconds for the whole file
    folder = tmp_home.folder("checkpoint")
    final = folder / "synthwavepunk_v3Alpha.safetensors"

    process = _sdhub(tmp_home, "get", "civitai:1102@1292", "--no-sidecars", "--connections", "1")
    part_size = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        parts = list(folder.glob(".sdhub-*.part")) if folder.exists() else []
        part_size = parts[0].stat().st_size if parts else 0
        if part_size > size * 0.4:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    time.sleep(1.0)  # let the downloader record its progress at least once more
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    assert not final.exists()  # nothing partial under the final name
    part = next(folder.glob(".sdhub-*.part"))
    kept = part.stat().st_size
    assert size * 0.4 < kept < size

    civitai.served(194).trickle = None
    again = _sdhub(tmp_home, "get", "civitai:1102@1292", "--no-sidecars", "--json")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    last = [r for r in civitai.requests_to("storage") if r.path.startswith("/models/")][-1]
    resumed_at = int(re.match(r"bytes=(\d+)-$", last.headers["Range"]).group(1))
    assert size * 0.4 < resumed_at <= kept
    assert b'"resumed_from": %d' % resumed_at in out
    assert hashlib.sha256(final.read_bytes()).hexdigest() == hashlib.sha256(model.read_bytes()).hexdigest()
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["synthwavepunk_v3Alpha.safetensors"]


def test_a_killed_parallel_download_resumes_its_pieces_and_verifies(civitai: CivitaiServer, fixture_json,
                                                                    tmp_home: Home, tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "made.safetensors")
    size = model.stat().st_size
    civitai.add_model(fixture_json("model"), {194: model, 5149: b"unused"})
    civitai.served(194).trickle = size // 48  # throttled per connection: eight need about six seconds
    folder = tmp_home.folder("checkpoint")
    final = folder / "synthwavepunk_v3Alpha.safetensors"

    process = _sdhub(tmp_home, "get", "civitai:1102@1292", "--no-sidecars")  # default: connections added
    received = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and received <= size * 0.4:
        states = list(folder.glob(".sdhub-*.part.json")) if folder.exists() else []
        try:
            received = sum(done for _, _, done in json.loads(states[0].read_text())["segments"]) if states else 0
        except (OSError, ValueError):
            pass  # replaced while read
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not final.exists()

    civitai.served(194).trickle = None
    before = len(civitai.requests_to("storage"))
    again = _sdhub(tmp_home, "get", "civitai:1102@1292", "--no-sidecars", "--json")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    resumed_from = int(re.search(rb'"resumed_from": (\d+)', out).group(1))
    assert resumed_from > size * 0.4
    # Several pieces were under way: the resumed download asks only for what each still lacks.
    asked = [r.headers.get("Range") for r in civitai.requests_to("storage")[before:] if r.path.startswith("/models/")]
    assert len(asked) > 1 and None not in asked and "bytes=0-" not in asked
    assert hashlib.sha256(final.read_bytes()).hexdigest() == hashlib.sha256(model.read_bytes()).hexdigest()
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["synthwavepunk_v3Alpha.safetensors"]

def test_two_processes_getting_the_same_model_fetch_it_once(civitai: CivitaiServer, fixture_json, tmp_home: Home,
                                                            tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "made.safetensors")
    civitai.add_model(fixture_json("model"), {194: model, 5149: b"unused"})
    served = civitai.served(194)
    served.hold_at = model.stat().st_size // 2  # the first download stops half-way until the second is waiting
    # One connection: a held answer looks slow, and connections added to it would be requests too.
    first = _sdhub(tmp_home, "get", "civitai:1102@1292", "--no-sidecars", "--json", "--connections", "1")
    folder = tmp_home.folder("checkpoint")
    deadline = time.monotonic() + 120
    while not (folder.exists() and list(folder.glob(".sdhub-*.part"))) and time.monotonic() < deadline:
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)  # the first one holds the lock once its .part exists
    second = _sdhub(tmp_home, "get", "civitai:1102@1292", "--no-sidecars", "--json")
    waiting = _read_until(second, b"waiting for another sdhub", timeout=120)
    served.release.set()
    outputs = [process.communicate(timeout=120) for process in (first, second)]
    assert [process.returncode for process in (first, second)] == [0, 0], outputs
    assert b"waiting for another sdhub" in waiting
    assert b'"already_present": true' in outputs[1][0]
    assert len([r for r in civitai.requests_to("storage") if r.path.startswith("/models/")]) == 1
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["synthwavepunk_v3Alpha.safetensors"]
    assert (folder / "synthwavepunk_v3Alpha.safetensors").read_bytes() == model.read_bytes()
