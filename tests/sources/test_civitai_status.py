"""Civitai, complete: status said before any byte is fetched, model-level fields kept and shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdhub.config import Home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer, civitai_model

MODEL, VERSION, FILE = 5100, 51001, 510011


@pytest.fixture
def lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.lora(tmp_path_factory.mktemp("made") / "l.safetensors")


@pytest.fixture
def site(civitai: CivitaiServer, lora: Path) -> CivitaiServer:
    model = civitai_model(MODEL, VERSION, FILE, name="Ink Lines", file_name="inkLines_v10.safetensors",
                          trained_words=("inklines",), images=2)
    model["modelVersions"][0]["images"][0]["meta"] = {
        "prompt": "inklines, a lighthouse", "negativePrompt": "blurry", "sampler": "DPM++ 2M Karras",
        "cfgScale": 7, "steps": 28, "seed": 1234, "Model hash": "21437ec266"}
    model["modelVersions"][0]["air"] = f"urn:air:sd1:lora:civitai:{MODEL}@{VERSION}"
    civitai.add_model(model, {FILE: lora})
    return civitai


def _downloads(server: CivitaiServer) -> list[str]:
    """Requests for the file: the download endpoint and the storage host."""
    return [r.path for r in server.requests_to("site") if r.path.startswith("/api/download/")] + \
        [r.path for r in server.requests_to("storage") if r.path.startswith("/models/")]


@pytest.mark.parametrize("shape", ["current", "2023"])
def test_early_access_is_said_before_any_byte(site: CivitaiServer, tmp_home: Home, run_cli, shape: str) -> None:
    site.set_early_access(VERSION, "2099-01-01T00:00:00.000Z", shape=shape)
    result = run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL}@{VERSION}")
    assert result.exit_code == 1
    assert "is in Early Access until 2099-01-01T00:00:00.000Z" in result.stderr
    assert result.stderr.count("\n") == 1
    assert _downloads(site) == []


def test_archived_and_taken_down_models_have_their_own_messages(site: CivitaiServer, tmp_home: Home,
                                                                run_cli) -> None:
    site.archive(MODEL)
    archived = run_cli("--home", tmp_home.root, "get", f"https://civitai.com/models/{MODEL}")
    assert archived.exit_code == 1 and "Civitai archived Ink Lines" in archived.stderr
    assert "no downloadable files" not in archived.stderr
    site.models[MODEL]["mode"] = None
    site.take_down(MODEL)
    gone = run_cli("--home", tmp_home.root, "get", f"https://civitai.com/models/{MODEL}?modelVersionId={VERSION}")
    assert gone.exit_code == 1 and "Civitai took down Ink Lines" in gone.stderr
    assert _downloads(site) == []


def test_a_generation_only_version_is_refused_before_downloading(site: CivitaiServer, tmp_home: Home,
                                                                 run_cli) -> None:
    site.generation_only(VERSION)
    result = run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL}@{VERSION}")
    assert result.exit_code == 1 and "for generation on its site only" in result.stderr
    assert _downloads(site) == []


def test_a_file_the_virus_scan_flagged_is_refused(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    file = site.models[MODEL]["modelVersions"][0]["files"][0]
    file["virusScanResult"], file["virusScanMessage"] = "Danger", "Win.Trojan.Agent\x1b[31m"
    result = run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL}@{VERSION}")
    assert result.exit_code == 1 and "virus scan flagged inkLines_v10.safetensors" in result.stderr
    assert "\x1b" not in result.stderr and "\\x1b" in result.stderr  # a server's text is escaped
    assert _downloads(site) == []


def test_get_keeps_model_level_fields_and_example_prompts(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    file = site.models[MODEL]["modelVersions"][0]["files"][0]
    file["pickleScanResult"] = "Pending"
    got = run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL}@{VERSION}", "--json")
    assert got.exit_code == 0, got.stderr
    assert "has not finished scanning inkLines_v10.safetensors" in got.stderr
    shown = json.loads(run_cli("--home", tmp_home.root, "show", "inkLines_v10", "--json").stdout)
    civitai = shown["civitai"]
    assert civitai["creator"] == "tester" and civitai["tags"] == ["style", "test"]
    assert civitai["license"] == {"allowNoCredit": True, "allowDerivatives": True, "allowDifferentLicense": True,
                                  "allowCommercialUse": ["Image"]}
    assert civitai["air"] == f"urn:air:sd1:lora:civitai:{MODEL}@{VERSION}"
    assert civitai["file"]["format"] == "SafeTensor" and civitai["file"]["fp"] == "fp32"
    assert civitai["file"]["scan"]["pickle"] == "Pending" and civitai["file"]["scan"]["virus"] == "Success"
    assert civitai["status"]["downloadable"] is True and civitai["status"]["early_access"] is False
    assert civitai["example_prompts"][0]["prompt"] == "inklines, a lighthouse"
    assert civitai["example_prompts"][0]["negativePrompt"] == "blurry"
    assert (civitai["example_prompts"][0]["cfgScale"], civitai["example_prompts"][0]["steps"]) == (7, 28)
    text = run_cli("--home", tmp_home.root, "show", "inkLines_v10").stdout
    assert "tester" in text and "inklines, a lighthouse" in text and "allowCommercialUse" in text


def test_sync_fetches_the_model_for_its_fields(site: CivitaiServer, tmp_home: Home, lora: Path, run_cli) -> None:
    placed = tmp_home.folder("lora") / "my-own-name.safetensors"
    placed.write_bytes(lora.read_bytes())
    assert run_cli("--home", tmp_home.root, "scan").exit_code == 0
    synced = run_cli("--home", tmp_home.root, "civitai", "sync", "--json")
    assert synced.exit_code == 0, synced.stderr
    assert any(r.path == f"/api/v1/models/{MODEL}" for r in site.requests_to("site"))
    shown = json.loads(run_cli("--home", tmp_home.root, "show", "my-own-name", "--json").stdout)
    assert shown["civitai"]["creator"] == "tester" and shown["civitai"]["tags"] == ["style", "test"]
    assert shown["civitai"]["description"] == "Ink Lines for tests"
    assert shown["civitai"]["license"]["allowCommercialUse"] == ["Image"]
    # Every name finds it: Civitai's model and file names, and the AIR.
    for ref in ("Ink Lines", "inkLines_v10.safetensors", f"urn:air:sd1:lora:civitai:{MODEL}@{VERSION}"):
        found = json.loads(run_cli("--home", tmp_home.root, "search", ref, "--json").stdout)
        assert [a["sha256"] for a in found] == [shown["sha256"]], ref


def test_by_hash_finds_a_file_by_its_crc32_in_civitais_byte_order(site: CivitaiServer, lora: Path) -> None:
    from sdhub.ops.hashing import hash_file
    from sdhub.sources.civitai import CivitaiClient

    hashes = hash_file(lora)
    published = site.models[MODEL]["modelVersions"][0]["files"][0]["hashes"]["CRC32"]
    assert published == hashes.crc32.upper() != hashes.crc32_zlib.upper()
    client = CivitaiClient()
    try:
        assert client.by_hash(hashes.crc32)["id"] == VERSION
    finally:
        client.close()
