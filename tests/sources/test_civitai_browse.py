"""Civitai collection and search pages: listed through the API calls that show them, fetched with
--pick/--all; a private collection and a site that does not serve API clients each get one line."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from sdhub.config import Home
from sdhub.errors import AuthError, NetworkError, UsageError
from sdhub.sources.civitai import CivitaiClient
from sdhub.sources.civitai_browse import browse
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer, civitai_model

SEARCH_URL = ("https://civitai.com/search/models?baseModel=SD%201.5&modelType=Checkpoint&tags=2d"
              "&sortBy=models_v2%3Ametrics.downloadCount%3Adesc")
COLLECTION_URL = "https://civitai.com/collections/42742"
#: id: (name, type, base, tags, downloads)
MODELS = {
    101: ("Anything Two", "Checkpoint", "SD 1.5", ["2d", "anime"], 500),
    102: ("Counterfeit", "Checkpoint", "SD 1.5", ["2d"], 900),
    103: ("Flat LoRA", "LORA", "SD 1.5", ["2d"], 5000),
    104: ("Animagine", "Checkpoint", "SDXL 1.0", ["2d"], 7000),
    105: ("Realistic", "Checkpoint", "SD 1.5", ["photo"], 9000),
}


@pytest.fixture
def listed(civitai: CivitaiServer, tmp_path_factory: pytest.TempPathFactory) -> CivitaiServer:
    folder = tmp_path_factory.mktemp("listed")
    for model_id, (name, kind, base, tags, downloads) in MODELS.items():
        path = (factory.lora(folder / f"{model_id}.safetensors", seed=model_id) if kind == "LORA"
                else factory.sd1_checkpoint(folder / f"{model_id}.safetensors", seed=model_id))
        model = civitai_model(model_id, model_id * 10, model_id * 100, name=name, file_name=f"{name}.safetensors",
                              model_type=kind, base=base, downloads=downloads)
        model["tags"] = tags
        civitai.add_model(model, {model_id * 100: path})
    civitai.add_collection(42742, "SD 1.5 picks", [104, 102])
    civitai.add_collection(7, "My drafts", [101], read="Private", owner_token="good-token")
    return civitai


def _api_queries(server: CivitaiServer, path: str) -> list[dict[str, list[str]]]:
    return [parse_qs(urlsplit(r.path).query) for r in server.requests_to("site") if urlsplit(r.path).path == path]


def test_a_search_page_becomes_the_same_rest_filters(listed: CivitaiServer) -> None:
    result = browse(SEARCH_URL)
    assert [(i.number, i.name) for i in result.items] == [(1, "Counterfeit"), (2, "Anything Two")]
    [query] = _api_queries(listed, "/api/v1/models")
    assert {k: v for k, v in query.items() if k != "limit"} == {
        "baseModels": ["SD 1.5"], "types": ["Checkpoint"], "tag": ["2d"], "sort": ["Most Downloaded"]}
    first = result.items[0]
    assert (first.type, first.base_model, first.downloads, first.nsfw_level) == ("Checkpoint", "SD 1.5", 900, "PG")
    assert first.file_name == "Counterfeit.safetensors" and first.file_size and first.ref == "urn:air:civitai:102@1020"


def test_a_second_tag_is_checked_on_each_model(listed: CivitaiServer) -> None:
    result = browse(SEARCH_URL + "&tags=anime")
    assert [i.name for i in result.items] == ["Anything Two"]
    assert any("anime checked on each model" in note for note in result.notes)


def test_paging_follows_the_cursor_up_to_the_limit(listed: CivitaiServer) -> None:
    client = CivitaiClient()
    try:
        result = browse("https://civitai.com/models?sort=Most%20Downloaded&period=AllTime", limit=3, client=client)
    finally:
        client.close()
    assert [i.model_id for i in result.items] == [105, 104, 103]


def test_the_rest_api_refuses_what_it_does_not_know(listed: CivitaiServer) -> None:
    with pytest.raises(UsageError, match="sort 'Most Buzz'"):
        browse("https://civitai.com/models?sort=Most%20Buzz")
    client = CivitaiClient()
    try:
        for bad in ([("collectionId", "42742")], [("sort", "Trending")], [("types", "Checkpoints")]):
            with pytest.raises(UsageError, match="did not accept"):
                client.list_models(bad, 5)
    finally:
        client.close()


def test_a_collection_is_listed_through_the_sites_own_queries(listed: CivitaiServer) -> None:
    result = browse(COLLECTION_URL)
    assert result.title == "Civitai collection 42742: SD 1.5 picks"
    assert [i.name for i in result.items] == ["Animagine", "Counterfeit"]  # the collection's order
    trpc = [urlsplit(r.path).path for r in listed.requests_to("site") if "/api/trpc/" in r.path]
    assert trpc == ["/api/trpc/collection.getById", "/api/trpc/model.getAll"]
    [query] = _api_queries(listed, "/api/v1/models")
    assert query["ids"] == ["104,102"] and "collectionId" not in query


def test_a_private_collection_says_so_in_one_line(listed: CivitaiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIVITAI_TOKEN", raising=False)
    with pytest.raises(AuthError) as caught:
        browse("https://civitai.com/collections/7")
    message = str(caught.value)
    assert "is private or needs a login" in message and "\n" not in message
    monkeypatch.setenv("CIVITAI_TOKEN", "good-token")  # the owner's token sees it
    assert [i.name for i in browse("https://civitai.com/collections/7").items] == ["Anything Two"]
    authorised = [r for r in listed.requests_to("site") if "/api/trpc/" in r.path and "Authorization" in r.headers]
    assert authorised and all(r.headers["Authorization"] == "Bearer good-token" for r in authorised)


def test_a_site_that_does_not_serve_api_clients(listed: CivitaiServer) -> None:
    listed.trpc_blocked = True
    with pytest.raises(NetworkError, match="does not serve collections to API clients"):
        browse(COLLECTION_URL)


def test_get_pick_and_all_fetch_exactly_those(listed: CivitaiServer, tmp_home: Home, run_cli) -> None:
    picked = run_cli("--home", tmp_home.root, "get", SEARCH_URL, "--pick", "2", "--json")
    assert picked.exit_code == 0, picked.stderr
    [result] = json.loads(picked.stdout)["results"]
    assert Path(result["path"]).name == "Anything Two.safetensors"
    stored = {urlsplit(r.path).path.split("/")[2] for r in listed.requests_to("storage")}
    assert stored == {"10100"}
    everything = run_cli("--home", tmp_home.root, "get", COLLECTION_URL, "--all", "--json")
    assert everything.exit_code == 0, everything.stderr
    assert [Path(r["path"]).name for r in json.loads(everything.stdout)["results"]] == [
        "Animagine.safetensors", "Counterfeit.safetensors"]
    assert {urlsplit(r.path).path.split("/")[2] for r in listed.requests_to("storage")} == {"10100", "10400", "10200"}


def test_get_of_a_listing_without_pick_says_how(listed: CivitaiServer, tmp_home: Home, run_cli) -> None:
    result = run_cli("--home", tmp_home.root, "get", COLLECTION_URL)
    assert result.exit_code == 2 and "--pick 1,3" in result.stderr and "civitai browse" in result.stderr
    beyond = run_cli("--home", tmp_home.root, "get", COLLECTION_URL, "--pick", "5")
    assert beyond.exit_code == 2 and "shows only 2 models" in beyond.stderr


def test_civitai_browse_prints_a_table_and_json(listed: CivitaiServer, run_cli, monkeypatch) -> None:
    monkeypatch.setenv("CIVITAI_TOKEN", "good-token")
    table = run_cli("civitai", "browse", COLLECTION_URL, "--format", "tsv")
    assert table.exit_code == 0, table.stderr
    header, first, _ = table.stdout.splitlines()
    assert header.split("\t")[:8] == ["#", "name", "type", "base", "downloads", "rating", "nsfw", "size"]
    assert first.split("\t")[:7] == ["1", "Animagine", "Checkpoint", "SDXL 1.0", "7000", "5.0", "PG"]
    assert "good-token" not in table.stdout + table.stderr
    data = json.loads(run_cli("civitai", "browse", SEARCH_URL, "--json").stdout)
    assert [i["name"] for i in data["items"]] == ["Counterfeit", "Anything Two"]
    assert set(data["items"][0]) >= {"name", "type", "base_model", "downloads", "rating", "nsfw_level", "file_size"}
    private = run_cli("civitai", "browse", "https://civitai.com/collections/7")
    assert private.exit_code == 0  # the owner's token
    monkeypatch.delenv("CIVITAI_TOKEN")
    refused = run_cli("civitai", "browse", "https://civitai.com/collections/7")
    assert refused.exit_code == 1 and len(refused.stderr.strip().splitlines()) == 1


def test_control_characters_from_civitai_are_escaped(listed: CivitaiServer, run_cli) -> None:
    listed.add_collection(9, "Bad\x1b[2J title", [102])
    listed.models[102]["name"] = "Counter\x1b]0;owned\x07feit"
    for fmt in ("table", "tsv"):
        result = run_cli("civitai", "browse", "https://civitai.com/collections/9", "--format", fmt)
        assert result.exit_code == 0, result.stderr
        assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout
    assert "\\x1b" in result.stdout
