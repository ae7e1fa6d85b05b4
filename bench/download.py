"""Download throughput: sdhub's downloader against curl, same file, same local server.

A 1 GB file is served by the imitation Civitai storage host (sendfile, Range support) running in
its own process. Each round downloads it with ``curl -o`` and with sdhub (one connection and
``--connections 4``, in turn first), into bench/.data/download-out/. sdhub also computes the SHA-256
while the bytes arrive, verifies it, fsyncs and renames; curl does not hash or fsync (a second curl
row adds the fsync). Prints a table and rewrites the ``download`` section of docs/benchmarks.md.

    .venv/bin/python bench/download.py [--size-mb 1024] [--rounds 3]
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
from benchdoc import write_section  # bench/ is on sys.path when a script runs


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


def serve(path: Path) -> None:
    """Run the storage server for ``path`` until stdin closes (used by the benchmark's child process)."""
    from sdhub.testing.civitai_server import CivitaiServer

    server = CivitaiServer().start()
    model = {"id": 1, "name": "bench", "type": "Checkpoint", "modelVersions": [{
        "id": 1, "name": "v1", "baseModel": "SD 1.5", "files": [{
            "id": 1, "name": path.name, "type": "Model", "primary": True,
            "metadata": {"format": "Other", "size": "full", "fp": "fp32"}}]}]}
    server.add_model(model, {1: path})
    print(server.storage_location(server.served(1)), flush=True)
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


def time_sdhub(url: str, folder: Path, connections: int, expected: str) -> tuple[float, int]:
    """sdhub's time and how many connections it actually used."""
    from sdhub.sources.download import download
    from sdhub.sources.http import HttpClient

    started = time.perf_counter()
    result = download(HttpClient(), url, folder, expected_sha256=expected, connections=connections)
    elapsed = time.perf_counter() - started
    result.path.unlink()
    return elapsed, result.connections


def _yes(passed: bool) -> str:
    return "yes" if passed else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-doc", action="store_true", help="Do not update docs/benchmarks.md.")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    DATA.mkdir(parents=True, exist_ok=True)
    size = args.size_mb * 1024 * 1024
    source = DATA / f"download-{args.size_mb}mb.bin"
    print(f"preparing {source.name}...", file=sys.stderr)
    expected = make_file(source, size)
    out = DATA / "download-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()

    server = subprocess.Popen([sys.executable, __file__, "--serve", str(source)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        times: dict[str, list[float]] = {"curl": [], "sdhub": [], "sdhub --connections 4": [],
                                         "curl, then fsync": []}
        connections_used: dict[str, set[int]] = {}
        for round_number in range(args.rounds):
            fetched, durable = time_curl(url, out / "curl.bin")
            times["curl"].append(fetched)
            times["curl, then fsync"].append(durable)
            (out / "curl.bin").unlink()
            variants = [("sdhub", 1), ("sdhub --connections 4", 4)]
            # Swap the two every other round, so neither always runs right after the other.
            for name, count in variants[::-1] if round_number % 2 else variants:
                elapsed, used = time_sdhub(url, out, count, expected)
                times[name].append(elapsed)
                connections_used.setdefault(name, set()).add(used)
            print(f"round {round_number + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                  file=sys.stderr)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=30)
        shutil.rmtree(out, ignore_errors=True)

    curl_best, curl_median = min(times["curl"]), statistics.median(times["curl"])
    rows = []
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        rows.append((name, best, median, size / best / 1e6, curl_best / best, curl_median / median))
    table = ["| client | best s | median s | best MB/s | vs curl (best) | vs curl (median) | connections used |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    table += [f"| {n} | {b:.2f} | {m:.2f} | {r:.0f} | {x:.2f}x | {xm:.2f}x | "
              f"{', '.join(map(str, sorted(connections_used.get(n, {1}))))} |" for n, b, m, r, x, xm in rows]
    cpus = os.cpu_count()
    text = "\n".join([
        "## Download throughput (`bench/download.py`)",
        "",
        f"{args.size_mb} MiB of random bytes from a local HTTP server (the imitation Civitai storage host, "
        f"sendfile, in its own process) on 127.0.0.1; {args.rounds} alternating rounds; {cpus} CPUs shared "
        "with other work, so figures are noisy. sdhub writes a resumable `.part`, hashes (SHA-256) while "
        "receiving, verifies against the published hash, fsyncs and renames; curl only writes (`curl -o`); "
        "the last row adds an fsync to curl's file for comparison. sdhub receives into a few reused buffers, "
        "hashes them from memory in a second thread and writes whole blocks with direct I/O (`O_DIRECT`, "
        "where the file system has it), so its bytes are on disk rather than in the page cache when it ends "
        "and the fsync has almost nothing left; curl's file is left in the page cache (so a later read of "
        "sdhub's file, such as the catalog's hashing, comes from the disk). With `--connections 4` "
        "sdhub opens extra connections only when the first one is slower than 200 MB/s (a throttled CDN); "
        "the last column says how many it used.",
        "",
        *table,
        "",
        f"Acceptance, by best and by median time: sdhub >= 0.9x curl: best **{_yes(rows[1][4] >= 0.9)}** "
        f"({rows[1][4]:.2f}x), median **{_yes(rows[1][5] >= 0.9)}** ({rows[1][5]:.2f}x); `--connections 4` not "
        f"slower than one connection (5% tolerance for noise): best **{_yes(rows[2][1] <= rows[1][1] * 1.05)}** "
        f"({rows[2][1]:.2f}s vs {rows[1][1]:.2f}s), median **{_yes(rows[2][2] <= rows[1][2] * 1.05)}** "
        f"({rows[2][2]:.2f}s vs {rows[1][2]:.2f}s).",
    ])
    print(text)
    if not args.no_doc:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
