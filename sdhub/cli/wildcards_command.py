"""``sdhub wildcards``: the wildcard files in the home's wildcards folders with their entry counts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sdhub.cli.app import app
from sdhub.cli.render import format_option, info, output_format, print_json, print_table
from sdhub.cli.state import STATE


@app.command("wildcards")
def wildcards_command(
    json_output: bool = typer.Option(False, "--json", help="Print the files as JSON."),
    table_format: Optional[str] = format_option(),
) -> None:
    """List the wildcard files (__name__ in prompts) and how many entries each holds.

    Example: sdhub wildcards   then   sdhub generate "1girl, __hair/style__"
    """
    from sdhub.catalog import Catalog

    fmt = output_format(table_format, json_output)
    with Catalog(STATE.open_home()) as catalog:
        files = catalog.wildcard_files(refresh=True)
    if fmt == "json":
        print_json([item.to_dict() for item in files])
        return
    rows = []
    for item in files:
        names = ", ".join(f"__{w['name']}__ ({w['entries']})" for w in item.wildcards)
        rows.append((Path(item.path).relative_to(item.root).as_posix(), item.format, item.entries,
                     item.problem or names))
    print_table(rows, ["file", "format", "entries", "wildcards"], fmt=fmt)
    info(f"{len(files)} wildcard files, {sum(item.entries for item in files)} entries")
