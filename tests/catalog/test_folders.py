"""Diffusers pipeline folders in the catalog: one asset per folder, read only where it changed."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from catalog_homes import StockedHome
from sdhub.catalog import Catalog
from sdhub.config import init_home
from sdhub.errors import UsageError
from sdhub.progress import RecordingProgress


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def manifest(files: dict[str, bytes]) -> str:
    """What ``sha256sum`` prints for the folder's files sorted by path, hashed (see docs/catalog.md)."""
    lines = "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def test_a_pipeline_folder_is_one_asset(catalog: Catalog, stocked: StockedHome,
                                        pipeline_files: dict[str, bytes]) -> None:
    folder = write_folder(stocked.home.folder("checkpoint") / "tiny-sd1.5", pipeline_files)
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # hidden: not part of the asset
    report = catalog.scan()
    assert report.files_seen == len(stocked.paths) + 1 and report.errors == []
    asset = catalog.find("tiny-sd1.5")
    assert (asset.kind, asset.architecture, asset.format) == ("checkpoint", "sd1", "diffusers")
    assert asset.is_folder and asset.name == "tiny-sd1.5"
    assert asset.size == sum(len(data) for data in pipeline_files.values())
    assert asset.sha256 == manifest(pipeline_files)
    assert [f.path for f in asset.files] == [str(folder)]
    # The UNet inside is part of the pipeline, not a loose checkpoint of its own.
    unet = hashlib.sha256(pipeline_files["unet/diffusion_pytorch_model.safetensors"]).hexdigest()
    assert catalog.get(unet) is None
    details = catalog.show(asset.sha256).to_dict()
    assert details["folder_files"] == [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                                       for name, data in sorted(pipeline_files.items())]
    assert details["hashes"] == {"sha256": asset.sha256}


def test_only_the_changed_file_of_a_folder_is_read_again(catalog: Catalog, stocked: StockedHome,
                                                         pipeline_files: dict[str, bytes]) -> None:
    folder = write_folder(stocked.home.folder("checkpoint") / "tiny", pipeline_files)
    catalog.scan()
    assert catalog.scan().files_read == 0
    edited = dict(pipeline_files, **{"scheduler/scheduler_config.json": b'{"_class_name": "EulerDiscreteScheduler"}'})
    (folder / "scheduler" / "scheduler_config.json").write_bytes(edited["scheduler/scheduler_config.json"])
    report = catalog.scan()
    assert (report.files_read, report.files_changed) == (1, 1)
    assert report.bytes_read == len(edited["scheduler/scheduler_config.json"])
    assert catalog.find(str(folder)).sha256 == manifest(edited)
    assert catalog.get(manifest(pipeline_files)).missing  # the old content is remembered, no longer present


def test_a_moved_folder_keeps_its_asset(catalog: Catalog, stocked: StockedHome,
                                        pipeline_files: dict[str, bytes]) -> None:
    folder = write_folder(stocked.home.folder("checkpoint") / "tiny", pipeline_files)
    catalog.scan()
    before = catalog.find(str(folder))
    folder.rename(folder.with_name("renamed"))
    report = catalog.scan()
    assert (report.files_moved, report.files_read) == (1, 0)
    after = catalog.get(before.sha256)
    assert after.id == before.id and [f.path for f in after.files] == [str(folder.with_name("renamed"))]
    assert (before.name, after.name) == ("tiny", "renamed")
    assert len(catalog.show(after.sha256).folder_files) == len(pipeline_files)


def test_a_folder_that_is_no_longer_a_pipeline_is_missing(catalog: Catalog, stocked: StockedHome,
                                                          pipeline_files: dict[str, bytes], tmp_path: Path) -> None:
    outside = write_folder(tmp_path / "elsewhere" / "tiny", pipeline_files)
    asset = catalog.add_folder(outside)
    assert catalog.scan().files_missing == 0  # outside the roots, still checked, unchanged
    (outside / "model_index.json").unlink()
    assert catalog.scan().files_missing == 1
    assert catalog.get(asset.sha256).missing


