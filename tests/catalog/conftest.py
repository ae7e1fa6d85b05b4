"""Fixtures for the catalog tests: a stocked home and its catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog_homes import ASSETS, StockedHome, stock_from_cache


@pytest.fixture(scope="session")
def asset_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Each factory asset written once per session; tests copy the bytes (factory models take a moment)."""
    folder = tmp_path_factory.mktemp("assets")
    cache = {}
    for label, (_, name, write, _) in ASSETS.items():
        cache[label] = Path(write(folder / name)).read_bytes()
    return cache


@pytest.fixture
def stocked(tmp_path: Path, asset_cache: dict[str, bytes]) -> StockedHome:
    """An sdhub-layout home with one asset of every kind."""
    return stock_from_cache(tmp_path / "home", "sdhub", asset_cache)


@pytest.fixture
def catalog(stocked: StockedHome):
    catalog = stocked.catalog()
    yield catalog
    catalog.close()
