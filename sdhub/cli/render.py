"""Rendering for the CLI: data to stdout (tables or JSON), messages and progress to stderr.

A table goes to a terminal as a table; to a pipe or a file it goes as one record per line,
tab-separated, unwrapped and unstyled, so grep, cut and awk work (``--format`` picks tsv, csv or
json explicitly).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sdhub.text import json_for_terminal, printable
from sdhub.units import human_size  # noqa: F401  (the CLI's commands import it from here)

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def to_jsonable(value: Any) -> Any:
    """Turn dataclasses, paths and tuples into plain JSON values."""
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON on stdout (the ``--json`` output)."""
    sys.stdout.write(json_for_terminal(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


#: What ``--format`` offers for listings; "lines" is what a pipe gets unless one is chosen.
FORMATS = ("table", "tsv", "csv", "json")


def format_option() -> Any:
    """The ``--format`` option of a listing command."""
    import typer

    return typer.Option(None, "--format", metavar="table|tsv|csv|json",
                        help="table, tsv or csv (with a header line), or json (as --json). "
                             "Default: a table on a terminal, one tab-separated line per record otherwise.")


def output_format(chosen: str | None, json_flag: bool = False) -> str:
    """The format a listing is printed in: --json, then --format, then by where stdout goes."""
    if json_flag:
        return "json"
    if chosen is not None:
        chosen = chosen.strip().lower()
        if chosen not in FORMATS:
            from sdhub.errors import UsageError

            raise UsageError(f"unknown --format {chosen!r}; choose one of: {', '.join(FORMATS)}")
        return chosen
    return "table" if stdout.is_terminal else "lines"


def plain_text(value: Any) -> str:
    """A cell as one line of plain text: control characters (tabs, newlines, escapes from a file
    name or a server) are written as escapes, so a record stays on one line and a terminal safe."""
    return printable(value.plain if isinstance(value, Text) else value)


def print_table(rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None,
                fmt: str | None = None) -> None:
    """Rows on stdout: a table that fits the terminal, or one record per line (see ``output_format``)."""
    fmt = fmt or output_format(None)
    if fmt == "table":
        table = Table(title=title, show_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else "" if cell is None else escape(printable(cell))
                            for cell in row))
        stdout.print(table)
        return
    records = [[plain_text(cell) for cell in row] for row in rows]
    if fmt == "json":
        print_json([dict(zip(columns, record)) for record in records])
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(records)
    else:
        lines = [list(columns)] if fmt == "tsv" else []
        sys.stdout.write("".join("\t".join(record) + "\n" for record in lines + records))
    sys.stdout.flush()


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """A two-column ``name: value`` listing on stdout."""
    width = max((len(name) for name, _ in fields), default=0)
    for name, value in fields:
        text = "" if value is None else escape(printable(value))
        stdout.print(f"[bold]{escape(printable(name).ljust(width))}[/bold]  {text}", highlight=False)


def info(text: str) -> None:
    """A message for the user on stderr (rich markup; control characters from files are escaped)."""
    stderr.print(printable(text, keep_newlines=True), highlight=False)


