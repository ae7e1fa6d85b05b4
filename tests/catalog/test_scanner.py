"""Scanning: what a user sees in the catalog after files appear, change, move and vanish."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from catalog_homes import ASSETS, stock_from_cache
from sdhub.catalog import Catalog
from sdhub.progress import RecordingProgress


@pytest.mark.parametrize("layout", ["sdhub", "a1111", "comfyui"])
def test_scan_finds_and_classifies_every_kind(tmp_path: Path, asset_cache, layout: str) -> None:
    stocked = stock_from_cache(tmp_path / layout, layout, asset_cache)
    with stocked.catalog() as catalog:
        report = catalog.scan()
        assert report.files_seen == len(ASSETS)
        assert report.files_read == len(ASSETS) and report.assets_added == len(ASSETS)
        assert report.errors == []
        for label, path in stocked.paths.items():
            asset = catalog.find(str(path))
            assert asset.kind == ASSETS[label][3], label
            assert asset.size == path.stat().st_size
            assert [f.path for f in asset.files] == [str(path)]
        checkpoints = {a.name: a for a in catalog.list_assets(kind="checkpoint")}
        assert set(checkpoints) == {"dreamy-sd15", "old-style", "xl-base"}
        assert "xl" in (checkpoints["xl-base"].architecture or checkpoints["xl-base"].base_model or "").lower()
        assert checkpoints["old-style"].format != checkpoints["dreamy-sd15"].format


def _bytes_read_by_this_process() -> int | None:
    """What the kernel counted as read by this process (all threads), independent of sdhub's own counters."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def test_second_scan_reads_no_file_content(catalog: Catalog, stocked) -> None:
    total = sum(p.stat().st_size for p in stocked.paths.values())
    before = _bytes_read_by_this_process()
    first = catalog.scan()
    middle = _bytes_read_by_this_process()
    second = catalog.scan()
    after = _bytes_read_by_this_process()
    assert first.bytes_read == total
    assert (second.files_read, second.bytes_read) == (0, 0)
    assert second.files_unchanged == len(stocked.paths)
    assert second.files_added == second.files_missing == 0
    if before is not None:  # Linux: the kernel's own count agrees
        assert middle - before >= total
        assert after - middle < 256 * 1024  # a few directory listings and catalog pages, no model bytes


def test_unchanged_identity_means_the_content_is_not_read_again(catalog: Catalog, stocked) -> None:
    catalog.scan()
    path = stocked.paths["lora"]
    before = catalog.find(str(path))
    stat = path.stat()
    # Same size, same inode, same mtime, different bytes: only a read could notice.
    with open(path, "r+b") as handle:
        handle.seek(stat.st_size - 4)
        handle.write(b"\x01\x02\x03\x04")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = catalog.scan()
    assert report.files_read == 0
    assert catalog.find(str(path)).sha256 == before.sha256  # the stale hash stays: the file was not read
    full = catalog.scan(full=True)
    assert full.files_read == len(stocked.paths)
    assert catalog.find(str(path)).sha256 != before.sha256


def test_changed_file_is_read_again(catalog: Catalog, stocked, asset_cache) -> None:
    catalog.scan()
    path = stocked.paths["vae"]
    old = catalog.find(str(path))
    path.write_bytes(asset_cache["lora"] + b"more")
    report = catalog.scan()
    assert report.files_read == 1 and report.files_changed == 1
    now = catalog.find(str(path))
    assert now.sha256 != old.sha256
    assert catalog.get(old.sha256).missing  # the old content has no copy left


def test_renamed_file_keeps_its_rows_without_being_read(catalog: Catalog, stocked) -> None:
    catalog.scan()
    path = stocked.paths["sd1"]
    asset = catalog.find(str(path))
    moved = path.with_name("renamed.safetensors")
    path.rename(moved)
    report = catalog.scan()
    assert (report.files_read, report.files_moved, report.files_missing) == (0, 1, 0)
    after = catalog.find(str(moved))
    assert after.id == asset.id
    assert [(f.id, f.path, f.missing) for f in after.files] == [(asset.files[0].id, str(moved), False)]
    assert (asset.name, after.name) == ("dreamy-sd15", "renamed")  # named after its file, it follows it


def test_a_name_from_civitai_stays_when_the_file_is_renamed(catalog: Catalog, stocked) -> None:
    from catalog_homes import civitai_version

    catalog.scan()
    path = stocked.paths["lora"]
    sha256 = catalog.find(str(path)).sha256
    catalog.set_remote(sha256, "civitai", civitai_version(sha256))
    path.rename(path.with_name("inkstyle-v2.safetensors"))
    catalog.scan()
    assert catalog.get(sha256).name == "Ink Style"


