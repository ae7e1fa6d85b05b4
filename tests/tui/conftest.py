"""Fixtures for the TUI tests: homes with real SQLite catalogs (see ``tui_support``)."""

from __future__ import annotations

import fcntl
import shutil

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home, init_home
from sdhub.testing import factory
from sdhub.tui import backend
from tui_support import HELD, SNAPSHOT_ROOT, seed_assets


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
    """Like ``library_home`` but at a fixed path, for snapshot tests.

    The path is the same for every run on the machine, so a lock beside it keeps two suites running
    at once (two checkouts, say) from sharing the folder.
    """
    root = SNAPSHOT_ROOT / request.node.name.replace("[", "-").replace("]", "")
    SNAPSHOT_ROOT.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(root, ignore_errors=True)
        home = init_home(root, "sdhub")
        seed_assets(home)
        yield home
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def home_with_pickle(tmp_home: Home, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A home with one pickled embedding, ``tiny-emb`` (a pickle like a .ckpt, made in no time),
    whose convert is held at ``tui_support.HELD``'s gate."""
    factory.embedding(tmp_home.folder("embedding") / "tiny-emb.pt")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    monkeypatch.setitem(backend.FEATURES, "convert", "tui_support:held_convert")
    yield tmp_home
    HELD.gate.set()  # never leave a worker thread waiting after a failed test
