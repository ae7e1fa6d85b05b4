"""The TUI marks assets with a newer Civitai version and shows what Civitai says in the detail pane."""

from __future__ import annotations

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.testing import factory
from sdhub.tui.screens.library import CELL, asset_row
from sdhub.tui.widgets.asset_detail import details_text


def _record(sha256: str) -> dict:
    return {
        "id": 130072, "modelId": 4201, "name": "v1.0", "baseModel": "SD 1.5",
        "air": "urn:air:sd1:lora:civitai:4201@130072", "availability": "Public",
        "model": {"name": "Ink Style", "type": "LORA", "creator": {"username": "inker"}, "tags": ["ink"],
                  "allowCommercialUse": "Sell", "allowNoCredit": True},
        "files": [{"id": 1, "name": "inkstyle.safetensors", "type": "Model", "primary": True,
                   "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
                   "pickleScanResult": "Danger", "virusScanResult": "Success",
                   "hashes": {"SHA256": sha256.upper()}}],
        "images": [{"url": "https://image.civitai.com/x.jpeg", "nsfwLevel": 1,
                    "meta": {"prompt": "inkstyle, a fox\x1b[2J", "negativePrompt": "blurry", "steps": 20}}],
    }


def test_an_outdated_asset_is_marked_and_its_civitai_record_shown(tmp_home: Home) -> None:
    factory.lora(tmp_home.folder("lora") / "ink.safetensors")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
        sha = catalog.find("ink").sha256
        catalog.set_remote(sha, "civitai", _record(sha))
        assert "↑new" not in asset_row(catalog.find("ink")).cells[CELL["status"]]
        catalog.set_newer_version(sha, {"version_id": 140000, "version_name": "v2.0", "early_access": 1})
        asset = catalog.find("ink")
        details = catalog.show("ink")
    assert "↑new" in asset_row(asset).cells[CELL["status"]]
    body = details_text(details).plain
    assert "newer version: v2.0 (140000) in early access" in body
    assert "air: urn:air:sd1:lora:civitai:4201@130072" in body
    assert "allowCommercialUse=Sell" in body and "SafeTensor pruned fp16" in body
    assert "scans: pickle Danger, virus Success" in body
    assert "inkstyle, a fox\\x1b[2J" in body and "\x1b" not in body
    assert "negative: blurry" in body
