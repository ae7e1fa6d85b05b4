"""A scan stopped mid-way keeps every file it recorded; a stop is never mistaken for a broken file."""

from __future__ import annotations

import os

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.errors import Interrupted
from sdhub.testing import factory
from sdhub.testing.stopping import CancelWhen


def test_a_cancelled_scan_keeps_what_it_catalogued_and_the_next_scan_reads_the_rest(tmp_home: Home) -> None:
    factory.lora(tmp_home.folder("lora") / "style.safetensors")
    factory.embedding(tmp_home.folder("embedding") / "easy.pt")
    factory.vae(tmp_home.folder("vae") / "vae.safetensors")
    progress = CancelWhen(lambda task: task.description == "Reading files 2/3")
    with Catalog(tmp_home) as catalog:
        with pytest.raises(Interrupted) as stopped:
            catalog.scan(progress)
        assert str(stopped.value) == ("cancelled; 2 of 3 files to read were read and are catalogued; "
                                      "the next scan reads the rest")
        assert len(catalog.list_assets()) == 2
        report = catalog.scan()
        assert (report.files_unchanged, report.files_read) == (2, 1)
        assert len(catalog.list_assets()) == 3


def test_a_stop_while_a_file_is_being_read_is_not_recorded_as_a_broken_file(tmp_home: Home) -> None:
    (tmp_home.folder("lora") / "big.safetensors").write_bytes(os.urandom(12 * 1024 * 1024))
    progress = CancelWhen(lambda task: task.description.startswith("Reading") and task.completed > 0)
    with Catalog(tmp_home) as catalog:
        with pytest.raises(Interrupted, match="^cancelled; 0 of 1 files to read"):
            catalog.scan(progress)
        assert catalog.list_assets() == []
        assert catalog.scan().files_read == 1  # read in full, and catalogued, by the next scan
