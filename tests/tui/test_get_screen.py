"""Getting models from the imitation Civitai server through the get screen, with progress."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import DataTable

from sdhub.config import Home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer
from sdhub.tui.app import SdhubApp
from sdhub.tui.screens.first_run import FirstRunScreen
from sdhub.tui.screens.get import GetScreen
from sdhub.tui.widgets.asset_detail import AssetDetail
from sdhub.tui.widgets.downloads_panel import DownloadsPanel
from sdhub.tui.widgets.image_view import ImageView
from tui_support import civitai_model, shown_names, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def served_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("served")
    # The checkpoint is large enough (about 20 MB, many 1 MiB chunks) for progress to show midway.
    return {"checkpoint": factory.sd1_checkpoint(folder / "synth.safetensors"),
            "lora": factory.lora(folder / "watercolor.safetensors")}


@pytest.fixture
def civitai(served_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    """The imitation Civitai serving a checkpoint (slowly: about 3 s on its one connection) and a LoRA."""
    with CivitaiServer() as server:
        server.add_model(civitai_model(501, 601, 701, name="Synthwave Punk", file_name="synthwavePunk_v10.safetensors",
                                       model_type="Checkpoint", trained_words=("snthwve",), downloads=900,
                                       images=1),
                         contents={701: served_files["checkpoint"]})
        server.add_model(civitai_model(502, 602, 702, name="Watercolor Wash", file_name="watercolorWash.safetensors",
                                       downloads=50), contents={702: served_files["lora"]})
        server.served(701).trickle = served_files["checkpoint"].stat().st_size // 3
        # One connection per client, so the download cannot add connections and stays slow enough to watch.
        server.served(701).connection_limit = 1
        monkeypatch.setenv("SDHUB_CIVITAI_URL", server.url)
        yield server


async def watch_download(app: SdhubApp, pilot) -> list[tuple[float, float | None, float | None]]:
    """Wait for the one download to end; return the (completed, total, speed) seen while it ran."""
    seen: list[tuple[float, float | None, float | None]] = []
    await wait_until(lambda: app.downloads.jobs, pilot)
    job = next(iter(app.downloads.jobs.values()))

    def finished() -> bool:
        seen.append((job.completed, job.total, job.speed))
        return job.status in ("done", "failed", "cancelled")

    await wait_until(finished, pilot, timeout=60)
    assert job.status == "done", job.error
    return seen


async def test_a_pasted_civitai_reference_downloads_with_progress_and_joins_the_library(
        tmp_home: Home, civitai: CivitaiServer) -> None:
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(100, 30)) as pilot:
        # An empty home opens on the first-run screen, which offers to get a model.
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.click("#get")
        await wait_until(lambda: isinstance(app.screen, GetScreen), pilot)
        await pilot.press(*"civitai:501@601", "enter")
        seen = await watch_download(app, pilot)

        total = seen[-1][1]
        assert total and seen[-1][0] == total
        assert any(0 < completed < total for completed, _, _ in seen), "no progress was shown between 0 and 100%"
        assert any(speed for _, _, speed in seen), "no download speed (and so no ETA) was shown"
        table = app.screen.query_one(DownloadsPanel).table
        await wait_until(lambda: str(table.get_row_at(0)[1]) == "done", pilot)
        row = table.get_row_at(0)
        assert row[0] == "synthwavePunk_v10.safetensors"
        assert "100%" in str(row[2])

        # The new row appears in the library, with Civitai's trigger words and preview beside it.
        await pilot.press("escape", "l")
        await wait_until(lambda: len(shown_names(app)) == 1, pilot)
        pane = app.screen.query_one(AssetDetail)
        await wait_until(lambda: pane.details is not None, pilot)
        assert "snthwve" in str(pane.query_one("#detail-body").render())
        preview = pane.query_one(ImageView)
        assert preview.display and preview.path is not None and preview.path.is_file()
        await pilot.press("w")  # trigger words, ready to paste into a prompt
        await wait_until(lambda: app.clipboard == "snthwve", pilot)
    landed = tmp_home.folder("checkpoint") / "synthwavePunk_v10.safetensors"
    assert landed.is_file()


async def test_search_civitai_then_pick_a_version_downloads_it(tmp_home: Home, civitai: CivitaiServer) -> None:
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.press("escape")
        await pilot.press("g")
        await wait_until(lambda: isinstance(app.screen, GetScreen), pilot)
        screen = app.screen
        screen.query_one("#query").focus()
        await pilot.press(*"water", "enter")
        models = screen.query_one("#models")
        await wait_until(lambda: models.row_count == 1, pilot)
        assert str(models.get_row_at(0)[0]) == "Watercolor Wash"
        await pilot.press("enter")  # choose the model: its versions are listed
        versions = screen.query_one("#versions")
        assert versions.has_focus and versions.row_count == 1
        await pilot.press("enter")  # choose the version: the download starts
        await watch_download(app, pilot)
    assert (tmp_home.folder("lora") / "watercolorWash.safetensors").is_file()


async def test_a_bad_reference_is_an_error_notification(tmp_home: Home) -> None:
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.press("escape", "g")
        await wait_until(lambda: isinstance(app.screen, GetScreen), pilot)
        await pilot.press(*"not a model reference", "enter")
        await wait_until(lambda: any(n.severity == "error" for n in app._notifications), pilot)
        error = next(n for n in app._notifications if n.severity == "error")
        assert "accepted" in error.message.lower() or "civitai" in error.message.lower()
        job = next(iter(app.downloads.jobs.values()))
        assert job.status == "failed"
        assert app.is_running


def storage_ranges(server: CivitaiServer) -> list[str]:
    """The Range headers the client sent to the storage host (a resumed download asks for one)."""
    return [r.headers.get("Range", "") for r in server.requests_to("storage") if "/models/" in r.path]


async def test_cancel_keeps_the_partial_file_and_retry_resumes_it(tmp_home: Home, civitai: CivitaiServer) -> None:
    civitai.served(701).trickle = civitai.served(701).size // 6  # about 6 s: time to cancel midway
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.press("escape", "d")
        app.downloads.add("civitai:501@601")
        job = next(iter(app.downloads.jobs.values()))
        await wait_until(lambda: job.completed > 0, pilot, timeout=30)
        await pilot.press("x")
        await wait_until(lambda: job.status == "cancelled", pilot, timeout=30)
        assert not (tmp_home.folder("checkpoint") / "synthwavePunk_v10.safetensors").exists()
        table = app.screen.query_one(DownloadsPanel).table
        await wait_until(lambda: str(table.get_row_at(0)[1]) == "cancelled", pilot)

        civitai.served(701).trickle = None
        await pilot.press("r")
        await wait_until(lambda: job.status == "done", pilot, timeout=60)
    assert (tmp_home.folder("checkpoint") / "synthwavePunk_v10.safetensors").is_file()
    assert any(value.startswith("bytes=") and not value.startswith("bytes=0-") for value in storage_ranges(civitai))


async def test_a_download_interrupted_by_quitting_resumes_when_the_app_starts_again(
        tmp_home: Home, civitai: CivitaiServer) -> None:
    civitai.served(701).trickle = civitai.served(701).size // 6
    first = SdhubApp(tmp_home)
    async with first.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: isinstance(first.screen, FirstRunScreen), pilot)
        first.downloads.add("civitai:501@601")
        job = next(iter(first.downloads.jobs.values()))
        await wait_until(lambda: job.completed > 0, pilot, timeout=30)
        await pilot.press("escape", "q")
    for _ in range(200):  # the download thread notices within a progress report (0.2 s)
        if job.status != "running":
            break
        await asyncio.sleep(0.05)
    assert job.status == "interrupted"
    assert not (tmp_home.folder("checkpoint") / "synthwavePunk_v10.safetensors").exists()

    civitai.served(701).trickle = None
    second = SdhubApp(tmp_home)
    async with second.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: second.downloads.jobs, pilot)
        resumed = next(iter(second.downloads.jobs.values()))
        assert resumed.ref == "civitai:501@601"
        await wait_until(lambda: resumed.status == "done", pilot, timeout=60)
    assert (tmp_home.folder("checkpoint") / "synthwavePunk_v10.safetensors").is_file()
    assert any(value.startswith("bytes=") and not value.startswith("bytes=0-") for value in storage_ranges(civitai))


async def test_changing_a_search_filter_searches_civitai_again(tmp_home: Home, civitai: CivitaiServer) -> None:
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.press("escape", "g")
        await wait_until(lambda: isinstance(app.screen, GetScreen), pilot)
        screen = app.screen
        screen.query_one("#query").focus()
        await pilot.press("enter")  # no words: everything
        models = screen.query_one("#models")
        await wait_until(lambda: models.row_count == 2, pilot)
        screen.query_one("#type").value = "Checkpoint"
        await wait_until(lambda: models.row_count == 1 and str(models.get_row_at(0)[0]) == "Synthwave Punk", pilot)


async def test_what_a_download_left_out_is_shown_as_a_warning(tmp_home: Home, hub,
                                                              pipeline_files: dict[str, bytes]) -> None:
    hub.add_repo("org/sd-like", {**pipeline_files, "v1-5-pruned.ckpt": b"c" * 5000})
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.click("#get")
        await wait_until(lambda: isinstance(app.screen, GetScreen), pilot)
        await pilot.press(*"hf:org/sd-like", "enter")
        await watch_download(app, pilot)
        await wait_until(lambda: any(n.severity == "warning" for n in app._notifications), pilot)
        warning = next(n for n in app._notifications if n.severity == "warning")
        assert warning.title == "sd-like" and "left out 1 file (" in warning.message
        assert "v1-5-pruned.ckpt" in warning.message
    assert not (tmp_home.folder("checkpoint") / "sd-like" / "v1-5-pruned.ckpt").exists()


async def test_a_pasted_collection_lists_its_models_to_choose_from(tmp_home: Home, civitai: CivitaiServer) -> None:
    civitai.add_collection(42742, "Picks", [502])
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.press("escape", "g")
        await wait_until(lambda: isinstance(app.screen, GetScreen), pilot)
        await pilot.press(*"https://civitai.com/collections/42742", "enter")
        models = app.screen.query_one("#models", DataTable)
        await wait_until(lambda: models.row_count == 1, pilot)
        assert str(models.get_row_at(0)[0]).startswith("Watercolor Wash")
        assert not app.downloads.jobs  # listed, not downloaded
        await pilot.press("enter", "enter")  # the model, then its version: the download starts
        await watch_download(app, pilot)
