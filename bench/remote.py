"""Push and pull of a model library against a local S3 server (rclone serve s3), against `rclone copy` of the
same files to and from the same server in the same run; sdhub's SHA-256 verification is included.

    python bench/remote.py [--size-mb 2048] [--files 8] [--no-doc]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchdoc import machine, met, write_section  # noqa: E402  (bench/ is on sys.path when a script runs)

SECTION = "remote"


def _model_file(path: Path, size: int) -> None:
    """A safetensors file of one U8 tensor of random bytes: a real model file's shape, incompressible."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(header)) + header)
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            out.write(block)
            left -= len(block)


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--no-doc", action="store_true", help="Do not update docs/benchmarks.md.")
    args = parser.parse_args()

    import sdhub
    from sdhub.config import init_home
    from sdhub.testing.s3_server import ACCESS_KEY, SECRET_KEY, S3Server

    work = Path(tempfile.mkdtemp(prefix="sdhub-bench-remote-"))
    try:
        one = init_home(work / "one", "comfyui")
        folder = one.folder("checkpoint")
        folder.mkdir(parents=True, exist_ok=True)
        per_file = args.size_mb * (1 << 20) // args.files
        for number in range(args.files):
            _model_file(folder / f"model_{number}.safetensors", per_file)
        sdhub.scan(one)
        total = sum(p.stat().st_size for p in folder.iterdir())
        rclone = str(Path(sys.executable).with_name("rclone"))
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "RCLONE_CONFIG": "/dev/null"}
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
        with S3Server("rclone", root=work / "served") as server:
            remote = (f":s3,provider=Other,access_key_id={ACCESS_KEY},secret_access_key={SECRET_KEY},"
                      f"endpoint='{server.url}':library")
            rclone_push = _timed([rclone, "copy", str(folder), f"{remote}/rclone"], env)
            sdhub.add_remote(one, "bench", "s3://library/sdhub", endpoint=server.url)
            started = time.monotonic()
            sdhub.push("bench", home=one, all_assets=True)
            sdhub_push = time.monotonic() - started
            rclone_pull = _timed([rclone, "copy", f"{remote}/rclone", str(work / "rclone-pulled")], env)
            two = init_home(work / "two", "a1111")
            sdhub.add_remote(two, "bench", "s3://library/sdhub", endpoint=server.url)
            started = time.monotonic()
            sdhub.pull("bench", home=two, all_assets=True)
            sdhub_pull = time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gb = total / 1e9
    rows = [("push", sdhub_push, rclone_push), ("pull", sdhub_pull, rclone_pull)]
    lines = [f"{args.files} files, {gb:.2f} GB in all, to and from `rclone serve s3` on 127.0.0.1 ({machine()}); "
             "sdhub's pull verifies every byte's SHA-256 and catalogues each file, its push sends SHA-256 checksums.",
             "", "| direction | sdhub s | sdhub GB/s | rclone copy s | rclone GB/s | sdhub throughput / rclone's | "
             "goal >= 0.9x |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, ours, theirs in rows:
        lines.append(f"| {name} | {ours:.2f} | {gb / ours:.2f} | {theirs:.2f} | {gb / theirs:.2f} | "
                     f"{theirs / ours:.2f}x | {met(theirs / ours >= 0.9)} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_doc:
        write_section(SECTION, "## Remote push and pull (`bench/remote.py`)\n\n" + table)


if __name__ == "__main__":
    main()
