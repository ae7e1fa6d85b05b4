"""TUI speed with a 10,000-asset catalog: startup to a usable library screen, and a keystroke in
the search box to the table showing the new matches.

* The catalog is filled through the catalog's own store functions with synthetic assets (names,
  kinds, base models, tags, trigger words and descriptions as Civitai data would give them); the
  files themselves are not needed to draw the library.
* Startup: a fresh process imports the TUI, builds the app and runs it headless until the table
  holds every asset (target: under 1.5 s). The import and the in-app part are also given apart.
* Keystrokes: with the app running, characters are typed into the search box one at a time (and
  erased again); each is timed from the key press until the table holds the new matches and the
  screen has been redrawn (target: median at most 100 ms).
* For reference, the time Textual's ``DataTable`` takes to show the same rows: the reason the
  library screen draws its table with the line API instead.

Prints a table and rewrites the ``tui`` section of docs/benchmarks.md.

    .venv/bin/python bench/tui.py [--assets 10000] [--no-doc]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from benchdoc import met, write_section  # bench/ is on sys.path when a script runs
from synthetic import WORDS, synthetic_listing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / ".data" / "tui"
SECTION = "tui"

from sdhub.catalog import Catalog, store  # noqa: E402
from sdhub.catalog.analysis import FileAnalysis, FileIdentity  # noqa: E402
from sdhub.catalog.db import write_transaction  # noqa: E402
from sdhub.config import ASSET_KINDS, Home, init_home  # noqa: E402

BASES = ("SD 1.5", "SD 1.5", "SDXL 1.0", "SDXL 1.0", "Pony", "Illustrious", "SD 2.1")
#: What is typed, one key at a time ("<" erases one character).
TYPING = ["a", "n", "i", "m", "e", "<", "<", "<", "<", "<", "p", "i", "x", "<", "<", "<",
          "d", "r", "a", "g", "o", "n", " ", "c", "a", "s", "t", "<", "<", "<", "<", "<", "<", "<", "<", "<",
          "w", "a", "t", "e", "r", "<", "<", "<", "<", "<", "n", "o", "i", "r"]


def make_catalog(root: Path, count: int, seed: int = 0) -> Home:
    """A home whose catalog holds ``count`` synthetic assets (one file row each)."""
    if root.exists():
        shutil.rmtree(root)
    home = init_home(root, "sdhub")
    rng = random.Random(seed)
    with Catalog(home) as catalog, write_transaction(catalog.db):
        for index in range(count):
            kind = ASSET_KINDS[index % len(ASSET_KINDS)]
            sha = f"{index:064x}"
            path = home.folder(kind) / f"asset-{index:05}.safetensors"
            identity = FileIdentity(rng.randint(10_000, 7_000_000_000), 1_700_000_000_000_000_000 + index, index, 1)
            analysis = FileAnalysis(path=str(path), identity=identity,
                                    hashes={"sha256": sha, "autov2": sha[:10]},
                                    inspect={"kind": kind, "architecture": "sd1", "base_model": rng.choice(BASES),
                                             "format": "safetensors", "dtype": rng.choice(("F16", "F32"))})
            asset_id, _ = store.upsert_asset(catalog.db, analysis, kind)
            store.put_file(catalog.db, asset_id, str(path), identity, kind)
            store.update_asset(catalog.db, asset_id, {
                **synthetic_listing(rng), "description": " ".join(rng.choice(WORDS) for _ in range(20)),
            })
    return home


def startup_in_fresh_process(home: Home, count: int) -> dict[str, float]:
    """Import, build and run the app in a new interpreter until the table holds every asset."""
    script = f"""
import asyncio, json, sys, time
started = time.perf_counter()
from sdhub.config import open_home
from sdhub.tui.app import SdhubApp
from sdhub.tui.widgets.asset_table import AssetTable

imported = time.perf_counter()
async def main():
    app = SdhubApp(open_home({str(home.root)!r}), resume_downloads=False)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(AssetTable)
        while table.row_count < {count}:
            await asyncio.sleep(0.001)
        await pilot.pause()
        ready = time.perf_counter()
    print(json.dumps({{"import_s": imported - started, "app_s": ready - imported, "total_s": ready - started}}))
