"""Data and helpers for the TUI tests: catalogs filled through the catalog's own API.

``seed_assets`` records assets the way a scan does (``sdhub.catalog.store`` with a file analysis),
but with made-up hashes and sizes, so the table's content is fixed and snapshots are stable.
Tests that act on files (prune, downloads) use factory-made files and a real scan instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sdhub.catalog import Catalog
from sdhub.catalog.analysis import FileAnalysis, FileIdentity
from sdhub.catalog import store
from sdhub.catalog.db import write_transaction
from sdhub.config import Home
from sdhub.testing.civitai_server import civitai_model  # noqa: F401 - the TUI tests import it from here

#: Fixed timestamps so the details pane looks the same on every run.
FIXED_TIME = "2026-01-02T03:04:05Z"
#: Snapshot homes live at a fixed path: the header and the details pane show it.
SNAPSHOT_ROOT = Path("/tmp/sdhub-tui-snapshots")
SNAPSHOT_SIZE = (100, 30)


@dataclass(frozen=True)
class Seed:
    name: str
    kind: str
    base: str | None
    size: int
    dtype: str = "fp16"
    architecture: str | None = None
    problems: tuple[str, ...] = ()


LIBRARY = (
    Seed("dreamy-anime-v1", "checkpoint", "SD 1.5", 2_132_625_408, "fp16", "sd1"),
    Seed("photo-real-xl", "checkpoint", "SDXL 1.0", 6_938_040_682, "fp16", "sdxl"),
    Seed("old-broken-model", "checkpoint", "SD 1.5", 4_265_380_512, "fp32", "sd1",
         ("3 tensors contain NaN",)),
    Seed("pixel-art-style", "lora", "SD 1.5", 151_108_831, "fp16", "sd1-lora"),
    Seed("watercolor-xl", "lora", "SDXL 1.0", 228_458_472, "fp16", "sdxl-lora"),
    Seed("bad-hands-5", "embedding", "SD 1.5", 7_020, "fp32", "sd1-embedding"),
    Seed("kl-f8-anime2", "vae", "SD 1.5", 334_695_179, "fp32", "sd1-vae"),
)


def fake_sha256(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def seed_assets(home: Home, seeds: tuple[Seed, ...] | list[Seed] = LIBRARY) -> dict[str, str]:
    """Record each seed as an asset with one file in its kind's folder; returns name -> sha256."""
    shas = {}
    with Catalog(home) as catalog:
        db = catalog.db
        with write_transaction(db):
            for index, seed in enumerate(seeds):
                sha = fake_sha256(seed.name)
                path = home.folder(seed.kind) / f"{seed.name}.safetensors"
                identity = FileIdentity(seed.size, 1_700_000_000_000_000_000 + index, 1000 + index, 1)
                analysis = FileAnalysis(
                    path=str(path), identity=identity,
                    hashes={"sha256": sha, "autov2": sha[:10], "crc32": sha[10:18]},
                    inspect={"kind": seed.kind, "architecture": seed.architecture, "base_model": seed.base,
                             "format": "safetensors", "dtype": seed.dtype, "metadata": {}},
                    problems=list(seed.problems),
                )
                asset_id, _ = store.upsert_asset(db, analysis)
                store.put_file(db, asset_id, str(path), identity, seed.kind)
                shas[seed.name] = sha
            db.execute("UPDATE assets SET added_at = ?, updated_at = ?", [FIXED_TIME, FIXED_TIME])
            db.execute("UPDATE files SET added_at = ?, seen_at = ?", [FIXED_TIME, FIXED_TIME])
    return shas


async def wait_until(condition: Callable[[], bool], pilot, timeout: float = 30.0) -> None:
    """Let the app run until ``condition()`` holds (workers finish in threads), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            notes = [f"{n.title}: {n.message}" for n in pilot.app._notifications]
            raise AssertionError(f"the app did not reach the expected state in time; notifications: {notes}")
        await pilot.pause(0.02)
    await pilot.pause()  # let a screen that just appeared lay itself out before keys and clicks


def library_screen(app):
    """The library screen (the bottom of the library mode's stack), whatever is on top of it."""
    return app.get_screen_stack("library")[0]


def shown_names(app) -> list[str]:
    """The names in the library table, top to bottom."""
    from sdhub.tui.widgets.asset_table import AssetTable

    return [row.cells[0] for row in library_screen(app).query_one(AssetTable).rows]


class HeldJob:
    """Explicit synchronisation for tests of long jobs: the real library call runs in the app's
    worker thread, but waits at a gate (before starting, or after finishing) until the test opens it.

    Point ``backend.FEATURES["convert"]`` at ``"tui_support:held_convert"`` and set ``HELD.where``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self, where: str = "before") -> None:
        self.where = where  # "before": hold, then convert; "after": convert, then hold
        self.waiting = threading.Event()
        self.gate = threading.Event()

    def hold(self) -> None:
        self.waiting.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")


HELD = HeldJob()


def held_convert(source, output, progress, **options):
    """``sdhub.ops.convert.convert``, held at ``HELD``'s gate before or after it runs."""
    from sdhub.ops.convert import convert

    if HELD.where == "before":
        HELD.hold()
    report = convert(source, output, progress=progress, **options)
    if HELD.where == "after":
        HELD.hold()
    return report


async def start_held_convert(app, pilot, where: str) -> None:
    """Convert the highlighted asset from the c key; returns once the job waits at ``HELD``'s gate."""
    from sdhub.tui.screens.prune import ConvertDialog

    HELD.reset(where)
    await wait_until(lambda: len(shown_names(app)) == 1, pilot)
    await pilot.press("c")
    await wait_until(lambda: isinstance(app.screen, ConvertDialog), pilot)
    await pilot.click("#ok")
    await wait_until(HELD.waiting.is_set, pilot, timeout=60)
