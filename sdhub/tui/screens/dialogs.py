"""Small modal screens: a yes/no question, a report of fields, a test result with its image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from sdhub.tui.widgets.image_view import ImageView

#: The verdict of a reference test that found nothing wrong (sdhub.generate.verdicts).
PASS = "pass"


class ConfirmDialog(ModalScreen[bool]):
    """Ask before doing something that cannot be undone; dismisses with True or False."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("y", "confirm", "Yes", show=False)]

    def __init__(self, title: str, body: str, *, confirm: str = "OK", cancel: str = "Cancel") -> None:
        super().__init__()
        self._title, self._body, self._confirm, self._cancel = title, body, confirm, cancel

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title", markup=False)
            yield Static(Text(self._body), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._confirm, variant="error", id="confirm", compact=True)
                yield Button(self._cancel, id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        self.dismiss(True)


def report_text(values: Any, indent: int = 0) -> Text:
    """A nested dict/list as indented ``name: value`` lines."""
    text = Text()
    pad = "  " * indent
    if isinstance(values, dict):
        for name, value in values.items():
            if isinstance(value, (dict, list)) and value:
                text.append(f"{pad}{name}:\n", style="bold")
                text.append_text(report_text(value, indent + 1))
            else:
                text.append(f"{pad}{name}: ", style="bold")
                text.append(f"{'' if value is None else value}\n")
    elif isinstance(values, list):
        for value in values:
            if isinstance(value, (dict, list)):
                text.append_text(report_text(value, indent + 1))
            else:
                text.append(f"{pad}• {value}\n")
    else:
        text.append(f"{pad}{values}\n")
    return text


class ReportScreen(ModalScreen[None]):
    """The result of an action (hashes, an inspect report) as a scrollable list of fields."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("enter", "close", "Close", show=False)]

    def __init__(self, title: str, values: dict[str, Any], *, note: str | None = None,
                 error: bool = False) -> None:
        super().__init__()
        self._title, self._values, self._note, self._error = title, values, note, error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self._title, classes="dialog-title", markup=False)
            if self._note:
                yield Label(self._note, classes="dialog-note" + (" -error" if self._error else ""), markup=False)
            yield from self.compose_figure()
            with VerticalScroll(classes="dialog-scroll"):
                yield Static(report_text(self._values), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close", variant="primary", compact=True)

    def compose_figure(self) -> ComposeResult:
        """What stands between the note and the fields: nothing in a plain report."""
        return iter(())

    def on_button_pressed(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


def _result_image(result: Any) -> Path | None:
    path = Path(result.image_path) if result.image_path else None
    return path if path is not None and path.is_file() else None


class ReferenceResultScreen(ReportScreen):
    """A smoke or Asuka test: the verdict, its reasons, and the image it drew."""

    def __init__(self, title: str, result: Any) -> None:
        values = result.to_dict()
        verdict = str(values.get("verdict", "?"))
        super().__init__(title, {k: v for k, v in values.items() if k != "verdict"}, note=f"Verdict: {verdict}",
                         error=verdict != PASS)
        self._result = result

    def compose_figure(self) -> ComposeResult:
        yield ImageView(_result_image(self._result), id="test-image")
