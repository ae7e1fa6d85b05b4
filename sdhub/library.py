"""The Library facade: what the CLI and the TUI call to work on a home.

Each function here is a thin entry point over the core packages, so both front-ends share one
implementation.
"""

from __future__ import annotations

from sdhub.sources.get import GetOptions, GetResult, SyncResult, civitai_sync, get

__all__ = ["GetOptions", "GetResult", "SyncResult", "civitai_sync", "get"]
