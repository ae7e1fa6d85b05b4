"""The first-run screen, shown when the home has no catalog or an empty one: set the home up,
scan the folders it already has, install the tiny demo model, or go and get a model."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from sdhub.config import init_home
from sdhub.errors import SdhubError
from sdhub.progress import Progress
from sdhub.tui.backend import error_message, feature, unavailable_reason
from sdhub.tui.widgets.activity import ActivityBar


class FirstRunScreen(ModalScreen[None]):
    """Offer the ways to fill an empty home."""

    BINDINGS = [Binding("escape", "close", "Not now")]

    def compose(self) -> ComposeResult:
        home = self.app.home
        initialised = home.database_path.is_file()
        with Vertical(classes="dialog", id="first-run"):
            yield Label("Welcome to sdhub", classes="dialog-title")
            yield Static(f"This home ({home.root}, {home.layout} layout) has no models in its catalog yet.",
                         classes="dialog-body", markup=False)
            yield Button(f"Set up this home ({home.layout} layout)", id="init", disabled=initialised, compact=True)
            yield Button("Scan its folders for models", id="scan", disabled=not initialised, compact=True)
            yield Button(self._demo_label(), id="demo", disabled=not self._demo_possible(), compact=True)
            yield Button("Get a model (Civitai, Hugging Face, URL)", id="get", compact=True)
            yield Button("Not now", id="close", variant="primary", compact=True)
            yield ActivityBar(id="activity")

    def _demo_possible(self) -> bool:
        # The demo sets its home up in sdhub's own layout, so it is offered only in such a home.
        return self.app.home.layout == "sdhub" and unavailable_reason("demo") is None

    def _demo_label(self) -> str:
        if unavailable_reason("demo"):
            return "Install the tiny demo model (unavailable)"
        if self.app.home.layout != "sdhub":
            return "Install the tiny demo model (only in an sdhub-layout home)"
        return "Install the tiny demo model and test it"

    def on_mount(self) -> None:
        buttons = [b for b in self.query(Button) if not b.disabled]
        if buttons:
            buttons[0].focus()

    @on(Button.Pressed, "#init")
    def _init(self) -> None:
        home = self.app.home
        try:
            self.app.home = init_home(home.root, home.layout, source=home.source)
            if not self.app.notify_unavailable("catalog"):
                with self.app.open_catalog():  # an empty catalog: the home is ready to scan
                    pass
        except SdhubError as error:
            self.notify(str(error), title="Set up failed", severity="error")
            return
        self.notify(f"{home.root} is ready ({home.layout} layout)", title="Home set up")
        self.query_one("#init", Button).disabled = True
        self.query_one("#scan", Button).disabled = False
        self.query_one("#scan", Button).focus()
        self.app.catalog_changed()

    @on(Button.Pressed, "#scan")
    def _scan(self) -> None:
        if not self.app.notify_unavailable("catalog"):
            self._start("Scanning", "scan")

    @on(Button.Pressed, "#demo")
    def _demo(self) -> None:
        if not self.app.notify_unavailable("demo"):
            self._start("Installing the demo model", "demo")

    def _start(self, title: str, what: str) -> None:
        activity = self.query_one(ActivityBar)
        self._run(title, what, activity, activity.progress_for(title))

    @work(thread=True, exclusive=True, group="first-run", exit_on_error=False)
    def _run(self, title: str, what: str, activity: ActivityBar, progress: Progress) -> None:
        try:
            if what == "scan":
                with self.app.open_catalog() as catalog:
                    report = catalog.scan(progress=progress)
                message = f"found {report.files_seen} files, {report.assets_added} new assets"
            else:
                result = feature("demo")(self.app.home.root, progress=progress)
                message = "installed " + ", ".join(result.left_in_home)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            self.notify(error_message(error), title=f"{title} failed", severity="error")
            return
        finally:
            self.app.call_from_thread(activity.done, title)
        self.notify(message, title=title)
        self.app.call_from_thread(self.app.catalog_changed)
        self.app.call_from_thread(self.dismiss, None)

    @on(Button.Pressed, "#get")
    def _get(self) -> None:
        self.dismiss(None)
        self.app.switch_mode("get")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
