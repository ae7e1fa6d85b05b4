"""Looking assets up the way users refer to them: ids, paths, names, and any hash from an infotext or Civitai."""

from __future__ import annotations

import pytest

from sdhub.catalog import Catalog
from sdhub.errors import NotFoundError, UsageError


@pytest.fixture
def scanned(catalog: Catalog) -> Catalog:
    catalog.scan()
    return catalog


def test_legacy_hash_autov2_and_name_prefix_find_the_same_asset(scanned: Catalog, stocked) -> None:
    path = stocked.paths["sd1"]
    details = scanned.show(str(path))
    hashes = details.hashes
    # An 11 MB checkpoint: its legacy window (64 KiB at 1 MiB) is real data, not the empty-file hash.
    assert hashes["legacy_model_hash"] != "e3b0c442"
    refs = [
        hashes["legacy_model_hash"],            # A1111 2022 infotext "Model hash: 925997e9"
        hashes["autov2"].upper(),               # Civitai's AutoV2, upper case
        hashes["sha256"],                       # the full SHA-256
        hashes["sha256"][:16],                  # a SHA-256 prefix
        hashes["blake3"][:12].upper(),          # a Civitai BLAKE3 prefix
        hashes["crc32"].upper(),                # Civitai's CRC32
        "dreamy",                               # the start of its name
        "DREAMY-SD15",                          # its name, any case
        "dreamy-sd15.safetensors",              # its file name
        str(details.asset.id),                  # its id
        str(path),                              # its path
    ]
    found = {ref: scanned.find(ref).id for ref in refs}
    assert set(found.values()) == {details.asset.id}, found


def test_autov3_finds_a_lora(scanned: Catalog, stocked) -> None:
    lora = scanned.show(str(stocked.paths["lora"]))
    assert scanned.find(lora.hashes["autov3"]).id == lora.asset.id


def test_an_ambiguous_reference_lists_the_candidates(scanned: Catalog, stocked) -> None:
    folder = stocked.home.folder("lora")
    (folder / "anime-a.safetensors").write_bytes(stocked.paths["lora"].read_bytes() + b"a")
    (folder / "anime-b.safetensors").write_bytes(stocked.paths["lora"].read_bytes() + b"b")
    scanned.scan()
    with pytest.raises(UsageError) as error:
        scanned.find("anime")
    message = str(error.value)
    assert "anime-a" in message and "anime-b" in message and "matches 2 assets" in message
    assert scanned.find("anime-a").name == "anime-a"  # an exact name beats the shared prefix


def test_tiny_files_share_the_legacy_hash_and_say_so(scanned: Catalog, stocked) -> None:
    # Files under 1 MiB all have A1111's legacy hash of nothing: e3b0c442.
    folder = stocked.home.folder("embedding")
    (folder / "second.pt").write_bytes(stocked.paths["embedding"].read_bytes() + b"\0")
    scanned.scan()
    with pytest.raises(UsageError, match="matches"):
        scanned.find("e3b0c442")


def test_unknown_reference_is_not_found(scanned: Catalog) -> None:
    with pytest.raises(NotFoundError, match="nothing in the catalog matches"):
        scanned.find("no-such-model")
    with pytest.raises(UsageError):
        scanned.find("  ")


def test_search_matches_names_tags_and_trigger_words(scanned: Catalog, stocked) -> None:
    lora = scanned.find("inkstyle")
    scanned.tag("inkstyle", ["Calligraphy", "monochrome"])
    assert [a.id for a in scanned.search("callig")] == [lora.id]
    assert [a.id for a in scanned.search("ink")] == [lora.id]
    assert scanned.search("calligraphy dreamy") == []  # every word must match
    assert {a.name for a in scanned.search("xl")} == {"xl-base"}


def test_list_filters_and_sorts(scanned: Catalog) -> None:
    by_size = scanned.list_assets(sort="size")
    assert [a.size for a in by_size] == sorted((a.size for a in by_size), reverse=True)
    names = [a.name for a in scanned.list_assets()]
    assert names == sorted(names, key=str.lower)
    assert {a.kind for a in scanned.list_assets(kind="lora")} == {"lora"}
    xl = scanned.list_assets(base="sdxl")
    assert "xl-base" in {a.name for a in xl} and "dreamy-sd15" not in {a.name for a in xl}
    with pytest.raises(UsageError):
        scanned.list_assets(sort="colour")
