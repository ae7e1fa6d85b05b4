"""The help screen: every key of the app and of the screen it was opened from."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from sdhub.tui import keys
from sdhub.tui.backend import unavailable_reason

SCOPE_TITLES = {"app": "Everywhere", "library": "Library", "asset": "On the highlighted asset",
                "details": "Details", "get": "Get", "downloads": "Downloads"}


def keys_table(scopes: tuple[str, ...]) -> Table:
    """A table of key, action and what it does, grouped by scope."""
    table = Table(show_header=False, box=None, padding=(0, 1), expand=True)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("help", ratio=1)
    for scope in scopes:
        table.add_row("", f"[b u]{SCOPE_TITLES.get(scope, scope)}[/]", "")
        for spec in keys.actions(scope):
            feature = keys.ACTION_FEATURES.get(spec.action)
            missing = feature and unavailable_reason(feature)
            help_text = spec.help + (" [dim](unavailable in this installation)[/]" if missing else "")
            table.add_row(keys.key_label(spec), spec.title, help_text)
    table.add_row("", "[b u]Also[/]", "")
    table.add_row("ctrl+p", "Commands", "Every action by name (the command palette)")
    table.add_row("tab", "Next field", "Move between the search box, filters and table")
    return table


class HelpScreen(ModalScreen[None]):
    """Keys for the screen underneath and for the whole app."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("question_mark", "close", "Close", show=False),
                Binding("q", "close", "Close", show=False)]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self._scopes = (*getattr(under, "ACTION_SCOPES", ()), "app")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="help"):
            yield Label("sdhub keys  (escape closes)", classes="dialog-title")
            with VerticalScroll(classes="dialog-scroll"):
                yield Static(keys_table(self._scopes))

    def action_close(self) -> None:
        self.dismiss(None)