asyncio.run(main())
"""
    runs = []
    for _ in range(3):
        answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                cwd=ROOT)
        runs.append(json.loads(answer.stdout.strip().splitlines()[-1]))
    return min(runs, key=lambda run: run["total_s"])


async def keystrokes(home: Home, count: int) -> dict[str, object]:
    """Type into the search box and time each keystroke until the table is redrawn with its answer."""
    from textual import events

    from sdhub.tui.app import SdhubApp
    from sdhub.tui.screens.library import LibraryScreen
    from sdhub.tui.widgets.asset_table import AssetTable

    app = SdhubApp(home, resume_downloads=False)
    latencies: list[float] = []
    shown: list[int] = []
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, LibraryScreen)
        table = screen.query_one(AssetTable)
        while table.row_count < count:
            await asyncio.sleep(0.001)
        await pilot.press("slash")
        await pilot.pause()
        # Note when the table draws its lines: the keystroke is done when the new rows are drawn.
        drawn = {"generation": -1, "at": 0.0}
        draw_line = table.render_line

        def render_line(y: int):
            if drawn["generation"] != table.generation:
                drawn["generation"], drawn["at"] = table.generation, time.perf_counter()
            return draw_line(y)

        table.render_line = render_line
        typed = ""
        for key in TYPING:
            previous = typed.strip()
            typed = typed[:-1] if key == "<" else typed + key
            name = "backspace" if key == "<" else ("space" if key == " " else key)
            character = None if key == "<" else key
            before = table.generation
            started = time.perf_counter()
            # Sent the way the terminal driver sends a key, without Pilot's waiting for idle.
            app._driver.send_message(events.Key(name, character))
            if typed.strip() == previous:  # a trailing space asks nothing new: not timed
                await pilot.pause()
                continue
            while not (table.generation != before and screen.query_state.text == typed.strip()
                       and drawn["generation"] == table.generation):
                await asyncio.sleep(0.0005)
            latencies.append(drawn["at"] - started)
            shown.append(table.row_count)
    ordered = sorted(latencies)
    return {"keys": len(latencies), "median_ms": statistics.median(latencies) * 1000,
            "p95_ms": ordered[int(len(ordered) * 0.95)] * 1000, "max_ms": ordered[-1] * 1000,
            "rows_min": min(shown), "rows_max": max(shown)}


async def datatable_reference(home: Home) -> float:
    """Seconds Textual's own DataTable needs to show the same rows (why the library has its own table)."""
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    from sdhub.tui.screens.library import COLUMNS, asset_row

    with Catalog(home) as catalog:
        rows = [asset_row(asset).cells for asset in catalog.list_assets()]

    class Reference(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable()

    app = Reference()
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(DataTable)
        table.add_columns(*(column.label for column in COLUMNS))
        await pilot.pause()
        started = time.perf_counter()
        table.add_rows(rows)
        await pilot.pause()
        return time.perf_counter() - started


def render(count: int, startup: dict[str, float], keys: dict[str, object], datatable_s: float) -> str:
    return "\n".join([
        "## TUI",
        "",
        f"`bench/tui.py` on {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}, headless at 100x30. Catalog: "
        f"{count:,} synthetic assets (names, tags, trigger words, descriptions). Keystrokes: {keys['keys']} "
        f"characters typed into and erased from the search box (one or two words), each timed from the key "
        f"press until the table shows the new matches ({keys['rows_min']:,} to {keys['rows_max']:,} rows) "
        "and the screen is redrawn. "
        "Startup: a fresh process, best of 3, from the first import to the full table on screen.",
        "",
        "| measure | result | target | met |",
        "| --- | --- | --- | --- |",
        f"| keystroke in search to table updated (median / p95 / max) | {keys['median_ms']:.0f} / "
        f"{keys['p95_ms']:.0f} / {keys['max_ms']:.0f} ms | ≤ 100 ms median | {met(keys['median_ms'] <= 100)} |",
        f"| startup to a usable library screen | {startup['total_s']:.2f} s (imports {startup['import_s']:.2f} s, "
        f"app {startup['app_s']:.2f} s) | < 1.5 s | {met(startup['total_s'] < 1.5)} |",
        f"| (for reference: Textual's DataTable showing the same {count:,} rows) | {datatable_s * 1000:.0f} ms "
        "| | |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=10_000, help="How many assets the catalog holds.")
    parser.add_argument("--no-doc", action="store_true", help="Do not update docs/benchmarks.md.")
    args = parser.parse_args()
    started = time.perf_counter()
    home = make_catalog(DATA / "home", args.assets)
    print(f"catalog of {args.assets:,} assets built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    startup = startup_in_fresh_process(home, args.assets)
    keys = asyncio.run(keystrokes(home, args.assets))
    datatable_s = asyncio.run(datatable_reference(home))
    text = render(args.assets, startup, keys, datatable_s)
    print(text)
    if not args.no_doc:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
