"""Options shared by every command (``--home``, ``--debug``), set by the app callback."""

from __future__ import annotations

from dataclasses import dataclass

from sdhub.config import Home, open_home


@dataclass
class CliState:
    home: str | None = None
    debug: bool = False

    def open_home(self, layout: str | None = None, *, must_exist: bool = True) -> Home:
        """The home this invocation works on (resolved; nothing created; one that does not exist is
        an error unless ``must_exist`` is False)."""
        return open_home(self.home, layout=layout, must_exist=must_exist)


STATE = CliState()
