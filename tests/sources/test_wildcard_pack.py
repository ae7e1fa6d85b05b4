"""Wildcard packs: a good pack from Civitai lands in every layout's wildcards folder and is catalogued with
its entry counts; hostile archives are refused with one line each and leave nothing behind."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from sdhub.catalog import Catalog
from sdhub.config import init_home
from sdhub.errors import SdhubError
from sdhub.sources.wildcard_pack import PackLimits, install_pack
from sdhub.testing.wildcard_packs import GOOD_PACK, wildcards_model, zip_bytes

EXPECTED_FOLDER = {
    "sdhub": "wildcards", "a1111": "extensions/sd-dynamic-prompts/wildcards", "comfyui": "wildcards",
    "stabilitymatrix": "Models/Wildcards",
}


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (hidden and temporary ones too) with its bytes."""
    return {str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else None)
            for path in folder.rglob("*")}


@pytest.mark.parametrize("layout", sorted(EXPECTED_FOLDER))
def test_a_civitai_pack_lands_in_the_wildcards_folder_and_is_catalogued(civitai, tmp_path, run_cli, layout):
    civitai.add_model(wildcards_model(5100, 5101, 5102), {5102: zip_bytes(GOOD_PACK)})
    root = tmp_path / layout
    assert run_cli("init", root, "--create", "--layout", layout).exit_code == 0
    result = run_cli("--home", root, "get", "civitai:5100@5101", "--json")
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    got = got["results"][0]
    folder = root / EXPECTED_FOLDER[layout]
    assert got["kind"] == "wildcards" and Path(got["path"]) == folder / "anime-pack"
    assert (folder / "anime-pack" / "hair" / "style.txt").read_text() == GOOD_PACK["anime-pack/hair/style.txt"]
    assert not list((root / "catalog").glob(".sdhub-tmp-*")) and not list(folder.glob(".sdhub-tmp-*"))

    with Catalog(init_home(root)) as catalog:
        listed = {Path(item.path).relative_to(folder).as_posix(): item for item in catalog.wildcard_files()}
    assert {name: item.entries for name, item in listed.items()} == {
        "anime-pack/color.txt": 4, "anime-pack/hair/style.txt": 3, "anime-pack/outfits.yaml": 5}
    assert listed["anime-pack/outfits.yaml"].wildcards == [
        {"name": "anime-pack/outfits/casual", "entries": 2}, {"name": "anime-pack/outfits/formal", "entries": 3}]

    again = run_cli("--home", root, "get", "civitai:5100@5101", "--json")
    assert again.exit_code == 0, again.stderr


def test_a_single_txt_pack_and_a_scan_list_the_files_but_not_a_sidecar_beside_a_model(civitai, tmp_home, run_cli):
    civitai.add_model(wildcards_model(5200, 5201, 5202, file_name="weather.txt"), {5202: b"sun\nrain\n# no\nsnow\n"})
    assert run_cli("--home", tmp_home.root, "get", "civitai:5200@5201").exit_code == 0
    assert (tmp_home.folder("wildcards") / "weather.txt").is_file()
    (tmp_home.folder("checkpoint") / "model.txt").write_text("a sidecar note\n")
    (tmp_home.folder("wildcards") / "extra.json").write_text('{"moods": ["happy", "sad"], "n": {"x": "one"}}')
    with Catalog(tmp_home) as catalog:
        report = catalog.scan()
        listed = {Path(item.path).name: item.entries for item in catalog.wildcard_files()}
    assert listed == {"weather.txt": 3, "extra.json": 3}
    assert report.wildcard_files == 2