def test_file_moved_across_a_copy_is_recognised_by_content(catalog: Catalog, stocked, tmp_path) -> None:
    catalog.scan()
    path = stocked.paths["lora"]
    asset = catalog.find(str(path))
    target = stocked.home.folder("lora") / "sub" / "inkstyle-v1.safetensors"
    target.parent.mkdir()
    shutil.copyfile(path, target)  # a new inode: as if moved from another disk
    path.unlink()
    report = catalog.scan()
    assert report.files_read == 1 and report.files_moved == 1 and report.files_missing == 0
    after = catalog.find(str(target))
    assert after.id == asset.id and after.files[0].id == asset.files[0].id
    assert len(after.files) == 1 and after.name == "inkstyle-v1"


def test_deleted_file_is_marked_missing_not_forgotten(catalog: Catalog, stocked) -> None:
    catalog.scan()
    path = stocked.paths["embedding"]
    data = path.read_bytes()
    asset = catalog.find(str(path))
    path.unlink()
    report = catalog.scan()
    assert report.files_missing == 1
    gone = catalog.find(asset.sha256)
    assert gone.id == asset.id and gone.missing and gone.files[0].missing
    assert asset.id in [a.id for a in catalog.list_assets()]
    path.write_bytes(data)
    again = catalog.scan()
    assert again.files_missing == 0
    assert not catalog.find(asset.sha256).missing


def test_temporary_and_partial_files_are_ignored(catalog: Catalog, stocked) -> None:
    folder = stocked.home.folder("checkpoint")
    data = stocked.paths["lora"].read_bytes()
    for name in ("download.safetensors.part", ".sdhub-tmp-1234.safetensors", "x.safetensors.tmp",
                 "backup.safetensors~", "notes.txt"):
        (folder / name).write_bytes(data)
    report = catalog.scan()
    assert report.files_seen == len(stocked.paths)
    assert all(".sdhub-tmp" not in f.path and not f.path.endswith(("part", "tmp", "~"))
               for a in catalog.list_assets() for f in a.files)


def test_symlinks_are_followed_once_without_loops(catalog: Catalog, stocked, tmp_path, asset_cache) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "linked.safetensors").write_bytes(asset_cache["lora"] + b"x")
    loras = stocked.home.folder("lora")
    (loras / "loop").symlink_to(loras)            # a loop back to itself
    (loras / "outside").symlink_to(outside)       # a folder outside the home
    (loras / "outside-again").symlink_to(outside)  # the same folder twice
    report = catalog.scan()
    assert report.files_seen == len(stocked.paths) + 1
    linked = [f.path for a in catalog.list_assets() for f in a.files if f.path.endswith("linked.safetensors")]
    assert len(linked) == 1


def test_extra_roots_are_scanned(catalog: Catalog, stocked, tmp_path, asset_cache) -> None:
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    (downloads / "fresh.safetensors").write_bytes(asset_cache["lora"] + b"fresh")
    catalog.add_root(downloads, kind="lora")
    assert [r.path for r in catalog.roots() if r.source == "added"] == [str(downloads)]
    report = catalog.scan()
    assert report.files_seen == len(stocked.paths) + 1
    assert catalog.find("fresh").files[0].folder_kind == "lora"
    catalog.remove_root(downloads)
    assert all(r.source == "layout" for r in catalog.roots())
    # The file is still known after its root is dropped: nothing is forgotten silently.
    assert catalog.find("fresh").files[0].path == str(downloads / "fresh.safetensors")


def test_scan_reports_files_and_bytes_progress(catalog: Catalog, stocked) -> None:
    progress = RecordingProgress()
    report = catalog.scan(progress)
    reading = [t for t in progress.tasks if t.unit == "bytes"]
    assert len(reading) == 1
    assert reading[0].total == report.bytes_read == reading[0].completed
    assert reading[0].finished
    walking = [t for t in progress.tasks if t.unit == "files"]
    assert walking and walking[0].completed == len(stocked.paths)


def test_add_file_catalogues_one_file_now(catalog: Catalog, stocked) -> None:
    asset = catalog.add_file(stocked.paths["sdxl"])
    assert asset.kind == "checkpoint" and asset.files[0].folder_kind == "checkpoint"
    assert catalog.add_file(stocked.paths["sdxl"]).id == asset.id
    report = catalog.scan()
    assert report.files_read == len(stocked.paths) - 1  # the added file is not read again


