"""The TUI's detail pane hides a preview rated above the user's preview_nsfw setting."""

from __future__ import annotations

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.testing import factory
from sdhub.tui.widgets.asset_detail import preview_path

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def test_a_preview_above_the_setting_is_hidden(tmp_home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    lora = factory.lora(tmp_home.folder("lora") / "ink.safetensors")
    risky, safe = tmp_home.catalog_dir / "risky.png", tmp_home.catalog_dir / "safe.png"
    for picture in (risky, safe):
        picture.write_bytes(PNG)
    with Catalog(tmp_home) as catalog:
        asset = catalog.add_file(lora)
        catalog.add_preview(asset.sha256, source="civitai", path=risky, nsfw_level=8)
        catalog.add_preview(asset.sha256, source="civitai", path=safe, nsfw_level=2)
        details = catalog.show(asset.sha256)
    assert preview_path(details, tmp_home.catalog_dir) == safe  # default: safe for work
    monkeypatch.setenv("SDHUB_PREVIEW_NSFW", "X")
    assert preview_path(details, tmp_home.catalog_dir) == risky
    assert preview_path(details, tmp_home.catalog_dir, highest_nsfw=1) is None
