"""``sdhub mv``: file a catalogued model into its kind's folder (or any folder), sidecars and all."""

from __future__ import annotations

from typing import Optional

import typer

from sdhub.cli.app import app
from sdhub.cli.catalog_commands import _catalog
from sdhub.cli.render import info, print_json


@app.command("mv")
def move_command(
    ref: str = typer.Argument(..., metavar="NAME",
                              help="The asset to move: its name, file name, path, id or hash."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Its kind: it goes to that kind's folder, and the "
                                                            "catalog keeps the kind as yours (controlnet, upscaler...)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="FOLDER", help="Move it into this folder instead."),
    json_output: bool = typer.Option(False, "--json", help="Print what was moved as JSON."),
) -> None:
    """Move a model (with its sidecars) into the folder of its kind, and record the kind.

    Example: sdhub mv control_v11p_sd15_canny.pth --kind controlnet
    """
    with _catalog() as catalog:
        report = catalog.move(ref, kind=kind, to=to)
    if json_output:
        print_json(report)
        return
    for moved in report.moved:
        info(f"moved: {moved['from']} -> {moved['to']}")
    for path in report.already_there:
        info(f"already in {report.folder}: {path}")
    if report.kind_set_by_user:
        was = f" (was {report.previous_kind})" if report.previous_kind != report.kind else ""
        info(f"{report.name} is now filed as {report.kind}{was}")
