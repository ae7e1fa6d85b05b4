"""``sdhub ARGS`` started as the console script starts it, with a way to hold the work at a chosen moment.

Tests send stop signals to this process. With ``SDHUB_TEST_HOLD=TEXT`` (``*``: any) the first report
of a task whose description contains TEXT touches ``SDHUB_TEST_MARKER`` and then waits (up to a
minute) for the signal, so "a signal in the middle of the work" needs no big files and no timing.
Nothing else changes: the same entry point, handlers, core code and clean-up run.
"""

import os
import sys
import time
from pathlib import Path

from sdhub.cli import entry, signals

HOLD = os.environ.get("SDHUB_TEST_HOLD")
MARKER = os.environ.get("SDHUB_TEST_MARKER")


def _hold_reports() -> None:
    from sdhub.cli import progress as cli_progress

    held = False

    def _hold(task: object) -> None:
        nonlocal held
        if held or (HOLD != "*" and HOLD not in getattr(task, "_described", "")):
            return
        held = True
        Path(MARKER).touch()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.01)  # the stop signal's KeyboardInterrupt comes out of here

    plain_task, plain_advance, plain_update = (cli_progress.RichProgress.task, cli_progress.RichTask.advance,
                                               cli_progress.RichTask.update)

    def task(self, description, total=None, unit=""):
        made = plain_task(self, description, total, unit)
        made._described = description
        return made

    def advance(self, amount=1):
        plain_advance(self, amount)
        _hold(self)

    def update(self, **changes):
        plain_update(self, **changes)
        if changes.get("description"):
            self._described = changes["description"]
        _hold(self)

    cli_progress.RichProgress.task, cli_progress.RichTask.advance, cli_progress.RichTask.update = task, advance, update


try:
    signals.install_stop_handlers()  # first, as the console script does; entry.main installs them again
    if HOLD:
        _hold_reports()
except KeyboardInterrupt:
    pass  # a stop during this set-up is swallowed, as some libraries do: the recorded stop must still end the command
entry.main(sys.argv[1:])
