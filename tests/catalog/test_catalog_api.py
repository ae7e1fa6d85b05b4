"""The calls other parts make on the catalog: remote data, test results, tags, removal."""

from __future__ import annotations

import hashlib

import pytest

from catalog_homes import civitai_version
from sdhub.catalog import Catalog
from sdhub.errors import NotFoundError, UsageError


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_set_remote_records_civitai_and_hugging_face(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sha = _sha(stocked.paths["sd1"])
    catalog.set_remote(sha, "civitai", civitai_version(sha, model_name="Dreamy", words=()))
    catalog.set_remote(sha, "huggingface", {"repo": "someone/dreamy", "revision": "abc123",
                                            "filename": "dreamy.safetensors"})
    details = catalog.show(sha)
    by_source = {r["source"]: r for r in details.remote}
    assert by_source["huggingface"]["url"] == "https://huggingface.co/someone/dreamy/blob/abc123/dreamy.safetensors"
    assert by_source["civitai"]["model_id"] == "4201"
    assert details.asset.name == "Dreamy"
    assert details.previews[0]["url"] == "https://image.civitai.com/x/preview.jpeg"
    with pytest.raises(NotFoundError):
        catalog.set_remote("0" * 64, "civitai", civitai_version("0" * 64))
    with pytest.raises(UsageError):
        catalog.set_remote(sha, "myspace", {})


def test_civitai_model_answer_picks_the_version_holding_the_file(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sha = _sha(stocked.paths["lora"])
    other = civitai_version("f" * 64, version_id=1)
    mine = civitai_version(sha, version_id=2)
    model = {"id": 4201, "name": "Ink Style", "tags": ["ink", "style"], "nsfw": False,
             "modelVersions": [other, mine]}
    asset = catalog.set_remote(sha, "civitai", model)
    assert catalog.show(sha).remote[0]["version_id"] == "2"
    assert asset.tags == ["ink", "style"] and asset.nsfw is False


def test_record_test_sets_the_status(catalog: Catalog, stocked) -> None:
    catalog.scan()
    sha = _sha(stocked.paths["sd1"])
    catalog.record_test(sha, {"kind": "asuka", "verdict": "black image", "seconds": 3.5,
                              "image_path": "/tmp/x.png", "mean": 0.0})
    asset = catalog.record_test(sha, {"kind": "asuka", "verdict": "fine", "seconds": 3.1})
    assert asset.status == "fine"
    tests = catalog.show(sha).tests
    assert [t["verdict"] for t in tests] == ["fine", "black image"]
    assert tests[1]["details"] == {"mean": 0.0} and tests[1]["image_path"] == "/tmp/x.png"
    with pytest.raises(UsageError):
        catalog.record_test(sha, {"kind": "asuka"})


def test_tags_add_and_remove(catalog: Catalog) -> None:
    catalog.scan()
    assert catalog.tag("inkstyle", ["ink", "Fav", "ink"]).tags == ["ink", "Fav"]
    assert catalog.tag("inkstyle", ["-fav", "bw"]).tags == ["ink", "bw"]


def test_remove_forgets_and_optionally_deletes(catalog: Catalog, stocked) -> None:
    catalog.scan()
    report = catalog.remove("badhands")
    assert report.files_deleted == [] and stocked.paths["embedding"].exists()
    with pytest.raises(NotFoundError):
        catalog.find("badhands")
    catalog.scan()
    report = catalog.remove("badhands", files=True)
    assert report.files_deleted == [str(stocked.paths["embedding"])]
    assert not stocked.paths["embedding"].exists()
    catalog.scan()
    with pytest.raises(NotFoundError):
        catalog.find("badhands")


def test_roots_refuse_a_missing_folder(catalog: Catalog, tmp_path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        catalog.add_root(tmp_path / "nope")
    with pytest.raises(NotFoundError):
        catalog.remove_root(tmp_path)
