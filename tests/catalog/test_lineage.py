"""Lineage: a pruned or converted copy keeps its origin's name, Civitai data and trigger words."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import save_file

from catalog_homes import civitai_version
from sdhub.catalog import Catalog


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _derived_file(path: Path, source_sha256: str, **extra: str) -> Path:
    """A small safetensors file whose metadata names its source, as prune and convert write it."""
    tensors = {"lora_unet_down.lora_down.weight": torch.ones(4, 8), "lora_unet_down.lora_up.weight": torch.ones(8, 4)}
    save_file(tensors, str(path), metadata={"sdhub.source_sha256": source_sha256, **extra})
    return path


def test_a_derived_file_inherits_name_civitai_data_and_trigger_words(catalog: Catalog, stocked) -> None:
    catalog.scan()
    parent_sha = _sha256(stocked.paths["lora"])
    catalog.set_remote(parent_sha, "civitai", civitai_version(parent_sha))
    child = _derived_file(stocked.home.folder("lora") / "inkstyle-fp16.safetensors", parent_sha,
                          **{"sdhub.pruned": "{}"})
    catalog.scan()
    child_details = catalog.show(str(child))
    asset = child_details.asset
    assert asset.source_sha256 == parent_sha
    assert asset.name == "Ink Style"
    assert asset.trigger_words == ["inkstyle", "sketch lines"]
    civitai = child_details.remote[0]
    assert civitai["source"] == "civitai" and civitai["version_id"] == "130072"
    assert civitai["inherited_from"] == parent_sha
    assert [(a.sha256, a.relation) for a in child_details.ancestors] == [(parent_sha, "prune")]
    parent_details = catalog.show(parent_sha)
    assert [d.sha256 for d in parent_details.derived] == [asset.sha256]


def test_lineage_waits_for_the_parent_and_follows_later_updates(catalog: Catalog, stocked, tmp_path) -> None:
    elsewhere = tmp_path / "original.safetensors"
    elsewhere.write_bytes(stocked.paths["lora"].read_bytes() + b"!")
    parent_sha = _sha256(elsewhere)
    child = _derived_file(stocked.home.folder("lora") / "early-child.safetensors", parent_sha)
    catalog.scan()
    assert catalog.find(str(child)).name == "early-child"  # the origin is unknown yet
    assert catalog.show(str(child)).ancestors[0].id is None
    catalog.add_file(elsewhere)
    assert catalog.find(str(child)).name == "original"  # the origin arrived: its name is taken
    catalog.set_remote(parent_sha, "civitai", civitai_version(parent_sha, model_name="Late Name"))
    assert catalog.find(str(child)).name == "Late Name"


def test_grandchildren_inherit_through_the_chain(catalog: Catalog, stocked) -> None:
    catalog.scan()
    root_sha = _sha256(stocked.paths["lora"])
    folder = stocked.home.folder("lora")
    child = _derived_file(folder / "child.safetensors", root_sha)
    grandchild = _derived_file(folder / "grandchild.safetensors", _sha256(child))
    catalog.scan()
    catalog.set_remote(root_sha, "civitai", civitai_version(root_sha, model_name="Family"))
    details = catalog.show(str(grandchild))
    assert details.asset.name == "Family"
    assert [a.sha256 for a in details.ancestors] == [_sha256(child), root_sha]


def test_record_lineage_by_hand(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sd1, sdxl = (_sha256(stocked.paths[label]) for label in ("sd1", "sd1-ckpt"))
    catalog.record_lineage(sd1, sdxl, "convert")
    assert catalog.get(sd1).source_sha256 == sdxl
    assert catalog.get(sd1).name == "old-style"
