"""The ``sdhub`` console script: stop handlers first, then the (heavier) command-line app."""

from __future__ import annotations

import sys

from sdhub.cli import signals


def main(argv: list[str] | None = None) -> None:
    """Run ``sdhub ARGS``; a stop signal from the first instruction on ends it with exit 130."""
    try:
        signals.install_stop_handlers()  # inside the try: a signal may come as soon as one is installed
        from sdhub.cli.app import main as run_command

        signals.record_stop()  # a stop swallowed during those imports still stops the command
    except KeyboardInterrupt:
        sys.stderr.write(f"sdhub: {signals.stopped_by or 'interrupted'} while starting; nothing was done\n")
        sys.exit(130)
    try:
        run_command(argv)
    except KeyboardInterrupt:  # a stop that came while the command was already saying how it ended
        sys.stderr.write(f"sdhub: {signals.stopped_by or 'interrupted'}\n")
        sys.exit(130)
