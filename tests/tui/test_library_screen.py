"""The library screen driven with keys: search, filters, sorting, details, help, themes."""

from __future__ import annotations

import pytest

from sdhub.catalog import Catalog
from sdhub.config import ASSET_KINDS, Home
from sdhub.testing import factory
from sdhub.tui.app import SdhubApp
from sdhub.tui.screens.library import CELL
from sdhub.tui.screens.details import DetailsScreen
from sdhub.tui.screens.help import HelpScreen
from sdhub.tui.widgets.asset_detail import AssetDetail
from sdhub.tui.widgets.asset_table import AssetTable
from tui_support import LIBRARY, shown_names, wait_until

pytestmark = pytest.mark.anyio


async def loaded(app: SdhubApp, pilot, count: int | None = None) -> AssetTable:
    table = app.screen.query_one(AssetTable)
    await wait_until(lambda: table.generation > 0 and (count is None or table.row_count == count), pilot)
    return table


async def test_the_table_lists_every_asset_sorted_by_name(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        assert shown_names(app) == sorted(seed.name for seed in LIBRARY)
        status = str(app.screen.query_one("#status-line").render())
        assert "7 of 7 assets" in status


async def test_typing_in_the_search_box_narrows_the_table(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        table = await loaded(app, pilot, len(LIBRARY))
        await pilot.press("slash")
        assert app.focused.id == "search"
        await pilot.press("p", "i", "x")
        await wait_until(lambda: shown_names(app) == ["pixel-art-style"], pilot)
        # Deleting letters widens the search again, keystroke by keystroke.
        await pilot.press("backspace", "backspace", "backspace", "w", "a", "t")
        await wait_until(lambda: shown_names(app) == ["watercolor-xl"], pilot)
        await pilot.press("escape")
        assert app.focused is table


async def test_a_search_that_matches_nothing_says_so(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        await pilot.press("slash", *"zebra")
        await wait_until(lambda: shown_names(app) == [], pilot)
        assert "0 of 7 assets" in str(app.screen.query_one("#status-line").render())


async def test_filter_by_kind_with_the_k_key(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        # Each press shows the next kind (checkpoint, diffusion-model, lora...), then all kinds again.
        for kind in ASSET_KINDS:
            await pilot.press("k")
            expected = sorted(seed.name for seed in LIBRARY if seed.kind == kind)
            await wait_until(lambda expected=expected: shown_names(app) == expected, pilot)
        await pilot.press("k")
        await wait_until(lambda: len(shown_names(app)) == len(LIBRARY), pilot)


async def test_kind_filter_and_search_combine(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        await pilot.press("k", "k", "k")  # checkpoint, diffusion-model, lora
        await wait_until(lambda: shown_names(app) == ["pixel-art-style", "watercolor-xl"], pilot)
        await pilot.press("slash", *"xl")
        await wait_until(lambda: shown_names(app) == ["watercolor-xl"], pilot)


async def test_filter_by_base_model(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        await pilot.press("b", "b")  # the bases are offered in order: SD 1.5, SDXL 1.0
        await wait_until(lambda: shown_names(app) == ["photo-real-xl", "watercolor-xl"], pilot)


async def test_sorting_by_size_puts_the_largest_first(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        await pilot.press("o")
        expected = [seed.name for seed in sorted(LIBRARY, key=lambda s: -s.size)]
        await wait_until(lambda: shown_names(app) == expected, pilot)
        assert "sorted by size" in str(app.screen.query_one("#status-line").render())


async def test_the_detail_pane_follows_the_cursor(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        pane = app.screen.query_one(AssetDetail)
        await wait_until(lambda: pane.details is not None and pane.details.asset.name == "bad-hands-5", pilot)
        await pilot.press("down", "down", "down")
        await wait_until(lambda: pane.details.asset.name == "old-broken-model", pilot)
        body = str(pane.query_one("#detail-body").render())
        assert "3 tensors contain NaN" in body
        assert str(library_home.folder("checkpoint") / "old-broken-model.safetensors") in body


async def test_enter_opens_the_details_and_escape_goes_back(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        await pilot.press("down", "enter")
        assert isinstance(app.screen, DetailsScreen)
        detail = app.screen.query_one(AssetDetail)
        await wait_until(lambda: detail.details is not None, pilot)
        assert detail.details.asset.name == "dreamy-anime-v1"
        body = str(detail.query_one("#detail-body").render())
        assert detail.details.asset.sha256 in body
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailsScreen)


async def test_question_mark_shows_the_keys(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_ctrl_t_switches_between_dark_and_light(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot)
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"


async def test_the_table_survives_resizing_down_to_80x24(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        assert app.screen.query_one("#detail-pane").display
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not app.screen.query_one("#detail-pane").display
        await pilot.press("end")
        assert app.screen.query_one(AssetTable).cursor_key is not None
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert app.screen.query_one("#detail-pane").display


async def test_q_quits(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot)
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0 or not app.is_running


async def test_assets_added_by_another_process_appear_without_a_restart(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(app, pilot, len(LIBRARY))
        # Meanwhile, `sdhub get` in another terminal catalogs a new LoRA.
        lora = factory.lora(library_home.folder("lora") / "neon-glow.safetensors")
        with Catalog(library_home) as catalog:
            catalog.add_file(lora)
        await wait_until(lambda: "neon-glow" in shown_names(app), pilot)


async def test_clicking_the_size_header_sorts_by_size(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        table = await loaded(app, pilot, len(LIBRARY))
        x = next(x for x in range(table.size.width) if table._column_at(x) == "size")
        await pilot.click(AssetTable, offset=(x + 1, 1))  # +1: the table's border
        expected = [seed.name for seed in sorted(LIBRARY, key=lambda s: -s.size)]
        await wait_until(lambda: shown_names(app) == expected, pilot)


async def test_ctrl_r_scans_new_files_in_and_marks_vanished_ones_missing(library_home: Home) -> None:
    # The seeded assets have no files on disk; one real LoRA is dropped into the home.
    factory.lora(library_home.folder("lora") / "fresh-style.safetensors")
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        table = await loaded(app, pilot, len(LIBRARY))
        await pilot.press("ctrl+r")
        await wait_until(lambda: "fresh-style" in shown_names(app), pilot)
        await wait_until(lambda: any(n.title == "Scan finished" for n in app._notifications), pilot)
        status = {row.cells[CELL["name"]]: row.cells[CELL["status"]] for row in table.rows}
        assert status["fresh-style"] == ""
        assert status["dreamy-anime-v1"] == "missing"


def test_the_details_of_a_pipeline_folder_list_its_files(tmp_home: Home, pipeline_files: dict[str, bytes]) -> None:
    from sdhub.catalog import Catalog
    from sdhub.tui.widgets.asset_detail import details_text

    folder = tmp_home.folder("checkpoint") / "tiny-pipeline"
    for name, data in pipeline_files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
        body = details_text(catalog.show("tiny-pipeline")).plain
    assert str(folder) in body
    for name in pipeline_files:
        assert f"  {name}  " in body


async def test_broken_files_show_as_broken_and_a_scan_counts_them(tmp_home: Home) -> None:
    folder = tmp_home.folder("checkpoint")
    factory.lora(tmp_home.folder("lora") / "inkstyle.safetensors")
    (folder / "empty.ckpt").write_bytes(b"")
    (folder / "evil\x1b[2Jname.ckpt").write_bytes(b"\0")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    app = SdhubApp(tmp_home)
    async with app.run_test(size=(140, 30)) as pilot:
        table = await loaded(app, pilot, 3)
        # A terminal escape in a file name is shown as text, never sent to the terminal.
        line = next(table.render_line(y).text for y in range(1, 4) if "evil" in table.render_line(y).text)
        assert "\x1b" not in line and "evil\\x1b[2Jname" in line
        (folder / "easynegative.safetensors").write_text("<!DOCTYPE html><html>Sign in</html>")
        await pilot.press("ctrl+r")
        await wait_until(lambda: table.row_count == 4, pilot)
        await wait_until(lambda: any(n.title == "Scan finished" for n in app._notifications), pilot)
        note = next(n for n in app._notifications if n.title == "Scan finished")
        assert "3 not usable" in note.message and note.severity == "warning"
        rows = {row.cells[CELL["file"]]: (row.cells[CELL["status"]], row.style) for row in table.rows}
        assert rows == {"easynegative.safetensors": ("broken", "broken"), "empty.ckpt": ("broken", "broken"),
                        "evil\x1b[2Jname.ckpt": ("broken", "broken"), "inkstyle.safetensors": ("", "")}
        # Wide enough for every column: the header names the file column.
        header = table.render_line(0).text
        assert "File" in header and "Dtype" in header and "Base" in header
