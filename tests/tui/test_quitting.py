"""Quitting with a job running: the app asks, cancels the job through its progress, shows that it
is stopping, waits for it, and exits cleanly; what finished before the end is in the catalog.

The jobs are real conversions of a small embedding, held at a gate (``tui_support.HELD``) so each
test decides exactly when the job reaches its next progress report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer
from sdhub.tui.app import SdhubApp
from sdhub.tui.screens.dialogs import ConfirmDialog
from sdhub.tui.screens.quitting import StoppingScreen
from tui_support import HELD, civitai_model, start_held_convert, wait_until

pytestmark = pytest.mark.anyio


def output_of(home: Home) -> Path:
    return home.folder("embedding") / "tiny-emb.safetensors"


def screen_text(screen) -> str:
    return " ".join(str(static.render()) for static in screen.query("Static"))


async def test_quit_with_a_job_running_asks_cancels_it_and_exits_when_it_stopped(home_with_pickle: Home) -> None:
    app = SdhubApp(home_with_pickle)
    async with app.run_test(size=(100, 30)) as pilot:
        await start_held_convert(app, pilot, "before")
        await pilot.press("q")
        await wait_until(lambda: isinstance(app.screen, ConfirmDialog), pilot)
        assert "Converting tiny-emb" in screen_text(app.screen)
        await pilot.press("y")  # cancel the job and quit
        await wait_until(lambda: isinstance(app.screen, StoppingScreen), pilot)
        await pilot.pause(0.3)
        assert app.return_code is None  # still waiting: the job has not reached a progress report
        HELD.gate.set()  # the convert starts, reports, and stops there
        await wait_until(lambda: app.return_code is not None, pilot)
    assert app.return_code == 0
    assert any("cancelled" in note for note in app.exit_notes)
    assert sorted(p.name for p in output_of(home_with_pickle).parent.iterdir() if p.is_file()) == ["tiny-emb.pt"]
    with Catalog(home_with_pickle) as catalog:
        assert [asset.name for asset in catalog.list_assets()] == ["tiny-emb"]


async def test_a_job_that_finishes_while_quitting_is_catalogued(home_with_pickle: Home) -> None:
    app = SdhubApp(home_with_pickle)
    async with app.run_test(size=(100, 30)) as pilot:
        await start_held_convert(app, pilot, "after")  # written; its last report is behind it
        await pilot.press("q")
        await wait_until(lambda: isinstance(app.screen, ConfirmDialog), pilot)
        await pilot.press("y")
        await wait_until(lambda: isinstance(app.screen, StoppingScreen), pilot)
        HELD.gate.set()
        await wait_until(lambda: app.return_code is not None, pilot)
    assert app.return_code == 0
    assert "Converting tiny-emb: finished before sdhub quit" in app.exit_notes  # printed after the app closes
    with Catalog(home_with_pickle) as catalog:
        converted = catalog.show(str(output_of(home_with_pickle)))
        assert converted.asset.format == "safetensors"


async def test_keep_working_leaves_the_job_running_and_quitting_after_it_needs_no_question(
        home_with_pickle: Home) -> None:
    app = SdhubApp(home_with_pickle)
    async with app.run_test(size=(100, 30)) as pilot:
        await start_held_convert(app, pilot, "before")
        await pilot.press("q")
        await wait_until(lambda: isinstance(app.screen, ConfirmDialog), pilot)
        await pilot.press("enter")  # "Keep working" has the focus: a stray enter quits nothing
        await wait_until(lambda: not isinstance(app.screen, ConfirmDialog), pilot)
        HELD.gate.set()
        await wait_until(lambda: any(n.title == "Convert finished" for n in app._notifications), pilot, timeout=60)
        assert app.return_code is None
        await wait_until(lambda: not app.jobs.running(), pilot)
        await pilot.press("q")
        await wait_until(lambda: app.return_code is not None, pilot)
    assert output_of(home_with_pickle).is_file()


async def test_ctrl_c_while_stopping_explains_and_twice_leaves_without_waiting(home_with_pickle: Home) -> None:
    app = SdhubApp(home_with_pickle)
    async with app.run_test(size=(100, 30)) as pilot:
        await start_held_convert(app, pilot, "before")
        await pilot.press("q")
        await wait_until(lambda: isinstance(app.screen, ConfirmDialog), pilot)
        await pilot.press("y")
        await wait_until(lambda: isinstance(app.screen, StoppingScreen), pilot)
        await pilot.press("ctrl+c")
        await wait_until(lambda: any(n.title == "Stopping" for n in app._notifications), pilot)
        assert app.return_code is None
        await pilot.press("ctrl+c")
        await wait_until(lambda: app.return_code is not None, pilot)
        HELD.gate.set()  # the app left while the job was held; let the thread end with the test
    assert app.return_code == 130
    assert app.left_running == ["Converting tiny-emb"]
    assert not any(note.startswith("Stopping") for note in app.exit_notes)


async def test_quitting_during_a_download_interrupts_it_so_that_it_resumes_next_time(
        tmp_home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lora = factory.lora(tmp_path / "served.safetensors")
    with CivitaiServer() as server:
        server.add_model(civitai_model(601, 701, 801, name="Watercolor Wash", file_name="watercolorWash.safetensors"),
                         contents={801: lora})
        served = server.served(801)
        served.hold_at = lora.stat().st_size // 2  # the download waits half-way until the test says
        monkeypatch.setenv("SDHUB_CIVITAI_URL", server.url)
        app = SdhubApp(tmp_home)
        async with app.run_test(size=(100, 30)) as pilot:
            job = app.downloads.add("civitai:601@701")
            await wait_until(lambda: any(r.path.startswith("/models/") for r in server.requests_to("storage")), pilot)
            await pilot.press("ctrl+q")  # the empty home's first-run screen is up: ctrl+q quits from anywhere
            await wait_until(lambda: isinstance(app.screen, ConfirmDialog), pilot)
            assert "(resumes next time)" in screen_text(app.screen)
            await pilot.press("y")
            await wait_until(lambda: isinstance(app.screen, StoppingScreen), pilot)
            await pilot.pause(0.3)
            assert app.return_code is None  # the download has not reported since: still stopping
            served.release.set()
            await wait_until(lambda: app.return_code is not None, pilot)
    assert app.return_code == 0 and job.status == "interrupted"
    remembered = json.loads(app.downloads.state_path.read_text())
    assert [entry["status"] for entry in remembered] == ["interrupted"]  # started again next time
    assert not (tmp_home.folder("lora") / "watercolorWash.safetensors").exists()
