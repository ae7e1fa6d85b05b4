"""Actions on the highlighted asset, from keys: prune makes a new asset; failures are notifications."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.testing import factory
from sdhub.tui.app import SdhubApp
from sdhub.tui.screens.library import CELL
from sdhub.tui.screens.dialogs import ConfirmDialog, ReferenceResultScreen, ReportScreen
from sdhub.tui.screens.prune import ConvertDialog, PruneDialog
from sdhub.tui.widgets.asset_table import AssetTable
from sdhub.tui.widgets.image_view import ImageView
from tui_support import shown_names, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def home_with_checkpoint(tmp_home: Home) -> Home:
    """A home with one real (tiny) SD1 checkpoint with EMA weights, as a pickle, scanned."""
    factory.sd1_checkpoint(tmp_home.folder("checkpoint") / "tiny-sd1-ema.ckpt", fmt="ckpt", ema=True)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    return tmp_home


async def test_prune_from_the_p_key_adds_the_pruned_file_as_a_new_asset(home_with_checkpoint: Home) -> None:
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(AssetTable)
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        await pilot.press("p")
        await wait_until(lambda: isinstance(app.screen, PruneDialog), pilot)
        output = app.screen.query_one("#output").value
        assert output == str(home_with_checkpoint.folder("checkpoint") / "tiny-sd1-ema-pruned.safetensors")
        await pilot.click("#ok")  # accept the defaults: EMA weights used, fp16, training state dropped
        # The pruned copy is a new asset, named after its own file (lineage links it to its source).
        await wait_until(lambda: len(table.rows) == 2, pilot, timeout=60)
        assert Path(output).is_file()
        assert sorted((row.cells[CELL["name"]], row.cells[CELL["file"]], row.cells[CELL["dtype"]])
                      for row in table.rows) == [
            ("tiny-sd1-ema", "tiny-sd1-ema.ckpt", "F32"),
            ("tiny-sd1-ema-pruned", "tiny-sd1-ema-pruned.safetensors", "F16")]  # fp16 by default
        await wait_until(lambda: any(n.title == "Prune finished" for n in app._notifications), pilot)
    with Catalog(home_with_checkpoint) as catalog:
        pruned = catalog.show(output)
        assert [link.name for link in pruned.ancestors] == ["tiny-sd1-ema"]
        assert pruned.asset.size < catalog.show("tiny-sd1-ema.ckpt").asset.size


async def test_escape_in_the_prune_dialog_changes_nothing(home_with_checkpoint: Home) -> None:
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        await pilot.press("p")
        await wait_until(lambda: isinstance(app.screen, PruneDialog), pilot)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert not any(home_with_checkpoint.folder("checkpoint").glob("*-pruned*"))


async def test_hash_shows_every_hash_and_agrees_with_the_catalog(home_with_checkpoint: Home) -> None:
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        await pilot.press("h")
        await wait_until(lambda: isinstance(app.screen, ReportScreen), pilot, timeout=30)
        note = str(app.screen.query_one(".dialog-note").render())
        assert "matches the catalog" in note


async def test_a_failing_action_becomes_an_error_notification(home_with_checkpoint: Home) -> None:
    checkpoint = home_with_checkpoint.folder("checkpoint") / "tiny-sd1-ema.ckpt"
    checkpoint.write_bytes(b"this is no longer a model")  # damaged after the scan
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        await pilot.press("i")
        await wait_until(lambda: any(n.severity == "error" for n in app._notifications), pilot, timeout=30)
        error = next(n for n in app._notifications if n.severity == "error")
        assert "tiny-sd1-ema.ckpt" in error.message
        assert app.is_running  # the app carries on


async def test_smoke_test_shows_the_verdict_and_the_image_and_records_it(tmp_home: Home) -> None:
    factory.sd1_checkpoint(tmp_home.folder("checkpoint") / "tiny-sd1.safetensors")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(AssetTable)
        await wait_until(lambda: shown_names(app) == ["tiny-sd1"], pilot)
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, ReferenceResultScreen), pilot, timeout=120)
        assert "Verdict: pass" in str(app.screen.query_one(".dialog-note").render())
        image = app.screen.query_one("#test-image", ImageView)
        assert image.path is not None and image.path.is_file() and image.path.suffix == ".png"
        await pilot.press("escape")
        # The verdict is now the asset's status in the table.
        await wait_until(lambda: table.rows[0].cells[CELL["status"]] == "pass", pilot)


async def test_y_copies_the_sha256_and_r_reveals_the_path(home_with_checkpoint: Home) -> None:
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        with Catalog(home_with_checkpoint) as catalog:
            sha256 = catalog.find("tiny-sd1-ema").sha256
        await pilot.press("y")
        await wait_until(lambda: app.clipboard == sha256, pilot)
        await pilot.press("r")
        path = str(home_with_checkpoint.folder("checkpoint") / "tiny-sd1-ema.ckpt")
        await wait_until(lambda: app.clipboard == path, pilot)


async def test_delete_asks_first_then_removes_the_file_and_the_row(home_with_checkpoint: Home) -> None:
    checkpoint = home_with_checkpoint.folder("checkpoint") / "tiny-sd1-ema.ckpt"
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        await pilot.press("delete")
        await wait_until(lambda: isinstance(app.screen, ConfirmDialog), pilot)
        await pilot.press("escape")  # the safe answer is the default
        await pilot.pause(0.2)
        assert checkpoint.is_file()
        await pilot.press("delete")
        await wait_until(lambda: isinstance(app.screen, ConfirmDialog), pilot)
        await pilot.press("y")
        await wait_until(lambda: shown_names(app) == [], pilot)
    assert not checkpoint.exists()


async def test_convert_from_the_c_key_writes_a_verified_safetensors_copy(home_with_checkpoint: Home) -> None:
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(AssetTable)
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        await pilot.press("c")
        await wait_until(lambda: isinstance(app.screen, ConvertDialog), pilot)
        output = Path(app.screen.query_one("#output").value)
        assert output == home_with_checkpoint.folder("checkpoint") / "tiny-sd1-ema.safetensors"
        await pilot.press("enter")  # a stray enter opens the first option; it starts nothing
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConvertDialog) and not app.jobs.running()
        await pilot.press("escape")  # closes the option's list, not the dialog
        assert isinstance(app.screen, ConvertDialog)
        await pilot.click("#ok")
        await wait_until(lambda: any(n.title == "Converting tiny-sd1-ema" and str(output) in n.message
                                     for n in app._notifications), pilot)
        await wait_until(lambda: len(table.rows) == 2, pilot, timeout=60)
    assert output.is_file()
    with Catalog(home_with_checkpoint) as catalog:
        converted = catalog.show(str(output))
        assert converted.asset.format == "safetensors"
        assert [link.name for link in converted.ancestors] == ["tiny-sd1-ema"]


async def test_inspect_shows_what_the_file_is(home_with_checkpoint: Home) -> None:
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        await pilot.press("i")
        await wait_until(lambda: isinstance(app.screen, ReportScreen), pilot, timeout=60)
        report = str(app.screen.query_one(".dialog-body").render())
        assert "architecture: sd1" in report and "kind: checkpoint" in report


async def test_the_asuka_test_asks_before_drawing_a_model_that_is_not_its_own(home_with_checkpoint: Home) -> None:
    app = SdhubApp(home_with_checkpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: shown_names(app) == ["tiny-sd1-ema"], pilot)
        await pilot.press("a")
        await wait_until(lambda: isinstance(app.screen, ConfirmDialog), pilot, timeout=60)
        question = " ".join(str(label.render()) for label in app.screen.query("Static"))
        assert "925997e9" in question and "Draw it anyway?" in question and "--force" not in question
        await pilot.press("escape")  # nothing is drawn and nothing recorded
        await pilot.pause(0.2)
        assert not isinstance(app.screen, (ConfirmDialog, ReferenceResultScreen))
    with Catalog(home_with_checkpoint) as catalog:
        assert catalog.show("tiny-sd1-ema").tests == []
