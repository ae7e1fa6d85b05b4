"""How quantities are written for people, shared by every front-end (the CLI and the TUI).

This is base: front-ends import it, it imports nothing of sdhub, so the TUI never has to reach
into the CLI (or the other way round) to format a size.
"""

from __future__ import annotations


def human_size(size: float | None) -> str:
    """Bytes as a short human-readable size in SI units (1.9 GB), "-" when unknown."""
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
