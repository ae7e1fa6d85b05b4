"""``sdhub tui``: the terminal UI (Textual is imported only when the command runs)."""

from __future__ import annotations

from sdhub.cli.app import app
from sdhub.cli.state import STATE


@app.command("tui")
def tui_command() -> None:
    """Open the terminal UI: browse, search, get, prune and test the models of the home.

    Example: sdhub --home ~/stable-diffusion-webui tui
    """
    from sdhub.tui.app import SdhubApp

    SdhubApp(STATE.open_home()).run()
