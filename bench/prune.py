"""Pruning a full-size SD1.5-shaped fp32 checkpoint with EMA to an fp16 "emaonly" file.

The input is the factory's full-size SD1.5 checkpoint with EMA weights (``.ckpt``, ~7.7 GB),
made once under bench/.data/ (with a lock, so helpers never write it twice). Each round times,
under ``/usr/bin/time -v`` for peak resident memory:

- ``cp`` of the input, and ``cp`` followed by ``sync`` of the copy (sdhub fsyncs its output);
- the baseline a user would otherwise run: ``torch.load`` everything, put the EMA weights under
  the model's names, drop ``model_ema.*``, ``.half()`` the floats, ``safetensors.torch.save_file``;
- ``sdhub prune IN -o OUT --ema use --dtype fp16`` (which also hashes the source for its metadata).

Goals: sdhub peak RSS at most 512 MB, wall time at most 1.2x ``cp`` + ``sync`` (issue #14: both
end with the data on disk), taken round by round. Prints a table and rewrites
the ``prune`` section of docs/benchmarks.md.

    flock /tmp/sdhub-bench.lock .venv/bin/python bench/prune.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import fcntl
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from benchdoc import file_system, machine, met, write_section  # bench/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / ".data"
SECTION = "prune"
PYTHON = ROOT / ".venv" / "bin" / "python"
SDHUB = ROOT / ".venv" / "bin" / "sdhub"
SOURCE = DATA / "sd15-full-fp32-ema.ckpt"

NOTE = ("sdhub's run includes hashing the whole source for `sdhub.source_sha256` (the baseline hashes nothing); "
        "pass a known hash (`prune(..., source_sha256=...)`) to skip it.")

BASELINE = """
import sys, torch
from safetensors.torch import save_file

source, out = sys.argv[1], sys.argv[2]
state = torch.load(source, map_location="cpu", weights_only=True)
state = state.get("state_dict", state)
for key in [k for k in state if k.startswith("model.diffusion_model.")]:
    ema = "model_ema." + key[len("model."):].replace(".", "")
    if ema in state:
        state[key] = state[ema]
state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()
         if not k.startswith("model_ema.")}
save_file(state, out)
"""


def make_source() -> Path:
    """The full-size EMA checkpoint, written once even when several benchmarks start together."""
    DATA.mkdir(parents=True, exist_ok=True)
    with open(DATA / f".{SOURCE.name}.lock", "w") as lock:  # the lock naming bench/convert.py uses
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not SOURCE.exists():
            import torch

            from sdhub.testing import factory

            print(f"writing {SOURCE.name} (once)...", file=sys.stderr)
            factory.sd1_checkpoint(SOURCE, fmt="ckpt", ema=True, size="full", dtype=torch.float32)
    return SOURCE


def measured(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident set size in bytes of ``command`` under /usr/bin/time -v."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{result.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) * 1024
    return hours * 3600 + minutes * 60 + seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--source", type=Path, help="Prune this checkpoint instead of the factory's full-size one.")
    parser.add_argument("--no-baseline", action="store_true", help="Skip the torch.load baseline (needs ~10 GB RAM).")
    parser.add_argument("--no-doc", action="store_true", help="Do not update docs/benchmarks.md.")
    args = parser.parse_args()

    source = args.source or make_source()
    out = DATA / "prune-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    runs: dict[str, list[tuple[float, int]]] = {}
    commands = {
        "cp": ["cp", str(source), str(out / "copy.ckpt")],
        "cp + sync": ["sh", "-c", f"cp '{source}' '{out / 'copy.ckpt'}' && sync '{out / 'copy.ckpt'}'"],
        "sdhub prune --ema use --dtype fp16": [str(SDHUB), "prune", str(source), "-o", str(out / "sdhub.safetensors"),
                                                "--ema", "use", "--dtype", "fp16"],
    }
    if not args.no_baseline:
        commands["baseline: torch.load, swap EMA, .half(), save_file"] = [
            str(PYTHON), "-c", BASELINE, str(source), str(out / "baseline.safetensors")]
    subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    for round_number in range(args.rounds):
        for name, command in commands.items():
            runs.setdefault(name, []).append(measured(command))
            for leftover in out.iterdir():
                leftover.unlink()
        print(f"round {round_number + 1}: " + ", ".join(f"{n.split(' ')[0]} {v[-1][0]:.1f}s {v[-1][1] / 1e6:.0f}MB"
                                                         for n, v in runs.items()), file=sys.stderr)

    copy_time = statistics.median(wall for wall, _ in runs["cp"])
    # The same round's cp + sync is the yardstick: a change in the host's disk speed or load lands on both.
    ratios = {name: [wall / max(durable, 0.01) for (wall, _), (durable, _) in zip(values, runs["cp + sync"])]
              for name, values in runs.items()}
    lines = [
        f"Input: `{source.name}`, {source.stat().st_size / 1e9:.2f} GB (fp32 with EMA, torch zip); output an fp16 "
        f"EMA-only .safetensors. Page cache warm, median of {args.rounds} rounds, each running every command in "
        f"turn. Machine: {machine()}; file system: {file_system(out)}; measured {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| command | median wall s | vs cp | vs cp + sync (per round: median, range) | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, values in runs.items():
        wall = statistics.median(v[0] for v in values)
        rss = max(v[1] for v in values)
        spread = f"{statistics.median(ratios[name]):.2f}x ({min(ratios[name]):.2f}-{max(ratios[name]):.2f})"
        lines.append(f"| {name} | {wall:.1f} | {wall / copy_time:.2f}x | {spread} | {rss / 1e6:.0f} |")
    sdhub = "sdhub prune --ema use --dtype fp16"
    sdhub_ratio = statistics.median(ratios[sdhub])
    sdhub_rss = max(v[1] for v in runs[sdhub]) / 1e6
    lines += ["", "| goal | met | measured |", "| --- | --- | --- |",
              f"| `sdhub prune` wall <= 1.2x cp + sync (median of the rounds' ratios) | {met(sdhub_ratio <= 1.2)} "
              f"| {sdhub_ratio:.2f}x |",
              f"| peak RSS of `sdhub prune` <= 512 MB | {met(sdhub_rss <= 512)} | {sdhub_rss:.0f} MB |"]
    lines += ["", NOTE]
    table = "\n".join(lines)
    print(table)
    if not args.no_doc:
        write_section(SECTION, "## Pruning (`bench/prune.py`)\n\n" + table)


if __name__ == "__main__":
    main()
