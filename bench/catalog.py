"""Catalog speed: rescans of an unchanged 10,000-asset library, search latency, and a first scan
of 1 GB against ``sha256sum`` of the same files.

* 10,000 small distinct safetensors files spread over a home's four kind folders are scanned
  once; then their rows get synthetic names, tags, trigger words and descriptions (as Civitai
  data would give them), and an unchanged rescan is timed (target: at most 2 s).
* ``Catalog.search`` is timed over 200 one- and two-word queries (target: median at most 20 ms).
* 100 files of 10 MB (safetensors-shaped, random data: 1 GB) are hashed with ``sha256sum`` and
  scanned into a fresh catalog by sdhub, which computes SHA-256, AutoV3, BLAKE3, CRC32 and the
  legacy hash and inspects each file (target: at most 1.2x ``sha256sum``'s time). Both run on a
  warm page cache; the best of three runs each is compared.

Prints a table and rewrites the ``catalog`` section of docs/benchmarks.md.

    .venv/bin/python bench/catalog.py [--assets 10000] [--files 100] [--file-mb 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from benchdoc import met, write_section  # bench/ is on sys.path when a script runs
from synthetic import WORDS, synthetic_listing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / ".data" / "catalog"
SECTION = "catalog"

from sdhub.catalog import Catalog  # noqa: E402
from sdhub.config import ASSET_KINDS, init_home  # noqa: E402


def safetensors_bytes(payload: bytes, name: str = "weight") -> bytes:
    """A valid safetensors file holding ``payload`` as one uint8 tensor."""
    header = json.dumps({name: {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}},
                        separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + payload


def make_library(home_root: Path, count: int) -> Catalog:
    if home_root.exists():
        shutil.rmtree(home_root)
    home = init_home(home_root, "sdhub")
    folders = [home.folder(kind) for kind in ASSET_KINDS]
    for index in range(count):
        folder = folders[index % len(folders)] / f"group-{index // 500:02}"
        folder.mkdir(exist_ok=True)
        (folder / f"asset-{index:05}.safetensors").write_bytes(
            safetensors_bytes(index.to_bytes(8, "little") + os.urandom(248)))
    return Catalog(home)


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    """Made-up words for descriptions, so a query word matches a realistic share of assets."""
    syllables = "ka ri to mu se na lo vi pe ra zu me ko an el or is un qu ex ty ba".split()
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def add_synthetic_metadata(catalog: Catalog, seed: int = 0) -> None:
    rng = random.Random(seed)
    prose = vocabulary(rng)
    rows = []
    for (asset_id,) in catalog.db.execute("SELECT id FROM assets").fetchall():
        listing = synthetic_listing(rng)
        description = " ".join(rng.choice(prose) for _ in range(25)) + " " + rng.choice(WORDS)
        rows.append((listing["name"], json.dumps(listing["tags"]), json.dumps(listing["trigger_words"]), description,
                     asset_id))
    with catalog.db.conn:
        catalog.db.conn.executemany(
            "UPDATE assets SET name = ?, name_source = 'civitai', tags = ?, trigger_words = ?, description = ? "
            "WHERE id = ?", rows)


def time_it(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def bench_library(count: int, rounds: int) -> dict[str, object]:
    catalog = make_library(DATA / "library", count)
    first_seconds, first = time_it(catalog.scan)
    assert first.files_read == count, first.errors[:3]
    add_synthetic_metadata(catalog)
    rescans = []
    for _ in range(rounds):
        seconds, report = time_it(catalog.scan)
        assert report.files_read == 0 and report.files_unchanged == count
        rescans.append(seconds)
    rng = random.Random(1)
    queries = [" ".join(rng.sample(WORDS, rng.choice((1, 2)))) for _ in range(200)]
    latencies, hits = [], []
    for query in queries:
        seconds, results = time_it(lambda: catalog.search(query))
        latencies.append(seconds)
        hits.append(len(results))
    catalog.close()
    latencies.sort()
    return {
        "assets": count, "rounds": rounds, "first_scan_s": first_seconds, "rescan_median_s": statistics.median(rescans),
        "rescan_max_s": max(rescans), "search_median_ms": statistics.median(latencies) * 1000,
        "search_p95_ms": latencies[int(len(latencies) * 0.95)] * 1000, "search_hits_median": statistics.median(hits),
    }


def make_big_files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"model-{index:03}.safetensors"
        if not path.exists() or path.stat().st_size < size:
            path.write_bytes(safetensors_bytes(os.urandom(size - 128)))
        paths.append(path)
    return paths


def bench_first_scan(count: int, size_mb: int, rounds: int) -> dict[str, object]:
    home_root = DATA / "big"
    home = init_home(home_root, "sdhub")
    paths = make_big_files(home.folder("checkpoint"), count, size_mb * 1_000_000)
    total = sum(p.stat().st_size for p in paths)
    for path in paths:  # warm the page cache for both contenders
        with open(path, "rb") as handle:
            while handle.read(16 << 20):
                pass
    sha_times, scan_times = [], []
    for _ in range(rounds):
        seconds, result = time_it(lambda: subprocess.run(["sha256sum", *map(str, paths)], check=True,
                                                          stdout=subprocess.DEVNULL))
        sha_times.append(seconds)
        for suffix in ("", "-wal", "-shm"):
            Path(str(home.database_path) + suffix).unlink(missing_ok=True)
        catalog = Catalog(home)
        seconds, report = time_it(catalog.scan)
        catalog.close()
        assert report.files_read == count and report.bytes_read == total, report.errors[:3]
        scan_times.append(seconds)
    return {"files": count, "bytes": total, "sha256sum_s": min(sha_times), "sdhub_scan_s": min(scan_times),
            "ratio": min(scan_times) / min(sha_times), "cpus": os.cpu_count(), "rounds": rounds}


def render(library: dict[str, object], first: dict[str, object]) -> str:
    return "\n".join([
        "## Catalog",
        "",
        f"`bench/catalog.py` on {first['cpus']} CPUs, {time.strftime('%Y-%m-%d')}. "
        f"Library: {library['assets']:,} small safetensors files with synthetic names, tags, trigger "
        f"words and descriptions. First scan: {first['files']} files, {first['bytes'] / 1e9:.2f} GB, warm page "
        f"cache, best of {first['rounds']}; sdhub computes SHA-256, AutoV3, BLAKE3, CRC32 and the legacy hash, "
        "inspects each file and writes the catalog, `sha256sum` computes SHA-256 only.",
        "",
        "| measure | result | target | met |",
        "| --- | --- | --- | --- |",
        f"| rescan of {library['assets']:,} unchanged files (median of {library['rounds']}) | "
        f"{library['rescan_median_s']:.2f} s (max {library['rescan_max_s']:.2f} s) | ≤ 2 s | "
        f"{met(library['rescan_median_s'] <= 2)} |",
        f"| search, 200 queries (median / p95) | {library['search_median_ms']:.1f} / "
        f"{library['search_p95_ms']:.1f} ms | ≤ 20 ms median | {met(library['search_median_ms'] <= 20)} |",
        f"| first scan of {first['bytes'] / 1e9:.2f} GB in {first['files']} files vs `sha256sum` | "
        f"{first['sdhub_scan_s']:.2f} s vs {first['sha256sum_s']:.2f} s = {first['ratio']:.2f}x | ≤ 1.2x | "
        f"{met(first['ratio'] <= 1.2)} |",
        f"| (first scan of the {library['assets']:,}-file library, for reference) | "
        f"{library['first_scan_s']:.1f} s | | |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--file-mb", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="Do not update docs/benchmarks.md.")
    args = parser.parse_args()
    library = bench_library(args.assets, args.rounds)
    first = bench_first_scan(args.files, args.file_mb, args.rounds)
    text = render(library, first)
    print(text)
    if not args.no_doc:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