def test_removing_a_folder_asset_with_its_files(catalog: Catalog, stocked: StockedHome,
                                                pipeline_files: dict[str, bytes]) -> None:
    folder = write_folder(stocked.home.folder("checkpoint") / "tiny", pipeline_files)
    catalog.scan()
    report = catalog.remove("tiny", files=True)
    assert report.files_deleted == [str(folder)] and not folder.exists()
    assert catalog.db.execute("SELECT count(*) FROM folder_files").fetchone()[0] == 0


def test_duplicate_folders_are_deleted_whole_never_linked(catalog: Catalog, stocked: StockedHome,
                                                          pipeline_files: dict[str, bytes]) -> None:
    folder = write_folder(stocked.home.folder("checkpoint") / "tiny", pipeline_files)
    copy = shutil.copytree(folder, stocked.home.folder("checkpoint") / "tiny-copy")
    catalog.scan()
    size = sum(len(data) for data in pipeline_files.values())
    groups = catalog.duplicates().groups
    assert [(sorted(g.to_dict()["paths"]), g.wasted_bytes) for g in groups] == [([str(folder), str(copy)], size)]
    linked = catalog.link_duplicates()
    assert linked.changed == [] and "diffusers folder" in linked.skipped[0]["reason"]
    deleted = catalog.delete_duplicates()
    assert deleted.bytes_freed == size and len(deleted.changed) == 1
    kept, gone = Path(deleted.changed[0]["kept"]), Path(deleted.changed[0]["path"])
    assert {kept, gone} == {folder, copy} and kept.is_dir() and not gone.exists()
    assert catalog.duplicates().groups == []


def test_add_folder_takes_known_hashes_and_stores_what_a_scan_stores(tmp_path: Path,
                                                                      pipeline_files: dict[str, bytes]) -> None:
    added_home, scanned_home = init_home(tmp_path / "added", "sdhub"), init_home(tmp_path / "scanned", "sdhub")
    added = write_folder(added_home.folder("checkpoint") / "tiny", pipeline_files)
    write_folder(scanned_home.folder("checkpoint") / "tiny", pipeline_files)
    known = {name: hashlib.sha256(data).hexdigest() for name, data in pipeline_files.items()}
    progress = RecordingProgress()
    with Catalog(added_home) as catalog:
        asset = catalog.add_folder(added, progress, known_sha256=known)
        from_known = catalog.show(asset.sha256).to_dict()
    # The 10 MB UNet would show a hashing task had it been read.
    assert [t for t in progress.tasks if t.unit == "bytes"] == []
    with Catalog(scanned_home) as catalog:
        catalog.scan()
        from_scan = catalog.show(asset.sha256).to_dict()
    for key in ("sha256", "kind", "architecture", "base_model", "format", "dtype", "size", "name", "problems",
                "hashes", "folder_files"):
        assert from_known[key] == from_scan[key], key


def test_add_folder_reads_the_files_it_is_not_told_about(catalog: Catalog, stocked: StockedHome,
                                                         pipeline_files: dict[str, bytes]) -> None:
    folder = write_folder(stocked.home.folder("checkpoint") / "tiny", pipeline_files)
    unet = "unet/diffusion_pytorch_model.safetensors"
    known = {name: hashlib.sha256(data).hexdigest() for name, data in pipeline_files.items() if name != unet}
    progress = RecordingProgress()
    asset = catalog.add_folder(folder, progress, known_sha256=known)
    assert asset.sha256 == manifest(pipeline_files)
    assert [t.completed for t in progress.tasks if t.unit == "bytes"] == [len(pipeline_files[unet])]
    assert catalog.add_folder(folder).id == asset.id
    assert catalog.scan().files_read == len(stocked.paths)  # the folder is not read again


def test_add_folder_refuses_a_folder_that_is_not_a_pipeline(catalog: Catalog, stocked: StockedHome) -> None:
    with pytest.raises(UsageError, match="not a diffusers pipeline folder"):
        catalog.add_folder(stocked.home.folder("lora"))
