"""Duplicates: found by content, and freed without losing a path."""

from __future__ import annotations

import os
import shutil

from sdhub.catalog import Catalog


def _copy_around(stocked) -> list[str]:
    original = stocked.paths["sd1"]
    copies = [stocked.home.folder("checkpoint") / "copy-of-dreamy.safetensors",
              stocked.home.folder("checkpoint") / "old" / "dreamy-backup.safetensors"]
    copies[1].parent.mkdir()
    for copy in copies:
        shutil.copyfile(original, copy)
    return [str(original)] + [str(c) for c in copies]


def test_duplicates_are_found_with_the_bytes_they_waste(catalog: Catalog, stocked) -> None:
    paths = _copy_around(stocked)
    catalog.scan()
    report = catalog.duplicates()
    size = stocked.paths["sd1"].stat().st_size
    assert len(report.groups) == 1
    assert sorted(report.groups[0].to_dict()["paths"]) == sorted(paths)
    assert report.wasted_bytes == 2 * size


def _used_blocks(paths: list[str]) -> int:
    inodes = {}
    for path in paths:
        stat = os.stat(path)
        inodes[(stat.st_dev, stat.st_ino)] = stat.st_blocks
    return sum(inodes.values())


def test_link_hard_frees_the_bytes_and_keeps_every_path(catalog: Catalog, stocked) -> None:
    paths = _copy_around(stocked)
    catalog.scan()
    content = stocked.paths["sd1"].read_bytes()
    blocks_before = _used_blocks(paths)
    result = catalog.link_duplicates()
    assert result.bytes_freed == 2 * len(content)
    assert len(result.changed) == 2 and result.skipped == []
    for path in paths:
        assert open(path, "rb").read() == content
    assert len({os.stat(p).st_ino for p in paths}) == 1
    assert _used_blocks(paths) * 3 <= blocks_before + 8
    assert not [name for name in os.listdir(stocked.home.folder("checkpoint")) if name.startswith(".sdhub-tmp")]
    assert catalog.duplicates().wasted_bytes == 0
    after = catalog.scan()
    assert after.files_read == 0 and after.files_missing == 0  # the catalog stayed true to the disk
    assert sorted(f.path for f in catalog.find(paths[0]).files) == sorted(paths)


def test_a_copy_changed_since_the_scan_is_not_replaced(catalog: Catalog, stocked) -> None:
    paths = _copy_around(stocked)
    catalog.scan()
    with open(paths[2], "ab") as handle:
        handle.write(b"edited")
    result = catalog.link_duplicates()
    assert [s["path"] for s in result.skipped] == [paths[2]]
    assert open(paths[2], "rb").read().endswith(b"edited")


def test_delete_keeps_one_copy(catalog: Catalog, stocked) -> None:
    paths = _copy_around(stocked)
    catalog.scan()
    size = stocked.paths["sd1"].stat().st_size
    result = catalog.delete_duplicates()
    assert result.bytes_freed == 2 * size
    remaining = [p for p in paths if os.path.exists(p)]
    assert len(remaining) == 1
    sha256 = catalog.find(remaining[0]).sha256
    assert [f.path for f in catalog.get(sha256).files] == remaining
    assert catalog.duplicates().groups == []


def test_symbolic_links_never_end_up_dangling(catalog: Catalog, stocked) -> None:
    paths = _copy_around(stocked)
    link = stocked.home.folder("lora") / "favourite.safetensors"
    link.symlink_to(paths[2])  # a link to one of the copies
    content = stocked.paths["sd1"].read_bytes()
    catalog.scan()
    assert catalog.duplicates().wasted_bytes == 2 * len(content)
    result = catalog.delete_duplicates()
    assert link.exists() and os.path.exists(os.path.realpath(link))
    assert paths[2] in [s["path"] for s in result.skipped]
    linked = catalog.link_duplicates()
    assert link.is_symlink() and link.read_bytes() == content
    assert catalog.duplicates().wasted_bytes == 0, linked
