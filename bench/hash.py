"""All of sdhub's file hashes in one read, against the fastest single SHA-256 on the machine.

Two 4.3 GB files (SD1.5's fp32 size) of random bytes are made once under bench/.data/: a plain
``.ckpt``-like file and a valid ``.safetensors`` (a header, then the same bytes as one tensor),
which also gets kohya's AutoV3/addnet hash, a second SHA-256 over the tensor data. Each round
times ``openssl dgst -sha256``, coreutils ``sha256sum``, ``sdhub.ops.hashing.hash_file`` (in
process) and the ``sdhub hash --no-components`` command, alternating, with the page cache warm
(one untimed pass first). Prints a table and rewrites the ``hash`` section of docs/benchmarks.md.

    flock /tmp/sdhub-bench.lock .venv/bin/python bench/hash.py [--size-mb 4070] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from benchdoc import write_section  # bench/ is on sys.path when a script runs


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / ".data"
SECTION = "hash"
SDHUB = ROOT / ".venv" / "bin" / "sdhub"


def make_files(size: int) -> tuple[Path, Path]:
    """The random file and its safetensors twin, made once and reused."""
    plain = DATA / f"hash-{size // 1_000_000}mb.bin"
    wrapped = DATA / f"hash-{size // 1_000_000}mb.safetensors"
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "weights": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    if not (plain.exists() and plain.stat().st_size == size):
        temp = plain.with_suffix(".tmp")
        with open(temp, "wb") as out:
            left = size
            while left:
                block = os.urandom(min(left, 64 << 20))
                out.write(block)
                left -= len(block)
        os.replace(temp, plain)
    if not (wrapped.exists() and wrapped.stat().st_size == 8 + len(header) + size):
        temp = wrapped.with_suffix(".tmp")
        with open(temp, "wb") as out, open(plain, "rb") as source:
            out.write(struct.pack("<Q", len(header)) + header)
            while block := source.read(64 << 20):
                out.write(block)
        os.replace(temp, wrapped)
    return plain, wrapped


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_library(path: Path) -> float:
    from sdhub.ops.hashing import hash_file

    started = time.perf_counter()
    hash_file(path)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=4265, help="File size in MB (default: SD1.5 fp32, 4265).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="Do not update docs/benchmarks.md.")
    args = parser.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    print("preparing files...", file=sys.stderr)
    files = make_files(args.size_mb * 1_000_000)
    tools = {
        "openssl dgst -sha256 (SHA-256 only)": lambda p: timed(["openssl", "dgst", "-sha256", str(p)]),
        "sha256sum (SHA-256 only)": lambda p: timed(["sha256sum", str(p)]),
        "sdhub hash_file (all hashes)": time_library,
        "sdhub hash --no-components (CLI, all hashes)": lambda p: timed([str(SDHUB), "hash", "--no-components", str(p)]),
    }
    results: dict[tuple[str, str], list[float]] = {}
    for path in files:
        for tool in tools.values():  # warm the page cache and the imports
            tool(path)
        for round_number in range(args.rounds):
            for name, tool in tools.items():
                results.setdefault((path.name, name), []).append(tool(path))
            print(f"{path.name} round {round_number + 1}: "
                  + ", ".join(f"{n.split(' (')[0]} {results[(path.name, n)][-1]:.2f}s" for n in tools), file=sys.stderr)

    lines = [
        f"Hashing a {args.size_mb / 1000:.1f} GB file, page cache warm, median of {args.rounds} rounds "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores). `hash_file` computes "
        "SHA-256, AutoV2, the legacy/AutoV1 hash, CRC32 and BLAKE3 (and for .safetensors the AutoV3/addnet "
        "SHA-256 of the tensor data) in one read; the goal is at most 1.25x `openssl dgst -sha256`.",
        "",
        "| file | tool | median s | GB/s | vs openssl |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for path in files:
        openssl = statistics.median(results[(path.name, next(iter(tools)))])
        for name in tools:
            median = statistics.median(results[(path.name, name)])
            lines.append(f"| {path.suffix} | {name} | {median:.2f} | {path.stat().st_size / median / 1e9:.2f} "
                         f"| {median / openssl:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if not args.no_doc:
        write_section(SECTION, "## Hashing (`bench/hash.py`)\n\n" + table)


if __name__ == "__main__":
    main()