HOSTILE = {
    "traversal": ({"../escape.txt": "x\n"}, "points outside the wildcards folder"),
    "deep traversal": ({"pack/../../escape.txt": "x\n"}, "points outside the wildcards folder"),
    "absolute path": ({"/etc/evil.txt": "x\n"}, "absolute path"),
    "drive letter": ({"C:\\evil.txt": "x\n"}, "absolute path"),
    "binary named .txt": ({"pack/color.txt": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"}, "not UTF-8 text"),
    "NUL in text": ({"pack/color.txt": "red\x00green\n"}, "NUL"),
    "nested zip": ({"pack/inner.zip": zip_bytes({"a.txt": "a\n"})}, "not a wildcard file"),
    "executable": ({"pack/run.sh": "#!/bin/sh\n"}, "not a wildcard file"),
    "control characters in a name": ({"pack/\x1b[31mred.exe": "x"}, "\\x1b[31mred.exe"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_leave_nothing(tmp_path, case):
    members, message = HOSTILE[case]
    folder = _folder_with_a_wildcard(tmp_path)
    before = snapshot(folder)
    archive = tmp_path / "pack.zip"
    archive.write_bytes(zip_bytes(members))
    with pytest.raises(SdhubError) as caught:
        install_pack(archive, folder)
    assert message in str(caught.value) and "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    assert snapshot(folder) == before
    assert not (tmp_path / "escape.txt").exists()


def _folder_with_a_wildcard(tmp_path: Path) -> Path:
    folder = tmp_path / "home" / "wildcards"
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("kept\n")
    return folder


def test_a_symlink_member_is_refused(tmp_path):
    folder = _folder_with_a_wildcard(tmp_path)
    before = snapshot(folder)
    archive = tmp_path / "pack.zip"
    archive.write_bytes(zip_bytes({"pack/a.txt": "a\n", "pack/link.txt": "/etc/passwd"},
                                  modes={"pack/link.txt": stat.S_IFLNK | 0o777}))
    with pytest.raises(SdhubError, match="symbolic link"):
        install_pack(archive, folder)
    assert snapshot(folder) == before


@pytest.mark.parametrize(("members", "limits", "message"), [
    # one line repeated: 8 MiB that deflate to a few KB
    ({"pack/bomb.txt": "red\n" * (2 << 20)}, PackLimits(), "zip bomb"),
    ({f"pack/{n}.txt": "a b c d e f g h\n" * 20000 for n in range(4)}, PackLimits(max_total_bytes=1 << 20),
     "unpacks to more than 1 MiB"),
    ({f"pack/{n}.txt": f"{n}\n" for n in range(30)}, PackLimits(max_files=20), "holds 30 files, more than the 20"),
    ({"pack/big.txt": "x" * (3 << 20)}, PackLimits(max_file_bytes=2 << 20, max_ratio=10_000), "is 3 MiB"),
])
def test_bombs_and_oversized_packs_are_refused_before_anything_is_written(tmp_path, members, limits, message):
    folder = _folder_with_a_wildcard(tmp_path)
    before = snapshot(folder)
    archive = tmp_path / "pack.zip"
    archive.write_bytes(zip_bytes(members))
    with pytest.raises(SdhubError) as caught:
        install_pack(archive, folder, limits=limits)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert snapshot(folder) == before


def test_a_member_bigger_than_its_declared_size_is_refused(tmp_path):
    folder = _folder_with_a_wildcard(tmp_path)
    before = snapshot(folder)
    archive = tmp_path / "pack.zip"
    archive.write_bytes(zip_bytes({"pack/a.txt": "short\n", "pack/b.txt": "x" * 5000}, compression=zipfile.ZIP_STORED))
    # a lying central directory: b.txt says it is 10 bytes
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("pack/b.txt")
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(b"pack/b.txt"))
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    assert info.file_size == 5000
    with pytest.raises(SdhubError) as caught:
        install_pack(archive, folder)
    assert "\n" not in str(caught.value)
    assert snapshot(folder) == before


def test_a_refused_civitai_pack_exits_non_zero_with_one_line_and_leaves_nothing(civitai, tmp_home, run_cli):
    civitai.add_model(wildcards_model(5300, 5301, 5302, file_name="evil.zip"),
                      {5302: zip_bytes({"good/a.txt": "a\n", "../../escape.txt": "x\n"})})
    folder = tmp_home.folder("wildcards")
    folder.mkdir(parents=True, exist_ok=True)
    before = snapshot(folder)
    result = run_cli("--home", tmp_home.root, "get", "civitai:5300@5301")
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "points outside the wildcards folder" in lines[0], result.stderr
    assert snapshot(folder) == before
    assert not list(tmp_home.catalog_dir.glob(".sdhub-tmp-*"))
    assert not any(name.startswith(".sdhub-tmp") for name in os.listdir(tmp_home.root))
