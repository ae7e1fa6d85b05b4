"""Fixtures for the TUI tests: homes with real SQLite catalogs (see ``tui_support``)."""

from __future__ import annotations

import shutil

import pytest

from sdhub.config import Home, init_home
from tui_support import SNAPSHOT_ROOT, seed_assets


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def library_home(tmp_home: Home) -> Home:
    """A home whose catalog holds the seven assets of ``LIBRARY``."""
    seed_assets(tmp_home)
    return tmp_home


@pytest.fixture
def snapshot_home(request: pytest.FixtureRequest) -> Home:
    """Like ``library_home`` but at a fixed path, for snapshot tests."""
    root = SNAPSHOT_ROOT / request.node.name.replace("[", "-").replace("]", "")
    shutil.rmtree(root, ignore_errors=True)
    home = init_home(root, "sdhub")
    seed_assets(home)
    yield home
    shutil.rmtree(root, ignore_errors=True)


