"""``sdhub tui``: the terminal UI (Textual is imported only when the command runs)."""

from __future__ import annotations

import os
import sys

import typer

from sdhub.cli.app import app
from sdhub.cli.render import plain_text
from sdhub.cli.state import STATE
from sdhub.errors import UsageError


@app.command("tui")
def tui_command(
    images: str = typer.Option("auto", "--images", metavar="auto|kitty|sixel|halfblocks",
                               help="How previews and test images are drawn: the terminal's graphics protocol "
                                    "(kitty, sixel) or coloured half blocks; auto asks the terminal."),
) -> None:
    """Open the terminal UI: browse, search, get, prune and test the models of the home.

    Example: sdhub --home ~/stable-diffusion-webui tui
    """
    from sdhub.tui.app import SdhubApp
    from sdhub.tui.widgets.image_view import choose_protocol

    try:
        protocol = choose_protocol(images.strip().lower())  # before the app owns the terminal
    except ValueError as error:
        raise UsageError(str(error)) from None
    tui = SdhubApp(STATE.open_home(must_exist=False), images=protocol)  # its first-run screen sets a new home up
    tui.run()
    for note in tui.exit_notes:  # what the jobs stopped on the way out said
        typer.echo(plain_text(note), err=True)
    if tui.left_running:
        typer.echo(f"sdhub: left without waiting for: {plain_text('; '.join(tui.left_running))} "
                   "(unfinished output stays under temporary names; `sdhub clean` removes it)", err=True)
        sys.stderr.flush()
        # Their worker threads are still running and Python would wait for them at exit: the
        # user asked not to wait, and every file sdhub writes is published only by a rename.
        os._exit(130)
    if tui.return_code:
        raise typer.Exit(tui.return_code)
