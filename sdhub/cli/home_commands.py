"""``sdhub init`` and ``sdhub home``: attach a home and show its folders."""

from __future__ import annotations

import shlex
from typing import Optional

import typer

from sdhub.cli.app import app
from sdhub.cli.render import info, print_fields, print_json
from sdhub.cli.state import STATE
from sdhub.config import LAYOUTS, Home, config_path, default_home, init_home, set_default_home


def _home_fields(home: Home) -> list[tuple[str, object]]:
    fields: list[tuple[str, object]] = [
        ("home", home.root), ("layout", home.layout), ("chosen by", home.source),
        ("catalog", home.database_path), ("settings", home.settings_path), ("outputs", home.outputs_dir),
    ]
    fields += [(f"{kind} folder", path) for kind, path in home.folders.items()]
    fields.append(("downloads", f"{home.downloads_dir} (kept until filed: `sdhub mv NAME --kind KIND`)"))
    fields.append(("default home", default_home() or "none (sdhub init DIR --default sets one)"))
    return fields


def how_to_use_elsewhere(home: Home) -> list[str]:
    """The ways to reach ``home`` from another folder, as lines to show after ``init``."""
    quoted = shlex.quote(str(home.root))
    if default_home() == home.root:
        return [f"it is your default home: sdhub uses it from any folder without a catalog/ ({config_path()})"]
    return [f"from another folder: sdhub --home {quoted} ls, or export SDHUB_HOME={quoted}",
            f"to make it the default: sdhub init {quoted} --default"]


@app.command("init")
def init_command(
    path: Optional[str] = typer.Argument(None, help="Folder to attach or create (default: the resolved home)."),
    layout: Optional[str] = typer.Option(
        None, "--layout", help=f"Folder layout: {', '.join(LAYOUTS)} (default: recognised from the folders)."),
    create: bool = typer.Option(False, "--create", help="Create the folder if it does not exist yet."),
    make_default: bool = typer.Option(False, "--default",
                                      help="Use this home from any folder (stored in your sdhub settings file)."),
    json_output: bool = typer.Option(False, "--json", help="Print the home as JSON."),
) -> None:
    """Attach sdhub to a folder (an A1111, ComfyUI or StabilityMatrix install, or a new one).

    Example: sdhub init ~/stable-diffusion-webui --default
    """
    from sdhub.catalog import Catalog

    if path is None:
        resolved = STATE.open_home(must_exist=False)
        home = init_home(resolved.root, layout, create=create, source=resolved.source)
    else:
        home = init_home(path, layout, create=create)
    Catalog(home).close()  # an empty catalog: the home is ready to list and scan
    if make_default:
        set_default_home(home.root)
    if json_output:
        print_json({**home.to_dict(), "default": default_home() == home.root})
        return
    info(f"home ready: {home.root} ({home.layout} layout)")
    print_fields(_home_fields(home))
    for line in how_to_use_elsewhere(home):
        info(line)


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


#: The settings ``sdhub settings`` sets.
_SETTINGS = ("preview_nsfw",)


@app.command("settings")
def settings_command(
    name: Optional[str] = typer.Argument(None, help="Setting to set: preview_nsfw."),
    value: Optional[str] = typer.Argument(None, help="Its new value (preview_nsfw: PG, PG13, R, X, XXX)."),
    json_output: bool = typer.Option(False, "--json", help="Print the settings as JSON."),
) -> None:
    """Show your sdhub settings, or set one (kept in your settings file).

    preview_nsfw is the highest NSFW level of the previews get and sync save and the TUI shows
    (default PG13, safe for work; SDHUB_PREVIEW_NSFW overrides it).

    Example: sdhub settings preview_nsfw R
    """
    from sdhub.config import NSFW_LEVELS, preview_nsfw_max, set_preview_nsfw_max
    from sdhub.errors import UsageError

    if name is not None:
        if name.replace("-", "_") not in _SETTINGS:
            raise UsageError(f"unknown setting {name!r}; choose one of: {', '.join(_SETTINGS)}")
        if value is None:
            raise UsageError(f"give {name} a value, e.g. sdhub settings {name} PG13")
        path = set_preview_nsfw_max(value)
        info(f"preview_nsfw set in {path}")
    level = preview_nsfw_max()
    values = {"preview_nsfw": next(k for k, v in NSFW_LEVELS.items() if v == level), "settings file": str(config_path())}
    if json_output:
        print_json(values)
        return
    print_fields(list(values.items()))
