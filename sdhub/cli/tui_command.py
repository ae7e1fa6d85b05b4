"""``sdhub tui``: the terminal UI (Textual is imported only when the command runs)."""

from __future__ import annotations

import os
import sys
from typing import Any

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
    try:
        tui.run()
    except KeyboardInterrupt:  # SIGTERM, SIGHUP or a SIGINT sent to the process (the ctrl+c key is the app's)
        _stop_jobs_after_a_signal(tui)
        raise
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


def _stop_jobs_after_a_signal(tui: Any) -> None:
    """The app was stopped by a signal: cancel the jobs it was running and say so. Python then
    waits for their threads, which stop at their next progress report; by then it has given the
    signals back to the system, so a second one ends the process at once, without a traceback."""
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # the app may not have given them back
    titles = tui.running_job_titles()
    tui.jobs.cancel_all("sdhub was stopped")
    tui.downloads.interrupt_all()
    if titles:
        typer.echo(f"sdhub: stopping {plain_text('; '.join(titles))} (a second signal leaves at once)", err=True)
