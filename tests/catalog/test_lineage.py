"""Lineage: a pruned or converted copy keeps its own name, and inherits its origin's Civitai data and
trigger words."""

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


def test_a_derived_file_keeps_its_name_and_inherits_civitai_data_and_trigger_words(catalog: Catalog, stocked) -> None:
    catalog.scan()
    parent_sha = _sha256(stocked.paths["lora"])
    catalog.set_remote(parent_sha, "civitai", civitai_version(parent_sha))
    child = _derived_file(stocked.home.folder("lora") / "inkstyle-fp16.safetensors", parent_sha,
                          **{"sdhub.pruned": "{}"})
    catalog.scan()
    child_details = catalog.show(str(child))
    asset = child_details.asset
    assert asset.source_sha256 == parent_sha
    assert asset.name == "inkstyle-fp16" and catalog.get(parent_sha).name == "Ink Style"
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
    assert catalog.find(str(child)).name == "early-child"  # the origin arrived: the child keeps its name
    assert catalog.show(str(child)).ancestors[0].name == "original"
    catalog.set_remote(parent_sha, "civitai", civitai_version(parent_sha, model_name="Late Name"))
    child_asset = catalog.find(str(child))
    assert child_asset.name == "early-child" and child_asset.trigger_words == ["inkstyle", "sketch lines"]
    assert catalog.get(parent_sha).name == "Late Name"


def test_grandchildren_inherit_through_the_chain(catalog: Catalog, stocked) -> None:
    catalog.scan()
    root_sha = _sha256(stocked.paths["lora"])
    folder = stocked.home.folder("lora")
    child = _derived_file(folder / "child.safetensors", root_sha)
    grandchild = _derived_file(folder / "grandchild.safetensors", _sha256(child))
    catalog.scan()
    catalog.set_remote(root_sha, "civitai", civitai_version(root_sha, model_name="Family"))
    details = catalog.show(str(grandchild))
    assert details.asset.name == "grandchild" and details.asset.trigger_words == ["inkstyle", "sketch lines"]
    assert details.remote[0]["inherited_from"] == root_sha
    assert [a.sha256 for a in details.ancestors] == [_sha256(child), root_sha]


def test_record_lineage_by_hand(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sd1, sdxl = (_sha256(stocked.paths[label]) for label in ("sd1", "sd1-ckpt"))
    catalog.record_lineage(sd1, sdxl, "convert")
    assert catalog.get(sd1).source_sha256 == sdxl
    assert catalog.get(sd1).name == "dreamy-sd15"


def test_a_rescan_never_renames_derived_files(catalog: Catalog, stocked, tmp_path) -> None:
    """The walkthrough's case: the origin turns up under a new file name after its copies were made."""
    origin = tmp_path / "tinymix_v1.ckpt"
    origin.write_bytes(stocked.paths["lora"].read_bytes() + b"origin")
    origin_sha = _sha256(origin)
    folder = stocked.home.folder("lora")
    fp16 = _derived_file(folder / "tinymix_v1-fp16.safetensors", origin_sha, **{"sdhub.dtype": "fp16"})
    pruned = _derived_file(folder / "tinymix_v1-pruned.safetensors", origin_sha, **{"sdhub.pruned": "{}"})
    catalog.scan()
    renamed = folder / "tinymix_v1-trained.ckpt"
    renamed.write_bytes(origin.read_bytes())
    catalog.scan()
    names = {a.name for a in catalog.list_assets(kind="lora")}
    assert {"tinymix_v1-fp16", "tinymix_v1-pruned", "tinymix_v1-trained"} <= names
    assert catalog.find("tinymix_v1-fp16").file_name == fp16.name
    assert catalog.find("tinymix_v1-pruned").source_sha256 == origin_sha
    assert sorted(d.name for d in catalog.show("tinymix_v1-trained").derived) == ["tinymix_v1-fp16",
                                                                                 "tinymix_v1-pruned"]
    assert catalog.find(str(pruned)).name == "tinymix_v1-pruned"


def test_sidecars_exported_beside_a_derived_file_do_not_rename_it(catalog: Catalog, stocked) -> None:
    catalog.scan()
    parent_sha = _sha256(stocked.paths["lora"])
    catalog.set_remote(parent_sha, "civitai", civitai_version(parent_sha))
    child = _derived_file(stocked.home.folder("lora") / "inkstyle-pruned.safetensors", parent_sha,
                          **{"sdhub.pruned": "{}"})
    catalog.scan()
    catalog.export_sidecars()  # writes the inherited Civitai record beside the child too
    assert child.with_name("inkstyle-pruned.civitai.info").is_file()
    catalog.scan()
    assert catalog.find(str(child)).name == "inkstyle-pruned"
    assert catalog.get(parent_sha).name == "Ink Style"


def test_an_ambiguous_name_lists_the_candidates_with_their_file_names(catalog: Catalog, stocked) -> None:
    import pytest

    from sdhub.errors import UsageError

    twin = stocked.home.folder("checkpoint") / "dreamy-sd15.ckpt"
    twin.write_bytes(stocked.paths["sd1-ckpt"].read_bytes() + b"twin")
    catalog.scan()
    with pytest.raises(UsageError) as error:
        catalog.find("dreamy-sd15")
    assert "dreamy-sd15.ckpt" in str(error.value) and "dreamy-sd15.safetensors" in str(error.value)
    assert catalog.find("dreamy-sd15.ckpt").file_name == "dreamy-sd15.ckpt"


def test_catalogs_written_before_keep_no_inherited_names(stocked) -> None:
    from sdhub.catalog.db import write_transaction

    with stocked.catalog() as catalog:
        catalog.scan()
        with write_transaction(catalog.db):
            # As the earlier schema left it: a derived file carrying its origin's name.
            catalog.db.execute("UPDATE assets SET name = 'Ink Style', name_source = 'lineage' WHERE name = 'badhands'")
            catalog.db.execute("UPDATE settings SET value = '3' WHERE key = 'schema_version'")
    with stocked.catalog() as catalog:
        asset = catalog.find("badhands")
        assert asset.name == "badhands" and asset.name_source == "file"


def test_the_hash_of_the_file_an_asset_was_made_from_finds_it(tmp_home, tmp_path: Path) -> None:
    """A user copies the SHA-256 a source published for the original .ckpt; the catalog holds only
    the .safetensors converted from it."""
    from sdhub.ops.convert import convert as convert_file
    from sdhub.testing import factory as tiny

    original = tiny.sd1_checkpoint(tmp_path / "published.ckpt", fmt="ckpt")
    published = hashlib.sha256(original.read_bytes()).hexdigest()
    target = tmp_home.folder("checkpoint") / "published.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    convert_file(original, target)
    with Catalog(tmp_home) as catalog:
        added = catalog.add_file(target)
        assert added.sha256 != published
        assert catalog.find(published).id == added.id
        assert catalog.find(published[:12]).id == added.id
        assert catalog.show(published).asset.id == added.id
