"""The Civitai client against the imitation site: shapes, paging, errors, retries, tokens."""

from __future__ import annotations

import os
import stat

import pytest

from sdhub.config import civitai_token, config_path, write_config
from sdhub.errors import AuthError, NetworkError, NotFoundError, UsageError
from sdhub.sources.civitai import CivitaiClient, pick_file
from sdhub.sources.http import RetryPolicy
from sdhub.sources.refs import CivitaiRef, parse_ref
from sdhub.testing.civitai_server import CivitaiServer


class Sleeps(list):
    """Records the waits a retry policy asks for instead of sleeping through them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_model_version_and_hash_lookups_return_civitai_shapes(civitai: CivitaiServer, fixture_json) -> None:
    civitai.add_model(fixture_json("model"), {194: b"safetensors bytes", 5149: b"pickle bytes"})
    civitai.add_version(fixture_json("by-hash"), {956231: b"lora bytes"})
    client = CivitaiClient()

    model = client.model(1102)
    assert model["name"] == "SynthwavePunk" and model["creator"]["username"] == "justmaier"
    assert [f["name"] for f in model["modelVersions"][0]["files"]] == [
        "synthwavepunk_v3Alpha.ckpt", "synthwavepunk_v3Alpha.safetensors"]

    version = client.model_version(1292)
    assert version["modelId"] == 1102 and version["model"]["type"] == "Checkpoint"
    assert [f["primary"] for f in version["files"]] == [False, True]
    # Download addresses name the configured site, not civitai.com.
    assert version["downloadUrl"].startswith(civitai.url)

    sha256 = version["files"][1]["hashes"]["SHA256"]
    assert client.by_hash(sha256.lower())["id"] == 1292
    assert client.by_hash(sha256[:10])["id"] == 1292  # AutoV2
    assert client.by_hash(client.model_version(1050496)["files"][0]["hashes"]["BLAKE3"])["id"] == 1050496


def test_unknown_ids_and_hashes_are_not_found(civitai: CivitaiServer) -> None:
    client = CivitaiClient()
    with pytest.raises(NotFoundError, match="No model with id 99"):
        client.model(99)
    with pytest.raises(NotFoundError, match="Model not found"):
        client.by_hash("0" * 64)


def _many_models(civitai: CivitaiServer, fixture_json, count: int) -> None:
    template = fixture_json("models-search")["items"][0]
    for number in range(count):
        model = {**template, "id": 5000 + number, "name": f"CharTurner {number}",
                 "modelVersions": [{**template["modelVersions"][0], "id": 9000 + number}]}
        civitai.add_model(model)


def test_search_follows_cursors_until_the_limit(civitai: CivitaiServer, fixture_json) -> None:
    _many_models(civitai, fixture_json, 250)
    client = CivitaiClient()
    found = client.search("charturner", limit=230)
    assert len(found) == 230
    assert len({m["id"] for m in found}) == 230
    searches = [r.path for r in civitai.requests_to("site") if r.path.startswith("/api/v1/models?")]
    assert len(searches) == 3  # 100 + 100 + 30, each page asked with the cursor of the one before
    assert "cursor=100" in searches[1] and "cursor=200" in searches[2]
    assert all("limit=" in s and "limit=1000" not in s for s in searches)


def test_search_stops_on_the_last_page(civitai: CivitaiServer, fixture_json) -> None:
    _many_models(civitai, fixture_json, 7)
    assert len(CivitaiClient().search(limit=50)) == 7


def test_search_follows_page_numbers_when_the_site_pages(civitai: CivitaiServer, fixture_json) -> None:
    _many_models(civitai, fixture_json, 12)
    client = CivitaiClient()
    found = client.search(limit=12, extra={"page": "1"}, page_size=5)
    assert [m["id"] for m in found] == list(range(5000, 5012))
    pages = [r.path for r in civitai.requests_to("site") if r.path.startswith("/api/v1/models?")]
    assert len(pages) == 3 and "page=2" in pages[1] and "page=3" in pages[2] and "page=1" not in pages[2]


def test_search_filters_reach_the_site(civitai: CivitaiServer, fixture_json) -> None:
    civitai.add_model(fixture_json("model"))
    civitai.add_model(fixture_json("models-search")["items"][0])
    client = CivitaiClient()
    assert [m["id"] for m in client.search(types=["TextualInversion"])] == [3036]
    assert [m["id"] for m in client.search(base_models=["SD 1.5"])] == [1102]
    assert client.search("synthwave", types=["LORA"]) == []


def test_bad_search_parameters_are_usage_errors(civitai: CivitaiServer) -> None:
    with pytest.raises(UsageError, match="Cannot use page param with query search"):
        CivitaiClient().search("x", extra={"page": "2"})


def test_429_is_retried_honouring_retry_after(civitai: CivitaiServer, fixture_json) -> None:
    civitai.add_model(fixture_json("model"))
    civitai.rate_limit(2, retry_after=7)
    sleeps = Sleeps()
    client = CivitaiClient(policy=RetryPolicy(attempts=4, max_wait=30, sleep=sleeps))
    assert client.model(1102)["id"] == 1102
    assert sleeps == [7, 7]


def test_retry_after_waits_are_capped(civitai: CivitaiServer, fixture_json) -> None:
    civitai.add_model(fixture_json("model"))
    civitai.rate_limit(1, retry_after=3600)
    sleeps = Sleeps()
    client = CivitaiClient(policy=RetryPolicy(attempts=3, max_wait=2.5, sleep=sleeps))
    assert client.model(1102)["id"] == 1102
    assert sleeps == [2.5]


def test_without_retry_after_the_backoff_doubles(civitai: CivitaiServer, fixture_json) -> None:
    civitai.rate_limit(3, retry_after=None)
    sleeps = Sleeps()
    client = CivitaiClient(policy=RetryPolicy(attempts=3, base_wait=0.5, max_wait=60, sleep=sleeps))
    with pytest.raises(NetworkError, match="answered HTTP 429.*try again later"):
        client.model(1102)
    assert sleeps == [0.5, 1.0]


def test_a_dead_server_is_a_network_error() -> None:
    server = CivitaiServer().start()
    url = server.url
    server.stop()
    client = CivitaiClient(url, policy=RetryPolicy(attempts=2, sleep=lambda s: None))
    with pytest.raises(NetworkError, match="connection failed"):
        client.model(1)


def test_the_token_goes_only_to_the_civitai_site(civitai: CivitaiServer, fixture_json,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    civitai.add_model(fixture_json("model"))
    monkeypatch.setenv("CIVITAI_TOKEN", "secret-abc")
    CivitaiClient().model(1102)
    assert civitai.log[-1].headers["Authorization"] == "Bearer secret-abc"
    assert "secret-abc" not in civitai.log[-1].path


def test_the_token_can_come_from_the_settings_file(monkeypatch: pytest.MonkeyPatch) -> None:
    assert civitai_token() is None
    path = write_config({"civitai_token": "from-file"})
    assert path == config_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert civitai_token() == "from-file"
    monkeypatch.setenv("CIVITAI_TOKEN", "from-env")
    assert civitai_token() == "from-env"


def test_account_only_requests_say_how_to_give_a_token(civitai: CivitaiServer) -> None:
    with pytest.raises(AuthError, match="wants an API token.*CIVITAI_TOKEN"):
        CivitaiClient().search(extra={"favorites": "true"})
    with pytest.raises(AuthError, match="refused the API token") as caught:
        CivitaiClient(token="wrong-token").search(extra={"favorites": "true"})
    assert "wrong-token" not in str(caught.value)
    assert CivitaiClient(token="good-token").search(extra={"favorites": "true"}) == []


def test_resolving_picks_the_newest_version_and_its_primary_file(civitai: CivitaiServer, fixture_json) -> None:
    civitai.add_model(fixture_json("model"), {194: b"a", 5149: b"b"})
    client = CivitaiClient()
    choice = client.resolve(parse_ref("https://civitai.com/models/1102"))  # type: ignore[arg-type]
    assert choice.version["id"] == 1292
    assert choice.file["name"] == "synthwavepunk_v3Alpha.safetensors"
    assert choice.kind == "checkpoint"
    assert choice.download_url == f"{civitai.url}/api/download/models/1292"
    pickle = client.resolve(CivitaiRef(model_id=1102), format="ckpt")
    assert pickle.file["name"] == "synthwavepunk_v3Alpha.ckpt"
    assert pickle.download_url == f"{civitai.url}/api/download/models/1292?type=Model&format=PickleTensor"
    named = client.resolve(CivitaiRef(model_id=1102), version="v3 alpha")
    assert named.version["id"] == 1292
    with pytest.raises(NotFoundError, match="no version 'v9'.*V3 Alpha \\(1292\\)"):
        client.resolve(CivitaiRef(model_id=1102), version="v9")
    with pytest.raises(UsageError, match="belongs to model 1102, not 7"):
        client.resolve(CivitaiRef(model_id=7, version_id=1292))


def test_file_choices(fixture_json) -> None:
    version = fixture_json("model")["modelVersions"][0]
    assert pick_file(version)["id"] == 194
    assert pick_file(version, format="PickleTensor")["id"] == 5149
    assert pick_file(version, format="safetensors", fp="FP16", size="full", file_type="model")["id"] == 194
    assert pick_file(version, file_id=5149)["id"] == 5149
    with pytest.raises(NotFoundError) as caught:
        pick_file(version, fp="bf16")
    assert "fp=bf16" in str(caught.value) and "synthwavepunk_v3Alpha.ckpt (type=Model, format=PickleTensor" \
        in str(caught.value)
