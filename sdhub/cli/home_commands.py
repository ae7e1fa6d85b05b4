"""``sdhub init`` and ``sdhub home``: attach a home and show its folders."""

from __future__ import annotations

from typing import Optional

import typer

from sdhub.cli.app import app
from sdhub.cli.render import info, print_fields, print_json
from sdhub.cli.state import STATE
from sdhub.config import LAYOUTS, Home, init_home


def _home_fields(home: Home) -> list[tuple[str, object]]:
    fields: list[tuple[str, object]] = [
        ("home", home.root), ("layout", home.layout), ("chosen by", home.source),
        ("catalog", home.database_path), ("outputs", home.outputs_dir),
    ]
    fields += [(f"{kind} folder", path) for kind, path in home.folders.items()]
    return fields


@app.command("init")
def init_command(
    path: Optional[str] = typer.Argument(None, help="Folder to attach or create (default: the resolved home)."),
    layout: Optional[str] = typer.Option(
        None, "--layout", help=f"Folder layout: {', '.join(LAYOUTS)} (default: recognised from the folders)."),
    json_output: bool = typer.Option(False, "--json", help="Print the home as JSON."),
) -> None:
    """Attach sdhub to a folder (an A1111, ComfyUI or StabilityMatrix install, or a new one).

    Example: sdhub init ~/stable-diffusion-webui
    """
    if path is None:
        root = STATE.open_home().root
        home = init_home(root, layout)
    else:
        home = init_home(path, layout)
    if json_output:
        print_json(home)
    else:
        info(f"home ready: {home.root} ({home.layout} layout)")
        print_fields(_home_fields(home))


@app.command("home")
def home_command(
    json_output: bool = typer.Option(False, "--json", help="Print the home as JSON."),
) -> None:
    """Show which home is in use, why, and where each kind of file goes.

    Example: sdhub --home ~/ComfyUI home --json
    """
    home = STATE.open_home()
    if json_output:
        print_json(home)
    else:
        print_fields(_home_fields(home))