def test_unreadable_model_is_catalogued_with_its_problem(catalog: Catalog, stocked) -> None:
    broken = stocked.home.folder("checkpoint") / "truncated.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": [1, 2")
    report = catalog.scan()
    assert report.errors == []
    asset = catalog.find("truncated")
    assert asset.problems  # the user sees why it is not usable


def write_junk(folder: Path, good_model: Path) -> dict[str, Path]:
    """The junk a new user's model folder collects: a login page saved as a model, an empty file,
    a download cut short, and a pickle that would run a command."""
    import zipfile

    junk = {"html": folder / "easynegative-download.safetensors", "empty": folder / "empty.ckpt",
            "truncated": folder / "half-downloaded.safetensors", "unsafe": folder / "free-model.ckpt"}
    junk["html"].write_text("<!DOCTYPE html><html><body>Sign in to download</body></html>")
    junk["empty"].write_bytes(b"")
    data = good_model.read_bytes()
    junk["truncated"].write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(junk["unsafe"], "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
        archive.writestr("archive/version", "3\n")
    return junk


def test_broken_files_are_marked_counted_and_listed(catalog: Catalog, stocked) -> None:
    junk = write_junk(stocked.home.folder("checkpoint"), stocked.paths["sd1"])
    report = catalog.scan()
    assert sorted(b["path"] for b in report.broken) == sorted(str(p) for p in junk.values())
    reasons = {Path(b["path"]).name: (b["defect"], b["reason"]) for b in report.broken}
    assert reasons["free-model.ckpt"][0] == "unsafe" and "posix.system" in reasons["free-model.ckpt"][1]
    assert reasons["half-downloaded.safetensors"] == ("broken", reasons["half-downloaded.safetensors"][1])
    assert "truncated" in reasons["half-downloaded.safetensors"][1]
    for label in ("html", "empty", "truncated"):
        asset = catalog.find(str(junk[label]))
        assert asset.defect == "broken" and asset.condition == "broken" and asset.has_problems, label
    good = catalog.find(str(stocked.paths["sd1"]))
    assert good.defect is None and not good.has_problems
    problems = catalog.list_assets(problems=True)
    assert sorted(a.file_name for a in problems) == sorted(p.name for p in junk.values())
    # A rescan reads nothing again and still counts them.
    again = catalog.scan()
    assert again.files_read == 0 and len(again.broken) == len(junk)


def test_a_failed_test_and_a_vanished_file_are_problems_too(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sd1 = catalog.find(str(stocked.paths["sd1"]))
    catalog.record_test(sd1.sha256, {"verdict": "black"})
    catalog.record_test(catalog.find(str(stocked.paths["sdxl"])).sha256, {"verdict": "pass"})
    stocked.paths["vae"].unlink()
    catalog.scan()
    problems = {a.file_name: a.condition for a in catalog.list_assets(problems=True)}
    assert problems == {"dreamy-sd15.safetensors": "black", "clear-vae.safetensors": "missing"}


def test_check_values_finds_nan_weights(catalog: Catalog, stocked) -> None:
    tensors = load_file(str(stocked.paths["lora"]))
    name = sorted(n for n in tensors if n.endswith("lora_down.weight"))[0]
    tensors[name].view(-1)[0] = float("nan")
    broken = stocked.home.folder("lora") / "nan-lora.safetensors"
    save_file(tensors, str(broken))
    catalog.scan()
    assert not any("nan" in p.lower() for p in catalog.find("nan-lora").problems)
    catalog.scan(full=True, check_values=True)
    assert any("nan" in p.lower() for p in catalog.find("nan-lora").problems)
    assert [a.name for a in catalog.list_assets(problems=True)] == ["nan-lora"]
    assert catalog.find("nan-lora").condition == "problems"
    assert torch.isnan(tensors[name]).any()


def test_every_folder_a_layout_names_for_a_kind_is_scanned(tmp_path: Path, asset_cache) -> None:
    stocked = stock_from_cache(tmp_path / "webui", "a1111", asset_cache, labels=("lora",))
    lycoris = stocked.home.root / "models" / "LyCORIS"
    lycoris.mkdir()
    (lycoris / "locon.safetensors").write_bytes(asset_cache["lora"] + b"locon")
    with stocked.catalog() as catalog:
        assert str(lycoris) in [r.path for r in catalog.roots()]
        catalog.scan()
        assert catalog.find("locon").files[0].folder_kind == "lora"
