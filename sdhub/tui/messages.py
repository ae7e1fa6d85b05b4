"""Messages the screens of the TUI send each other."""

from __future__ import annotations

from textual.message import Message


class CatalogChanged(Message):
    """The catalog was written (download, prune, scan, delete): reload what is shown."""


class DownloadsChanged(Message):
    """A download job was added or changed state or progress (``job`` is its id)."""

    def __init__(self, job: str) -> None:
        super().__init__()
        self.job = job
