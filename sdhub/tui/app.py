"""The sdhub terminal UI: the app shell (header, footer, modes, themes, command palette).

Screens live in ``sdhub.tui.screens``, small widgets in ``sdhub.tui.widgets``, key bindings in
``sdhub.tui.keys``. The app only routes: every action ends in a library call (``sdhub.tui.backend``).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.notifications import SeverityLevel
from textual.screen import Screen

from sdhub.config import Home
from sdhub.tui import keys
from sdhub.tui.backend import feature, unavailable_reason
from sdhub.tui.download_jobs import DownloadJobs
from sdhub.tui.messages import CatalogChanged, DownloadsChanged
from sdhub.tui.screens.downloads import DownloadsScreen
from sdhub.tui.screens.first_run import FirstRunScreen
from sdhub.tui.screens.get import GetScreen
from sdhub.tui.screens.help import HelpScreen
from sdhub.tui.screens.library import LibraryScreen
from sdhub.tui.widgets.progress import TaskProgress

DARK_THEME = "textual-dark"
LIGHT_THEME = "textual-light"


class SdhubCommands(Provider):
    """Every action of the app and of the current screen, in the command palette."""

    def _specs(self) -> list[keys.ActionSpec]:
        scopes = ("app", *getattr(self.screen, "ACTION_SCOPES", ()))
        return keys.actions(*scopes)

    def _title(self, spec: keys.ActionSpec) -> str:
        feature = keys.ACTION_FEATURES.get(spec.action)
        missing = feature and unavailable_reason(feature)
        return f"{spec.title} (unavailable)" if missing else spec.title

    async def _run(self, spec: keys.ActionSpec) -> None:
        target = self.app if spec.scope == "app" else self.screen
        await target.run_action(spec.action)

    async def discover(self) -> Hits:
        for spec in self._specs():
            yield DiscoveryHit(self._title(spec), partial(self._run, spec), help=spec.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in self._specs():
            title = self._title(spec)
            score = matcher.match(f"{title} {spec.help}")
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, spec), help=spec.help)


class SdhubApp(App[None]):
    """Browse, get, fix and test the models of one home."""

    CSS_PATH = "app.tcss"
    TITLE = "sdhub"
    BINDINGS = keys.bindings("app")
    COMMANDS = App.COMMANDS | {SdhubCommands}
    MODES = {"library": LibraryScreen, "get": GetScreen, "downloads": DownloadsScreen}
    DEFAULT_MODE = "library"

    def __init__(self, home: Home, *, resume_downloads: bool = True) -> None:
        super().__init__()
        self.home = home
        self.sub_title = f"{home.root} · {home.layout} layout"
        self.downloads = DownloadJobs(self, home)
        self._resume_downloads = resume_downloads

    def on_mount(self) -> None:
        self.theme = DARK_THEME
        if not self.home.database_path.is_file():
            self.offer_first_run()
        if self._resume_downloads:
            self.downloads.resume_interrupted()

    def on_unmount(self) -> None:
        self.downloads.interrupt_all()

    # -- navigation ------------------------------------------------------------------------------

    def action_show_library(self) -> None:
        self.switch_mode("library")

    def action_show_get(self) -> None:
        self.switch_mode("get")

    def action_show_downloads(self) -> None:
        self.switch_mode("downloads")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT_THEME if self.theme == DARK_THEME else DARK_THEME

    # -- shared plumbing for the screens ---------------------------------------------------------

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications show library messages verbatim: paths and URLs with ``[`` are not markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def catalog_changed(self) -> None:
        """Tell every screen that shows catalog data to reload it (after a download, prune...)."""
        for screen in self._screens_in_all_modes():
            screen.post_message(CatalogChanged())

    def downloads_changed(self, job: str) -> None:
        """Tell every screen with a downloads panel that a job changed."""
        for screen in self._screens_in_all_modes():
            screen.post_message(DownloadsChanged(job))

    def on_task_progress(self, message: TaskProgress) -> None:
        self.downloads.on_progress(message)

    def _screens_in_all_modes(self) -> Iterator[Screen]:
        seen = set()
        for mode in self.MODES:
            try:
                stack = self.get_screen_stack(mode)
            except KeyError:  # a mode not visited yet has no screens to tell
                continue
            for screen in stack:
                if id(screen) not in seen:
                    seen.add(id(screen))
                    yield screen

    @contextmanager
    def open_catalog(self) -> Iterator[Any]:
        """The home's catalog for one piece of work (each worker thread opens its own)."""
        catalog = feature("catalog")(self.home)
        try:
            yield catalog
        finally:
            catalog.close()

    def offer_first_run(self) -> None:
        """Show the first-run screen (no catalog yet, or an empty one)."""
        if not isinstance(self.screen, FirstRunScreen):
            self.push_screen(FirstRunScreen())

    def notify_unavailable(self, feature: str) -> bool:
        """Notify and return True when ``feature`` is missing from this installation."""
        reason = unavailable_reason(feature)
        if reason:
            self.notify(reason, title="Unavailable", severity="warning")
            return True
        return False
