"""``sdhub outdated`` and ``sdhub get --update`` against the imitation Civitai publishing newer versions."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer, civitai_model

MODEL, OLD, NEW, LATER = 7300, 73001, 73002, 73003


@pytest.fixture
def civitai(monkeypatch: pytest.MonkeyPatch):
    with CivitaiServer() as server:
        monkeypatch.setenv("SDHUB_CIVITAI_URL", server.url)
        monkeypatch.setenv("SDHUB_HTTP_MAX_WAIT", "0.05")
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        yield server


@pytest.fixture
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("made")
    return {version: factory.lora(folder / f"{version}.safetensors", seed=number)
            for number, version in enumerate((OLD, NEW, LATER))}


def _version(model: dict, version_id: int, name: str) -> dict:
    version = copy.deepcopy(model["modelVersions"][0])
    version.update(id=version_id, name=name, publishedAt="2025-06-01T00:00:00.000Z")
    version["files"][0].update(id=version_id * 10, name=f"inkLines_{name}.safetensors",
                               downloadUrl=f"https://civitai.com/api/download/models/{version_id}")
    version["downloadUrl"] = f"https://civitai.com/api/download/models/{version_id}"
    return version


@pytest.fixture
def held(civitai: CivitaiServer, loras: dict[int, Path], tmp_home: Home, run_cli) -> dict:
    """The library holds version v1.0 of a model; Civitai publishes v2.0 after it."""
    model = civitai_model(MODEL, OLD, OLD * 10, name="Ink Lines", file_name="inkLines_v10.safetensors")
    civitai.add_model(model, {OLD * 10: loras[OLD]})
    got = run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL}@{OLD}")
    assert got.exit_code == 0, got.stderr
    civitai.publish_version(MODEL, _version(model, NEW, "v2.0"), {NEW * 10: loras[NEW]})
    return model


def test_outdated_lists_a_model_with_a_newer_version_and_get_update_keeps_the_old(
        held: dict, civitai: CivitaiServer, tmp_home: Home, run_cli) -> None:
    listed = run_cli("--home", tmp_home.root, "outdated", "--json")
    assert listed.exit_code == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["models_checked"] == 1
    [entry] = report["outdated"]
    assert (entry["name"], entry["version_id"], entry["newer_version_id"], entry["early_access"]) == (
        "Ink Lines", str(OLD), NEW, False)
    assert entry["downloadable_version_id"] == NEW
    # The TUI's marker: the catalog keeps what was found.
    with Catalog(tmp_home) as catalog:
        assert catalog.find("inkLines_v10").newer_version["version_id"] == NEW
    table = run_cli("--home", tmp_home.root, "outdated")
    assert "v2.0" in table.stdout and "1 assets have a newer version" in table.stderr

    updated = run_cli("--home", tmp_home.root, "get", "--update", "inkLines_v10", "--json")
    assert updated.exit_code == 0, updated.stderr
    new_path = Path(json.loads(updated.stdout)["results"][0]["path"])
    assert new_path.name == "inkLines_v2.0.safetensors" and new_path.is_file()
    assert (tmp_home.folder("lora") / "inkLines_v10.safetensors").is_file()  # the old one is kept
    assert "kept the old version" in updated.stderr
    assert json.loads(run_cli("--home", tmp_home.root, "outdated", "--json").stdout)["outdated"] == []


def test_get_update_replace_deletes_the_old_file(held: dict, tmp_home: Home, run_cli) -> None:
    old = tmp_home.folder("lora") / "inkLines_v10.safetensors"
    updated = run_cli("--home", tmp_home.root, "get", "--update", "inkLines_v10", "--replace")
    assert updated.exit_code == 0, updated.stderr
    assert not old.exists() and (tmp_home.folder("lora") / "inkLines_v2.0.safetensors").is_file()
    with Catalog(tmp_home) as catalog:
        assert [a.name for a in catalog.list_assets()] == ["Ink Lines"]


def test_a_newer_version_in_early_access_is_listed_as_such_not_offered(
        held: dict, civitai: CivitaiServer, loras: dict[int, Path], tmp_home: Home, run_cli) -> None:
    civitai.publish_version(MODEL, _version(held, LATER, "v3.0"), {LATER * 10: loras[LATER]})
    civitai.set_early_access(LATER, "2099-03-01T00:00:00.000Z")
    [entry] = json.loads(run_cli("--home", tmp_home.root, "outdated", "--json").stdout)["outdated"]
    assert (entry["newer_version_id"], entry["early_access"], entry["early_access_ends_at"]) == (
        LATER, True, "2099-03-01T00:00:00.000Z")
    assert entry["downloadable_version_id"] == NEW  # v2.0 is out of early access
    # Without a token, --update fetches the newest version anyone may download, never the early-access one.
    updated = run_cli("--home", tmp_home.root, "get", "--update", "inkLines_v10", "--json")
    assert updated.exit_code == 0, updated.stderr
    assert json.loads(updated.stdout)["results"][0]["remote"]["version_id"] == NEW
    assert not any(r.path.startswith(f"/api/download/models/{LATER}") for r in civitai.requests_to("site"))


def test_update_when_only_early_access_is_newer_says_so(civitai: CivitaiServer, loras: dict[int, Path],
                                                        tmp_home: Home, run_cli) -> None:
    model = civitai_model(MODEL, OLD, OLD * 10, name="Ink Lines", file_name="inkLines_v10.safetensors")
    civitai.add_model(model, {OLD * 10: loras[OLD]})
    assert run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL}@{OLD}").exit_code == 0
    civitai.publish_version(MODEL, _version(model, LATER, "v3.0"), {LATER * 10: loras[LATER]})
    civitai.set_early_access(LATER, "2099-03-01T00:00:00.000Z")
    refused = run_cli("--home", tmp_home.root, "get", "--update", "inkLines_v10")
    assert refused.exit_code == 1
    assert "is in Early Access until 2099-03-01T00:00:00.000Z" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert not any(r.path.startswith("/api/download/") and str(LATER) in r.path for r in civitai.requests_to("site"))
