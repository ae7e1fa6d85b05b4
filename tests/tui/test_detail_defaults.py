"""The detail pane lists a checkpoint's generation defaults (``sdhub set``)."""

from __future__ import annotations

import shutil

from sdhub.catalog import Catalog
from sdhub.testing import factory
from sdhub.tui.widgets.asset_detail import details_text


def test_the_detail_pane_shows_the_defaults(tmp_home, tmp_path):
    shutil.copy(factory.sd1_checkpoint(tmp_path / "mix.safetensors"), tmp_home.folder("checkpoint") / "mix.safetensors")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
        assert "Generation defaults" not in details_text(catalog.show("mix")).plain
        catalog.set_generation_defaults("mix", {"vae": "None", "clip_skip": 2, "sampler": "Euler a"})
        text = details_text(catalog.show("mix")).plain
    assert "Generation defaults (sdhub set)" in text
    assert "None (the baked-in VAE)" in text and "clip skip" in text and "Euler a" in text
