"""The app shell: command palette, unavailable features, first run, and the ``sdhub tui`` command."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.console import Console

from sdhub.catalog import Catalog
from sdhub.config import Home, open_home
from sdhub.testing import factory
from sdhub.tui import backend
from sdhub.tui.app import SdhubApp
from sdhub.tui.screens.first_run import FirstRunScreen
from sdhub.tui.screens.prune import PruneDialog
from tui_support import LIBRARY, shown_names, wait_until

pytestmark = pytest.mark.anyio


async def test_every_action_is_in_the_command_palette(library_home: Home) -> None:
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: len(shown_names(app)) == len(LIBRARY), pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"prune")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, PruneDialog), pilot)
        assert app.screen.details.asset.name == "bad-hands-5"  # the highlighted asset


async def test_a_missing_library_feature_is_marked_and_explained(library_home: Home,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backend.FEATURES, "prune", "sdhub.ops.not_installed:prune")
    app = SdhubApp(library_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: len(shown_names(app)) == len(LIBRARY), pilot)
        await pilot.press("p")
        await wait_until(lambda: any(n.title == "Unavailable" for n in app._notifications), pilot)
        note = next(n for n in app._notifications if n.title == "Unavailable")
        assert "prune is not available" in note.message and note.severity == "warning"
        assert not isinstance(app.screen, PruneDialog)
        await pilot.press("question_mark")
        console = Console(width=200, record=True)
        console.print(app.screen.query_one(".dialog-scroll Static").content)
        help_lines = [line for line in console.export_text().splitlines() if "Prune" in line]
        assert help_lines and "unavailable in this installation" in help_lines[0]


async def test_first_run_sets_up_a_new_home_and_scans_what_is_there(tmp_path) -> None:
    root = tmp_path / "webui"
    factory.lora((root / "loras").joinpath("style.safetensors"))
    home = open_home(root)
    assert not home.database_path.exists()
    app = SdhubApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.click("#init")
        await wait_until(lambda: home.database_path.is_file(), pilot)
        await pilot.click("#scan")
        await wait_until(lambda: not isinstance(app.screen, FirstRunScreen), pilot)  # closes when done
        await wait_until(lambda: shown_names(app) == ["style"], pilot)
    with Catalog(home) as catalog:
        assert [asset.kind for asset in catalog.list_assets()] == ["lora"]


def test_sdhub_tui_is_a_command_and_the_cli_does_not_load_textual(run_cli) -> None:
    result = run_cli("tui", "--help")
    assert result.exit_code == 0
    assert "terminal UI" in result.stdout
    # `sdhub --help` stays fast: Textual is imported only when the TUI runs.
    code = "import sys, sdhub.cli.app; print('textual' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"


async def test_first_run_can_install_the_demo_model(tmp_path) -> None:
    home = open_home(tmp_path / "fresh", must_exist=False)  # as `sdhub tui` opens a home not made yet
    app = SdhubApp(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: isinstance(app.screen, FirstRunScreen), pilot)
        await pilot.click("#demo")
        # The screen closes when the demo has finished (its last step is a test generation).
        await wait_until(lambda: not isinstance(app.screen, FirstRunScreen), pilot, timeout=120)
        await wait_until(lambda: len(shown_names(app)) == 3, pilot)
        assert sorted(shown_names(app)) == ["sdhub-demo-embedding", "sdhub-demo-style", "sdhub-demo-tiny"]
