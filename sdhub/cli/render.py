"""Rendering for the CLI: data to stdout (tables or JSON), messages and progress to stderr."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

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
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_table(rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A plain table on stdout that fits the terminal."""
    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else escape(str(cell)) for cell in row))
    stdout.print(table)


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """A two-column ``name: value`` listing on stdout."""
    width = max((len(name) for name, _ in fields), default=0)
    for name, value in fields:
        text = "" if value is None else escape(str(value))
        stdout.print(f"[bold]{escape(name.ljust(width))}[/bold]  {text}", highlight=False)


def info(text: str) -> None:
    """A message for the user on stderr."""
    stderr.print(text, highlight=False)


def human_size(size: float | None) -> str:
    """Bytes as a short human-readable size (1.9 GB)."""
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
