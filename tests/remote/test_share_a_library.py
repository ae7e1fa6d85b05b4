"""Two homes (an A1111 install and a ComfyUI install) share one remote: push from one, pull into the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sdhub
from sdhub.catalog import Catalog
from sdhub.config import Home, init_home
from sdhub.testing import factory
from sdhub.testing.s3_server import S3Server


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"checkpoint": factory.sd1_checkpoint(folder / "tinymix_v1.safetensors"),
            "lora": factory.lora(folder / "ink_style.safetensors"),
            "embedding": factory.embedding(folder / "easyneg.pt")}


def _a1111_home(root: Path, files: dict[str, Path]) -> Home:
    home = init_home(root, "a1111")
    for kind, path in files.items():
        folder = home.folder(kind)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).write_bytes(path.read_bytes())
    sdhub.scan(home)
    return home


def test_push_from_a1111_and_pull_into_comfyui(s3_env: S3Server, s3_url: str, tmp_path: Path, model_files,
                                               run_cli) -> None:
    a1111 = _a1111_home(tmp_path / "a1111", model_files)
    comfy = init_home(tmp_path / "comfy", "comfyui")
    with Catalog(a1111) as catalog:
        lora = catalog.find("ink_style")
        catalog.tag("ink_style", ["ink", "style"])
        catalog.record_test(lora.sha256, {"verdict": "fine", "kind": "smoke"})
    for home in (a1111, comfy):
        assert run_cli("--home", home.root, "remote", "add", "shared", s3_url, "--endpoint", s3_env.url).exit_code == 0

    pushed = run_cli("--home", a1111.root, "push", "--all", "--json")
    assert pushed.exit_code == 0, pushed.stderr
    report = json.loads(pushed.stdout)
    assert sorted(a["name"] for a in report["assets"]) == ["easyneg", "ink_style", "tinymix_v1"]
    assert report["bytes_sent"] == sum(p.stat().st_size for p in model_files.values())
    checkpoint = next(a for a in report["assets"] if a["name"] == "tinymix_v1")
    assert checkpoint["parts_sent"] > 1  # multipart

    again = json.loads(run_cli("--home", a1111.root, "push", "--all", "--json").stdout)
    assert again["bytes_sent"] == 0 and all(a["already_there"] for a in again["assets"])

    listing = run_cli("--home", comfy.root, "ls", "--remote", "shared", "--json")
    assert listing.exit_code == 0, listing.stderr
    assert sorted(a["name"] for a in json.loads(listing.stdout)) == ["easyneg", "ink_style", "tinymix_v1"]
    found = json.loads(run_cli("--home", comfy.root, "search", "ink", "--remote", "shared", "--json").stdout)
    assert [a["name"] for a in found] == ["ink_style"]

    pulled = run_cli("--home", comfy.root, "pull", "--all", "--json")
    assert pulled.exit_code == 0, pulled.stderr
    for kind, path in model_files.items():
        landed = comfy.folder(kind) / path.name
        assert landed.read_bytes() == path.read_bytes(), kind
    assert (comfy.root / "models" / "checkpoints" / "tinymix_v1.safetensors").is_file()
    assert (comfy.root / "models" / "loras" / "ink_style.safetensors").is_file()

    with Catalog(a1111) as one, Catalog(comfy) as other:
        def facts(catalog: Catalog) -> list[tuple]:
            return sorted((a.sha256, a.name, a.kind, a.base_model, a.size, tuple(a.tags), a.status)
                          for a in catalog.list_assets())
        assert facts(one) == facts(other)
        hashes = "SELECT scheme, value FROM hashes WHERE asset_id = (SELECT id FROM assets WHERE sha256 = ?)"
        assert sorted(one.db.execute(hashes, [lora.sha256]).fetchall()) == \
            sorted(other.db.execute(hashes, [lora.sha256]).fetchall())
        assert [t[0] for t in other.db.execute("SELECT verdict FROM tests").fetchall()] == ["fine"]

    listing = json.loads(run_cli("--home", comfy.root, "ls", "--remote", "shared", "--json").stdout)
    assert all(a["here"] for a in listing)


def test_metadata_travels_both_ways_newest_change_wins(s3_env: S3Server, s3_url: str, tmp_path: Path,
                                                       model_files) -> None:
    one = _a1111_home(tmp_path / "one", {"lora": model_files["lora"]})
    two = init_home(tmp_path / "two", "comfyui")
    for home in (one, two):
        sdhub.remote.add_remote(home, "shared", s3_url, endpoint=s3_env.url)
    with Catalog(one) as catalog:
        catalog.tag("ink_style", ["ink"])
    sdhub.remote.push("shared", ["ink_style"], one)
    sdhub.remote.pull("shared", ["ink_style"], two)

    with Catalog(two) as catalog:  # the second machine changes the tags later
        assert catalog.find("ink_style").tags == ["ink"]
        catalog.tag("ink_style", ["bold", "-ink"])
        sha = catalog.find("ink_style").sha256
        catalog.record_test(sha, {"verdict": "black", "kind": "smoke"})
    sdhub.remote.push("shared", ["ink_style"], two)
    report = sdhub.remote.pull("shared", ["ink_style"], one)
    assert report.assets[0]["fetched"] is False
    with Catalog(one) as catalog:
        asset = catalog.find("ink_style")
        assert asset.tags == ["bold"] and asset.status == "black"

    # An older change pushed later does not win: machine one's stale view is pushed again.
    sdhub.remote.push("shared", ["ink_style"], one)
    with Catalog(two) as catalog:
        catalog.tag("ink_style", ["newest"])
    sdhub.remote.push("shared", ["ink_style"], two)
    sdhub.remote.push("shared", ["ink_style"], one)
    sdhub.remote.pull("shared", ["ink_style"], one)
    with Catalog(one) as catalog:
        assert catalog.find("ink_style").tags == ["bold", "newest"]


def test_generation_defaults_travel_both_ways_newest_change_wins(s3_env: S3Server, s3_url: str, tmp_path: Path,
                                                                 model_files) -> None:
    one = _a1111_home(tmp_path / "one", {"checkpoint": model_files["checkpoint"]})
    two = init_home(tmp_path / "two", "comfyui")
    for home in (one, two):
        sdhub.remote.add_remote(home, "shared", s3_url, endpoint=s3_env.url)
    with Catalog(one) as catalog:
        catalog.set_generation_defaults("tinymix_v1", {"vae": "kl-f8-anime2.safetensors", "clip_skip": 2})
    sdhub.remote.push("shared", ["tinymix_v1"], one)
    sdhub.remote.pull("shared", ["tinymix_v1"], two)

    with Catalog(two) as catalog:  # the second machine arrives with the first one's defaults, then changes them
        asset = catalog.find("tinymix_v1")
        assert asset.preferred_vae == "kl-f8-anime2.safetensors"
        assert asset.generation_defaults == {"clip_skip": 2}
        catalog.set_generation_defaults("tinymix_v1", {"vae": "None", "sampler": "Euler a"})
    sdhub.remote.push("shared", ["tinymix_v1"], two)
    # Machine one's older view, pushed after machine two's, does not win.
    sdhub.remote.push("shared", ["tinymix_v1"], one)
    report = sdhub.remote.pull("shared", ["tinymix_v1"], one)
    assert report.assets[0]["fetched"] is False
    with Catalog(one) as catalog:
        asset = catalog.find("tinymix_v1")
        assert asset.preferred_vae == "None"
        assert asset.generation_defaults == {"clip_skip": 2, "sampler": "Euler a"}
