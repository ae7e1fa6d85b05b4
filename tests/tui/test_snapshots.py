"""Snapshots of the library, details, get and downloads screens (fixed data, 100x30, no clocks).

Update them after a deliberate change with ``pytest tests/tui --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdhub.config import Home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer
from sdhub.tui.app import SdhubApp
from sdhub.tui.screens.details import DetailsScreen
from sdhub.tui.widgets.asset_detail import AssetDetail
from sdhub.tui.widgets.asset_table import AssetTable
from tui_support import SNAPSHOT_SIZE, civitai_model, library_screen, wait_until


async def settle(pilot) -> None:
    """Wait for workers to finish and drop notifications (their timing varies)."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    pilot.app.clear_notifications()
    await pilot.pause()


def test_library_screen(snap_compare, snapshot_home: Home) -> None:
    async def ready(pilot) -> None:
        table = library_screen(pilot.app).query_one(AssetTable)
        pane = library_screen(pilot.app).query_one(AssetDetail)
        await wait_until(lambda: table.row_count == 7, pilot)
        await pilot.press("down", "down", "down")  # old-broken-model: problems in red
        await wait_until(lambda: pane.details is not None and pane.details.asset.name == "old-broken-model", pilot)
        await settle(pilot)

    assert snap_compare(SdhubApp(snapshot_home, resume_downloads=False), terminal_size=SNAPSHOT_SIZE,
                        run_before=ready)


def test_library_screen_searching(snap_compare, snapshot_home: Home) -> None:
    async def ready(pilot) -> None:
        table = library_screen(pilot.app).query_one(AssetTable)
        await wait_until(lambda: table.row_count == 7, pilot)
        await pilot.press("slash", *"xl")
        await wait_until(lambda: table.row_count == 2, pilot)
        library_screen(pilot.app).query_one("#search").cursor_blink = False  # a blinking cursor is timing
        await settle(pilot)

    assert snap_compare(SdhubApp(snapshot_home, resume_downloads=False), terminal_size=SNAPSHOT_SIZE,
                        run_before=ready)


def test_details_screen(snap_compare, snapshot_home: Home) -> None:
    async def ready(pilot) -> None:
        table = library_screen(pilot.app).query_one(AssetTable)
        await wait_until(lambda: table.row_count == 7, pilot)
        await pilot.press("down", "enter")
        await wait_until(lambda: isinstance(pilot.app.screen, DetailsScreen)
                         and pilot.app.screen.query_one(AssetDetail).details is not None, pilot)
        await settle(pilot)

    assert snap_compare(SdhubApp(snapshot_home, resume_downloads=False), terminal_size=SNAPSHOT_SIZE,
                        run_before=ready)


@pytest.fixture
def civitai_with_two_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    lora = factory.lora(tmp_path / "served.safetensors")
    with CivitaiServer() as server:
        server.add_model(civitai_model(601, 701, 801, name="Watercolor Wash", file_name="watercolorWash.safetensors",
                                       trained_words=("watercolor",), downloads=1200), contents={801: lora})
        server.add_model(civitai_model(602, 702, 802, name="Watercolor XL", file_name="watercolorXL.safetensors",
                                       base="SDXL 1.0", downloads=300), contents={802: lora})
        monkeypatch.setenv("SDHUB_CIVITAI_URL", server.url)
        yield server


def test_get_screen_with_search_results(snap_compare, snapshot_home: Home, civitai_with_two_models) -> None:
    async def ready(pilot) -> None:
        await pilot.press("g")
        screen = pilot.app.screen
        screen.query_one("#query").focus()
        await pilot.press(*"watercolor", "enter")
        models = screen.query_one("#models")
        await wait_until(lambda: models.row_count == 2, pilot)
        await settle(pilot)

    assert snap_compare(SdhubApp(snapshot_home, resume_downloads=False), terminal_size=SNAPSHOT_SIZE,
                        run_before=ready)


def test_downloads_screen(snap_compare, snapshot_home: Home, civitai_with_two_models) -> None:
    async def ready(pilot) -> None:
        app = pilot.app
        app.downloads.add("civitai:601@701")
        app.downloads.add("not a model reference")  # a failed row; its reason shows below the table
        await wait_until(lambda: all(job.status in ("done", "failed") for job in app.downloads.jobs.values()),
                         pilot, timeout=60)
        await pilot.press("d")
        await settle(pilot)

    assert snap_compare(SdhubApp(snapshot_home, resume_downloads=False), terminal_size=SNAPSHOT_SIZE,
                        run_before=ready)
