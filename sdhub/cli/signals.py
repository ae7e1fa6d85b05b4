"""Ctrl-C, SIGTERM and SIGHUP for the command line: honoured from the first instruction of a command.

``install_stop_handlers`` runs before anything else of sdhub is imported (this module needs only
the standard library's ``signal``). A stop signal sets the process-wide cancellation, so work in
any thread stops at its next progress check (even where a library swallowed the
KeyboardInterrupt), and raises KeyboardInterrupt in the main thread, so a prompt, a sleep or a
network wait ends at once. Either way the command cleans up its temporary files and says what it
left.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

#: The signals that stop a command, and the word its message starts with.
STOP_SIGNALS: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated",
                                signal.SIGHUP: "hung up"}

#: Further stop signals this soon after the first only confirm it: a double Ctrl-C must not cut
#: short the clean-up the first one started. A later one stops whatever still runs.
REPEAT_GRACE_SECONDS = 2.0

#: How the command was stopped ("interrupted", "terminated"), once it was.
stopped_by: str | None = None
_first_stop_at = 0.0


def install_stop_handlers() -> None:
    """Make SIGINT, SIGTERM and SIGHUP stop the command cleanly (in the main thread; elsewhere a no-op)."""
    for signum in STOP_SIGNALS:
        # A non-interactive shell starts background jobs with SIGINT ignored, so `sdhub prune X &`
        # then `kill -INT` would run on and publish its output: a stop is honoured anyway.
        # A SIGHUP ignored on purpose (nohup) stays ignored.
        if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        try:
            signal.signal(signum, _on_stop_signal)
        except ValueError:  # not the main thread (sdhub's CLI run from a library caller's thread)
            return


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    global stopped_by, _first_stop_at
    now = time.monotonic()
    if stopped_by is None:
        stopped_by, _first_stop_at = STOP_SIGNALS.get(signum, "interrupted"), now
        record_stop()
        raise KeyboardInterrupt
    record_stop()
    if now - _first_stop_at > REPEAT_GRACE_SECONDS:
        raise KeyboardInterrupt


def record_stop() -> None:
    """Pass a stop that came to the process-wide cancellation, once ``sdhub.progress`` is loaded.

    The module is looked up, never imported: a signal may arrive in the middle of that import.
    """
    cancellation = getattr(sys.modules.get("sdhub.progress"), "PROCESS_CANCELLATION", None)
    if stopped_by is not None and cancellation is not None:
        cancellation.cancel(stopped_by)
