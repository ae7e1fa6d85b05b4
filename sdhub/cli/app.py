"""The ``sdhub`` command: global options, command groups, and turning errors into one line."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from sdhub import __version__
from sdhub.cli.state import STATE
from sdhub.errors import Interrupted, SdhubError
from sdhub.progress import PROCESS_CANCELLATION
from sdhub.text import printable

app = typer.Typer(
    name="sdhub",
    help="Keep a Stable Diffusion model library in order and prove it works.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"sdhub {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    home: Optional[str] = typer.Option(
        None, "--home", envvar=None, metavar="PATH",
        help="Library home folder (default: $SDHUB_HOME, a parent folder with catalog/, or the user data dir).",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Keep a Stable Diffusion model library in order and prove it works."""
    STATE.home = home
    STATE.debug = debug


def _register_commands() -> None:
    # Each command group lives in its own module and adds itself to ``app``.
    from sdhub.cli import home_commands  # noqa: F401
    # COMMAND MODULES (one import line per module; keep sorted)
    from sdhub.cli import catalog_commands  # noqa: F401
    from sdhub.cli import clean_command  # noqa: F401
    from sdhub.cli import convert_commands  # noqa: F401
    from sdhub.cli import demo_command  # noqa: F401
    from sdhub.cli import generate_commands  # noqa: F401
    from sdhub.cli import get_commands  # noqa: F401
    from sdhub.cli import inspect_commands  # noqa: F401
    from sdhub.cli import move_command  # noqa: F401
    from sdhub.cli import prompt_commands  # noqa: F401
    from sdhub.cli import prune_commands  # noqa: F401
    from sdhub.cli import remote_commands  # noqa: F401
    from sdhub.cli import set_command  # noqa: F401
    from sdhub.cli import tui_command  # noqa: F401
    from sdhub.cli import upscale_command  # noqa: F401
    from sdhub.cli import wildcards_command  # noqa: F401


#: The panels of ``sdhub --help``: every command under the job a user comes for.
HELP_PANELS = {
    "Start here": ("demo", "init", "home", "settings", "doctor", "tui"),
    "Get models": ("get", "outdated", "civitai"),
    "Share a library": ("remote", "push", "pull"),
    "Make them safe and small": ("convert", "scan-pickle", "prune"),
    "Know what you have": ("inspect", "hash", "scan", "ls", "search", "show", "dupes", "clean", "tag", "set", "mv", "rm",
                           "roots", "export-sidecars", "wildcards"),
    "Prove they work": ("generate", "upscale", "smoke", "test", "prompt", "pnginfo"),
}


def _assign_help_panels() -> None:
    order = [name for names in HELP_PANELS.values() for name in names]
    panel_of = {name: panel for panel, names in HELP_PANELS.items() for name in names}

    def name_of(info: typer.models.CommandInfo | typer.models.TyperInfo) -> str:
        return info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")

    for info in (*app.registered_commands, *app.registered_groups):
        info.rich_help_panel = panel_of.get(name_of(info), "Other")
    rank = {name: position for position, name in enumerate(order)}
    app.registered_commands.sort(key=lambda info: rank.get(name_of(info), len(order)))
    app.registered_groups.sort(key=lambda info: rank.get(name_of(info), len(order)))


_register_commands()
_assign_help_panels()


def _stop_reason() -> str:
    return PROCESS_CANCELLATION.reason if PROCESS_CANCELLATION.is_set() else "interrupted"


def main(argv: list[str] | None = None) -> None:
    """Run ``sdhub ARGS`` (the console script is ``sdhub.cli.entry.main``, which installs the stop handlers first)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        command = typer.main.get_command(app)
        result = command.main(args=args, prog_name="sdhub", standalone_mode=False)
        if isinstance(result, int):
            sys.exit(result)
    except typer.Exit as exit_:
        if isinstance(exit_.__cause__, KeyboardInterrupt):  # typer turns Ctrl-C into a silent exit 130
            typer.echo(f"sdhub: {_stop_reason()}", err=True)
        sys.exit(exit_.exit_code)
    except typer.TyperException as error:  # typer's own click: usage errors (exit 2) and the like
        error.show() if hasattr(error, "show") else typer.echo(f"sdhub: error: {printable(error)}", err=True)
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        # A stop the command had nothing to clean up for; the ones that did raise Interrupted.
        typer.echo(f"sdhub: {_stop_reason()}", err=True)
        sys.exit(130)
    except Interrupted as error:
        typer.echo(f"sdhub: {printable(error)}", err=True)  # what the work left behind, never a traceback
        sys.exit(error.exit_code)
    except SdhubError as error:
        if debug or STATE.debug:
            raise
        typer.echo(f"sdhub: error: {printable(error)}", err=True)
        sys.exit(error.exit_code)
    except Exception as error:  # a bug: still one line unless --debug
        if debug or STATE.debug:
            raise
        typer.echo(f"sdhub: internal error: {type(error).__name__}: {printable(error)} (run with --debug for details)",
                   err=True)
        sys.exit(1)
