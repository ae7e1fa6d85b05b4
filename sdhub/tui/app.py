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
from sdhub.tui.jobs import RunningJobs
from sdhub.tui.messages import CatalogChanged, DownloadsChanged
from sdhub.tui.screens.downloads import DownloadsScreen
from sdhub.tui.screens.first_run import FirstRunScreen
from sdhub.tui.screens.get import GetScreen
from sdhub.tui.screens.help import HelpScreen
from sdhub.tui.screens.library import LibraryScreen
from sdhub.tui.screens.quitting import STOPPING_TITLE, StoppingScreen, quit_question
from sdhub.tui.widgets.image_view import HALF_BLOCKS
from sdhub.tui.widgets.progress import TaskProgress

DARK_THEME = "textual-dark"
LIGHT_THEME = "textual-light"
#: How often, while quitting, the app looks whether the cancelled jobs have stopped.
STOP_POLL_SECONDS = 0.1
#: The actions that switch to a mode: hidden (and idle) in that mode, which leaves the footer
#: room for the keys that do something, Quit included, at 80 columns.
MODE_ACTIONS = {"show_library": "library", "show_get": "get", "show_downloads": "downloads"}


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

    def __init__(self, home: Home, *, resume_downloads: bool = True, images: str = HALF_BLOCKS) -> None:
        """``images``: how pictures are drawn (see ``image_view.choose_protocol``); half blocks,
        the default, look the same in every terminal."""
        super().__init__()
        self.home = home
        self.image_protocol = images
        self.sub_title = f"{home.root} · {home.layout} layout"
        self.downloads = DownloadJobs(self, home)
        self.jobs = RunningJobs()
        self._resume_downloads = resume_downloads
        self._asking_to_quit = False
        self._stopping: StoppingScreen | None = None
        #: What the jobs said while the app was stopping them, for the terminal after the app closes.
        self.exit_notes: list[str] = []
        #: Jobs still running when the user chose to leave without waiting for them.
        self.left_running: list[str] = []

    def on_mount(self) -> None:
        self.theme = DARK_THEME
        if not self.home.database_path.is_file():
            self.offer_first_run()
        if self._resume_downloads:
            self.downloads.resume_interrupted()

    def on_unmount(self) -> None:
        self.downloads.interrupt_all()

    # -- navigation ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return MODE_ACTIONS.get(action) != self.current_mode

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

    # -- quitting --------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit at once when idle; with jobs running, ask first (then cancel them and wait)."""
        if self._stopping is not None:
            self._stopping.action_press_quit()
            return
        titles = self.running_job_titles()
        if not titles:
            self.exit()
            return
        if self._asking_to_quit:
            return
        self._asking_to_quit = True

        def answered(cancel_and_quit: bool | None) -> None:
            self._asking_to_quit = False
            if cancel_and_quit:
                self.stop_jobs_and_quit()

        self.push_screen(quit_question(titles), answered)

    def action_help_quit(self) -> None:
        if self._stopping is not None:
            self._stopping.action_press_quit()
        else:
            super().action_help_quit()

    @property
    def stopping(self) -> bool:
        """Whether the user chose to quit and the app is waiting for the cancelled jobs."""
        return self._stopping is not None

    def running_job_titles(self) -> list[str]:
        """What is running now, as the quit question names it."""
        titles = [job.title for job in self.jobs.running()]
        titles += [f"Download {job.label} (resumes next time)"
                   for job in self.downloads.jobs.values() if job.status == "running"]
        return titles

    def _jobs_stopped(self) -> bool:
        # A download's outcome is recorded by its worker, so wait for the worker itself to end.
        return not self.jobs.running() and not any(
            worker.group == "downloads" and not worker.is_finished for worker in self.workers)

    def stop_jobs_and_quit(self) -> None:
        """Cancel every job, show that they are stopping, and exit once they all have."""
        titles = self.running_job_titles()
        self.jobs.cancel_all("sdhub is quitting")
        self.downloads.interrupt_all()
        self._stopping = StoppingScreen(titles)
        self.push_screen(self._stopping)
        self.set_interval(STOP_POLL_SECONDS, self._exit_when_stopped)

    def _exit_when_stopped(self) -> None:
        if self._jobs_stopped():
            self.exit()
        elif self._stopping is not None and self._stopping.is_attached:
            self._stopping.show_running(self.running_job_titles())

    def leave_now(self) -> None:
        """Leave without waiting for the jobs still stopping (``sdhub tui`` then ends the process)."""
        self.left_running = self.running_job_titles()
        self.exit(return_code=130)

    # -- shared plumbing for the screens ---------------------------------------------------------

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications show library messages verbatim: paths and URLs with ``[`` are not markup."""
        if self.stopping and not self.left_running and title != STOPPING_TITLE:
            self.exit_notes.append(f"{title}: {message}" if title else message)
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
