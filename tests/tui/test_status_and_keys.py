"""What the bottom lines show: the running job's name, bar and ETA in full, the footer's quit key at
80x24 on every screen, and a detail pane that follows the catalog."""

from __future__ import annotations

import pytest
from textual.widgets import Footer, Label
from textual.widgets._footer import FooterKey
from textual.widgets._progress_bar import ETAStatus

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.tui.app import SdhubApp
from sdhub.tui.screens.details import DetailsScreen
from sdhub.tui.screens.downloads import DownloadsScreen
from sdhub.tui.screens.get import GetScreen
from sdhub.tui.widgets.activity import ActivityBar
from sdhub.tui.widgets.asset_detail import AssetDetail
from tui_support import HELD, LIBRARY, fake_sha256, shown_names, start_held_convert, wait_until

pytestmark = pytest.mark.anyio


def footer_keys(app: SdhubApp) -> list[str]:
    return [key.action for key in app.screen.query_one(Footer).query(FooterKey)]


def quit_key_fits(app: SdhubApp) -> bool:
    keys = [key for key in app.screen.query_one(Footer).query(FooterKey) if key.action == "quit"]
    return bool(keys) and keys[0].region.width > 0 and keys[0].region.right <= app.size.width


async def test_every_screen_shows_q_quit_at_80x24(library_home: Home) -> None:
    app = SdhubApp(library_home, resume_downloads=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: len(shown_names(app)) == len(LIBRARY), pilot)
        await wait_until(lambda: quit_key_fits(app), pilot)
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, DetailsScreen), pilot)
        await wait_until(lambda: quit_key_fits(app), pilot)
        await pilot.press("escape", "d")
        await wait_until(lambda: isinstance(app.screen, DownloadsScreen), pilot)
        await wait_until(lambda: quit_key_fits(app), pilot)
        await pilot.press("g")
        await wait_until(lambda: isinstance(app.screen, GetScreen), pilot)
        # The reference field has the focus and takes the q: the footer says how to leave it.
        await wait_until(lambda: footer_keys(app)[:1] == ["leave_field"], pilot)
        await pilot.press("escape")
        await wait_until(lambda: quit_key_fits(app), pilot)


async def test_the_activity_bar_shows_the_whole_job_name_and_the_eta(home_with_pickle: Home) -> None:
    app = SdhubApp(home_with_pickle)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_held_convert(app, pilot, "before")
        bar = app.screen.query_one(ActivityBar)
        label = bar.query_one("#activity-label", Label)
        eta = bar.query_one(ETAStatus)
        await wait_until(lambda: bar.display and label.region.width > 0, pilot)
        assert str(label.render()) == "Converting tiny-emb"
        assert label.region.width >= len("Converting tiny-emb")
        assert eta.region.width == 9 and eta.region.right <= app.size.width  # "--:--:--" or "00:01:23"
        HELD.gate.set()
        await wait_until(lambda: not app.jobs.running(), pilot, timeout=60)


async def test_the_detail_pane_shows_a_test_recorded_while_it_is_open(library_home: Home) -> None:
    app = SdhubApp(library_home, resume_downloads=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: len(shown_names(app)) == len(LIBRARY), pilot)
        pane = app.screen.query_one(AssetDetail)
        first = shown_names(app)[0]
        await wait_until(lambda: pane.details is not None and pane.details.asset.name == first, pilot)
        assert not pane.details.tests
        # `sdhub test` in another terminal records a verdict for the highlighted asset.
        with Catalog(library_home) as catalog:
            catalog.record_test(fake_sha256(first), {"kind": "smoke", "verdict": "black",
                                                     "reasons": ["the image is black"]})
        await wait_until(lambda: pane.details.tests and pane.details.tests[0]["verdict"] == "black", pilot)
        body = str(pane.query_one("#detail-body").render())
        assert "Last test" in body and "black" in body and "the image is black" in body
