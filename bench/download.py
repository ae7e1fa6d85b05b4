"""Download throughput: sdhub's downloader against curl and aria2c, same file, same local server.

Two files are served by the imitation Civitai storage host (sendfile, Range support) running in its
own process: a 1 GiB one at full loopback speed, and a 256 MiB one throttled to 16 MB/s per
connection, as a busy CDN does. Each round downloads the first with ``curl -o`` and with sdhub
(default options, and ``--connections 1``), and the second with ``aria2c -x8 -s8`` and with sdhub
(default options), the tools in turn first, into bench/.data/download-out/. sdhub also computes the
SHA-256 while the bytes arrive, verifies it, fsyncs and renames; curl and aria2c do not hash or
fsync (a second curl row adds the fsync). Prints a table and rewrites the ``download`` section of
docs/benchmarks.md.

    .venv/bin/python bench/download.py [--size-mb 1024] [--throttled-mb 256] [--throttle-mbps 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from benchdoc import machine, met, write_section  # bench/ is on sys.path when a script runs


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / ".data"
SECTION = "download"


def make_file(path: Path, size: int) -> str:
    """A file of incompressible bytes (made once, reused); returns its SHA-256."""
    digest = hashlib.sha256()
    if path.exists() and path.stat().st_size == size:
        with open(path, "rb") as handle:
            while block := handle.read(16 << 20):
                digest.update(block)
        return digest.hexdigest()
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            digest.update(block)
            out.write(block)
            left -= len(block)
    os.replace(temp, path)
    return digest.hexdigest()


def serve(path: Path, throttled: Path, rate: int) -> None:
    """Serve ``path`` at full speed and ``throttled`` at ``rate`` bytes/s per connection until stdin
    closes, printing their URLs (used by the benchmark's child process)."""
    from sdhub.testing.civitai_server import CivitaiServer

    server = CivitaiServer().start()
    model = {"id": 1, "name": "bench", "type": "Checkpoint", "modelVersions": [{
        "id": 1, "name": "v1", "baseModel": "SD 1.5", "files": [{
            "id": file_id, "name": served.name, "type": "Model", "primary": file_id == 1,
            "metadata": {"format": "Other", "size": "full", "fp": "fp32"}}
            for file_id, served in ((1, path), (2, throttled))]}]}
    server.add_model(model, {1: path, 2: throttled})
    server.served(2).trickle = rate  # each answer paced to ``rate``: a CDN throttling each connection
    print(server.storage_location(server.served(1)), flush=True)
    print(server.storage_location(server.served(2)), flush=True)
    sys.stdin.read()
    server.stop()


def time_curl(url: str, out: Path) -> tuple[float, float]:
    """curl's time, and its time plus an fsync of the result (the durability sdhub gives)."""
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-S", "-f", "-o", str(out), url], check=True)
    fetched = time.perf_counter() - started
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return fetched, time.perf_counter() - started


def time_aria2(url: str, out: Path) -> float:
    """aria2c's time with eight connections (``-x8 -s8``), as a user fetching from a CDN would run it."""
    started = time.perf_counter()
    subprocess.run(["aria2c", "-q", "-x8", "-s8", "--allow-overwrite=true", "-d", str(out.parent), "-o", out.name,
                    url], check=True)
    return time.perf_counter() - started


def time_sdhub(url: str, folder: Path, connections: int | None, expected: str) -> tuple[float, int]:
    """sdhub's time and how many connections it actually used."""
    from sdhub.sources.download import download
    from sdhub.sources.http import HttpClient

    started = time.perf_counter()
    result = download(HttpClient(), url, folder, expected_sha256=expected, connections=connections)
    elapsed = time.perf_counter() - started
    result.path.unlink()
    return elapsed, result.connections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--throttled-mb", type=int, default=256)
    parser.add_argument("--throttle-mbps", type=float, default=16.0, help="MB/s per connection (throttled file).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=Path, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-doc", action="store_true", help="Do not update docs/benchmarks.md.")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], args.rate)
        return

    DATA.mkdir(parents=True, exist_ok=True)
    size, throttled_size = args.size_mb * 1024 * 1024, args.throttled_mb * 1024 * 1024
    rate = int(args.throttle_mbps * 1e6)
    source, throttled = DATA / f"download-{args.size_mb}mb.bin", DATA / f"download-{args.throttled_mb}mb-b.bin"
    print(f"preparing {source.name} and {throttled.name}...", file=sys.stderr)
    expected, expected_throttled = make_file(source, size), make_file(throttled, throttled_size)
    out = DATA / "download-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()

    server = subprocess.Popen([sys.executable, __file__, "--serve", str(source), str(throttled), "--rate", str(rate)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    times: dict[str, list[float]] = {name: [] for name in (
        "curl", "sdhub", "sdhub --connections 1", "curl, then fsync", "aria2c -x8 -s8 (throttled)",
        "sdhub (throttled)")}
    connections_used: dict[str, set[int]] = {}
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        throttled_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        for round_number in range(args.rounds):
            def curl() -> None:
                fetched, durable = time_curl(url, out / "curl.bin")
                times["curl"].append(fetched)
                times["curl, then fsync"].append(durable)
                (out / "curl.bin").unlink()

            def aria2() -> None:
                times["aria2c -x8 -s8 (throttled)"].append(time_aria2(throttled_url, out / "aria2.bin"))
                (out / "aria2.bin").unlink()

            def sdhub(name: str, address: str, connections: int | None, digest: str) -> Callable[[], None]:
                def run() -> None:
                    elapsed, used = time_sdhub(address, out, connections, digest)
                    times[name].append(elapsed)
                    connections_used.setdefault(name, set()).add(used)
                return run

            unthrottled = [curl, sdhub("sdhub", url, None, expected), sdhub("sdhub --connections 1", url, 1, expected)]
            cdn = [aria2, sdhub("sdhub (throttled)", throttled_url, None, expected_throttled)]
            # Reverse the order every other round, so no tool always runs right after another.
            for step in (unthrottled + cdn)[::-1] if round_number % 2 else unthrottled + cdn:
                step()
            print(f"round {round_number + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                  file=sys.stderr)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=30)
        shutil.rmtree(out, ignore_errors=True)

    def row(name: str, baseline: str, file_size: int) -> tuple[str, float, float, float, float, float]:
        best, median = min(times[name]), statistics.median(times[name])
        return (name, best, median, file_size / best / 1e6, min(times[baseline]) / best,
                statistics.median(times[baseline]) / median)

    rows = [row(name, "curl", size) for name in ("curl", "sdhub", "sdhub --connections 1", "curl, then fsync")]
    rows += [row(name, "aria2c -x8 -s8 (throttled)", throttled_size)
             for name in ("aria2c -x8 -s8 (throttled)", "sdhub (throttled)")]
    table = ["| client | file | best s | median s | best MB/s | vs baseline (best) | vs baseline (median) | "
             "connections used |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, best, median, speed, ratio, median_ratio in rows:
        file = f"{args.throttled_mb} MiB, {args.throttle_mbps:g} MB/s per connection" if "throttled" in name \
            else f"{args.size_mb} MiB, loopback"
        used = ", ".join(map(str, sorted(connections_used.get(name, {1})))) if name.startswith("sdhub") else \
            ("8" if name.startswith("aria2c") else "1")
        table.append(f"| {name} | {file} | {best:.2f} | {median:.2f} | {speed:.0f} | {ratio:.2f}x | "
                     f"{median_ratio:.2f}x | {used} |")
    plain, cdn_row = rows[1], rows[5]
    text = "\n".join([
        "## Download throughput (`bench/download.py`)",
        "",
        f"Machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M')}; {args.rounds} rounds, the tools' order reversed "
        "every other round; the CPUs are shared with other work (other engineers ran tests meanwhile), so "
        "figures are noisy. Files of random bytes from a local HTTP server (the imitation Civitai storage host, "
        "sendfile, in its own process) on 127.0.0.1: "
        f"{args.size_mb} MiB at full speed (baseline: curl), and {args.throttled_mb} MiB throttled to "
        f"{args.throttle_mbps:g} MB/s per connection, as a busy CDN does (baseline: `aria2c -x8 -s8`). "
        "sdhub runs with default options: it writes a resumable `.part`, hashes (SHA-256) while receiving, "
        "verifies against the published hash, fsyncs and renames; curl and aria2c only write (a second curl row "
        "adds an fsync). Whole blocks go to the disk with direct I/O (`O_DIRECT`) where the file system has it. "
        "Each connection's writer thread writes a filled buffer while the next one fills. "
        "A download starts with one connection and one request for the whole file (as `--connections 1` does); "
        "when the server answers that `bytes=0-` request with a 206 and the connection is slower than 200 MB/s, "
        "sdhub measures the throughput over short windows and multiplies its connections by four while the "
        "throughput keeps growing, up to 8 (`--connections N` caps it, 1 keeps one); the first added connection "
        "cuts what the first answer has not read yet into 16 MiB blocks handed out in file order, and once no "
        "block is left, a free connection takes half of the largest piece still being fetched. 'Connections used' "
        "says how many carried bytes.",
        "",
        *table,
        "",
        "| goal | met (best) | met (median) |",
        "| --- | --- | --- |",
        f"| sdhub (default options) >= 0.9x curl, loopback | {met(plain[4] >= 0.9)} ({plain[4]:.2f}x) | "
        f"{met(plain[5] >= 0.9)} ({plain[5]:.2f}x) |",
        f"| sdhub (default options) >= 0.9x `aria2c -x8 -s8`, throttled | {met(cdn_row[4] >= 0.9)} ({cdn_row[4]:.2f}x) | "
        f"{met(cdn_row[5] >= 0.9)} ({cdn_row[5]:.2f}x) |",
    ])
    print(text)
    if not args.no_doc:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
