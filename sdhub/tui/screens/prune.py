"""Option dialogs for prune and convert: they collect choices and an output path, nothing more;
the work itself is ``sdhub.ops.prune.prune`` / ``sdhub.ops.convert.convert``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select

from sdhub.catalog.records import AssetDetails
from sdhub.errors import SdhubError
from sdhub.tui.backend import feature

PRUNE_DTYPES = ("fp16", "bf16", "fp32", "keep")
CONVERT_DTYPES = ("keep", "fp16", "bf16", "fp32")
EMA_CHOICES = (("use EMA weights when present", "auto"), ("drop EMA weights", "drop"),
               ("use EMA weights", "use"), ("keep both", "keep"))


def source_path(details: AssetDetails) -> Path | None:
    """The copy of the asset the operation reads (the first one on disk)."""
    present = details.asset.present_files
    return Path(present[0].path) if present else None


class _OptionsDialog(ModalScreen[tuple[Any, Path] | None]):
    """Choices plus an output file; dismisses with (options, output) or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    VERB = ""
    OUTPUT_FEATURE = ""

    def __init__(self, details: AssetDetails) -> None:
        super().__init__()
        self.details = details
        self.source = source_path(details)

    def option_widgets(self) -> ComposeResult:
        yield from ()

    def options(self) -> Any:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        default = str(feature(self.OUTPUT_FEATURE)(self.source)) if self.source else ""
        with Vertical(classes="dialog"):
            yield Label(f"{self.VERB} {self.details.asset.name}", classes="dialog-title", markup=False)
            yield from self.option_widgets()
            yield Label("Output file", classes="dialog-label")
            yield Input(default, id="output", compact=True)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.VERB, variant="primary", id="ok", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        # The first option has the focus, not the button: a stray enter (meant for the table
        # behind) opens that option instead of starting a long job; the button, or enter in the
        # output field, starts it.
        self.query("Select, Checkbox, Input").first().focus()

    def on_input_submitted(self) -> None:
        self._accept()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self._accept()

    def _accept(self) -> None:
        output = self.query_one("#output", Input).value.strip()
        if not output:
            self.notify("Give an output file.", severity="warning")
            return
        try:
            options = self.options()
        except SdhubError as error:  # the library validates the combination of choices
            self.notify(str(error), title="Options", severity="error")
            return
        self.dismiss((options, Path(output).expanduser()))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PruneDialog(_OptionsDialog):
    """EMA, precision, VAE, CLIP fix and training state: the choices of ``sdhub prune``."""

    VERB = "Prune"
    OUTPUT_FEATURE = "prune_output"

    def option_widgets(self) -> ComposeResult:
        yield Label("EMA weights", classes="dialog-label")
        yield Select(list(EMA_CHOICES), value="auto", allow_blank=False, id="ema", compact=True)
        yield Label("Precision", classes="dialog-label")
        yield Select([(c, c) for c in PRUNE_DTYPES], value="fp16", allow_blank=False, id="dtype", compact=True)
        yield Checkbox("Drop the baked-in VAE", value=False, id="drop-vae", compact=True)
        yield Checkbox("Fix broken CLIP position ids", value=True, id="fix-clip", compact=True)
        yield Checkbox("Keep training state (step counters)", value=False, id="keep-training", compact=True)

    def options(self) -> Any:
        ema = self.query_one("#ema", Select).value
        return feature("prune_options")(
            ema=None if ema == "auto" else str(ema),
            dtype=str(self.query_one("#dtype", Select).value),
            vae="drop" if self.query_one("#drop-vae", Checkbox).value else "keep",
            fix_clip=self.query_one("#fix-clip", Checkbox).value,
            keep_training_state=self.query_one("#keep-training", Checkbox).value,
        )


class ConvertDialog(_OptionsDialog):
    """Convert to .safetensors: precision and whether to verify every tensor afterwards."""

    VERB = "Convert"
    OUTPUT_FEATURE = "convert_output"

    def option_widgets(self) -> ComposeResult:
        yield Label("Precision", classes="dialog-label")
        yield Select([(c, c) for c in CONVERT_DTYPES], value="keep", allow_blank=False, id="dtype", compact=True)
        yield Checkbox("Verify every tensor after writing", value=True, id="verify", compact=True)

    def options(self) -> Any:
        return {"dtype": str(self.query_one("#dtype", Select).value),
                "verify": self.query_one("#verify", Checkbox).value}
