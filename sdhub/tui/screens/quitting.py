"""Quitting while jobs run: the question (cancel them and quit, or keep working) and the screen
shown while the cancelled jobs reach a point where they can stop cleanly."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from sdhub.tui.screens.dialogs import ConfirmDialog

#: The title of the screen's own notifications (not worth repeating after the app has closed).
STOPPING_TITLE = "Stopping"


def quit_question(titles: list[str]) -> ConfirmDialog:
    """Ask whether to cancel ``titles`` (the running jobs) and quit; "keep working" is the default."""
    count = f"{len(titles)} jobs are" if len(titles) > 1 else "A job is"
    body = "\n".join([f"{count} still running:", *(f"  • {title}" for title in titles), "",
                      "Quitting cancels them: each stops cleanly at its next step, and what has "
                      "already finished stays in the library."])
    return ConfirmDialog("Quit sdhub?", body, confirm="Cancel jobs and quit", cancel="Keep working")


class StoppingScreen(ModalScreen[None]):
    """Shown from the moment the jobs are cancelled until the last one has stopped (the app then
    exits). Keys that would quit again explain the wait; pressed twice they leave without it."""

    BINDINGS = [
        Binding("ctrl+c", "press_quit", show=False, priority=True),
        Binding("q", "press_quit", show=False),
        Binding("escape", "press_quit", show=False),
    ]

    def __init__(self, titles: list[str]) -> None:
        super().__init__()
        self._titles = titles
        self._warned = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="stopping"):
            yield Label("Stopping…", classes="dialog-title")
            yield Static(Text("\n".join(f"  • {title}" for title in self._titles)), id="stopping-jobs",
                         classes="dialog-body")
            yield Static("Waiting for the jobs above to stop cleanly; sdhub closes when they have.",
                         classes="dialog-note", markup=False)

    def show_running(self, titles: list[str]) -> None:
        """Update the list of jobs still running."""
        self.query_one("#stopping-jobs", Static).update(Text("\n".join(f"  • {title}" for title in titles)))

    def action_press_quit(self) -> None:
        if not self._warned:
            self._warned = True
            self.app.notify("Still stopping. Press ctrl+c again to leave at once: unfinished output "
                            "is left under temporary names that `sdhub clean` removes.",
                            title=STOPPING_TITLE, severity="warning", timeout=10)
            return
        self.app.leave_now()
