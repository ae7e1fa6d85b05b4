"""``sdhub get`` and ``sdhub civitai ...`` as a user runs them, against the imitation Civitai."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home, init_home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer

VERSION_ID = 1292


@pytest.fixture
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("made")
    return {
        "safetensors": factory.sd1_checkpoint(folder / "m.safetensors"),
        "ckpt": factory.sd1_checkpoint(folder / "m.ckpt", fmt="ckpt", seed=1),
        "lora": factory.lora(folder / "l.safetensors"),
        "embedding": factory.embedding(folder / "e.pt"),
    }


@pytest.fixture
def site(civitai: CivitaiServer, fixture_json, models: dict[str, Path]) -> CivitaiServer:
    civitai.add_model(fixture_json("model"), {194: models["safetensors"], 5149: models["ckpt"]})
    civitai.add_version(fixture_json("by-hash"), {956231: models["lora"]})
    civitai.add_model(fixture_json("models-search")["items"][0], {9500: models["embedding"]})
    return civitai


def test_get_a_civitai_page_url(site: CivitaiServer, tmp_home: Home, run_cli, models,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDHUB_PREVIEW_NSFW", "X")  # the 2023 answer's only image is marked nsfw: true
    result = run_cli("--home", tmp_home.root, "get", "https://civitai.com/models/1102/synthwavepunk", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["results"][0]
    path = Path(data["path"])
    assert path == tmp_home.folder("checkpoint") / "synthwavepunk_v3Alpha.safetensors"
    assert path.read_bytes() == models["safetensors"].read_bytes()
    assert data["remote"]["version_id"] == VERSION_ID and data["kind"] == "checkpoint"

    with Catalog(tmp_home) as catalog:
        asset = catalog.get(data["sha256"])
        remote = catalog.db.execute("SELECT model_id, version_id, url, name FROM remote WHERE asset_id = ?",
                                    [asset.id]).fetchone()
    assert asset.nsfw is False
    assert asset.trigger_words == ["nvinkpunk", "snthwve style", "style of joemadureira"]
    assert asset.tags == ["punk", "synthwave", "style"]
    assert "comic-book look" in asset.description
    # The model's description and the version's notes are both kept, each labelled.
    assert asset.description.startswith("About the model: This is a 50/50 Merge of Inkpunk Diffusion and Synthwave.")
    assert "\n\nAbout this version (V3 Alpha): " in asset.description
    assert remote == ("1102", "1292", "https://civitai.com/models/1102?modelVersionId=1292", "SynthwavePunk")

    info = json.loads(path.with_name("synthwavepunk_v3Alpha.civitai.info").read_text())
    assert info["id"] == VERSION_ID and info["model"]["name"] == "SynthwavePunk"
    preview = path.with_name("synthwavepunk_v3Alpha.preview.png")
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_home.catalog_dir / "previews" / f"{data['sha256']}.png").is_file()
    assert "saved:" in result.stderr


def test_the_same_file_is_not_downloaded_twice(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    assert run_cli("--home", tmp_home.root, "get", "urn:air:sd1:checkpoint:civitai:1102@1292").exit_code == 0
    fetched = [r for r in site.requests_to("storage") if r.path.startswith("/models/")]
    again = run_cli("--home", tmp_home.root, "get", "https://civitai.com/models/1102?modelVersionId=1292", "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["results"][0]["already_present"] is True
    assert [r for r in site.requests_to("storage") if r.path.startswith("/models/")] == fetched
    assert "already in the library" in again.stderr


def test_a_pickle_is_converted_and_dropped(site: CivitaiServer, tmp_home: Home, run_cli,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDHUB_PREVIEW_NSFW", "X")  # the 2023 answer's only image is marked nsfw: true
    result = run_cli("--home", tmp_home.root, "get", "civitai:1102@1292", "--format", "ckpt", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["results"][0]
    assert data["path"].endswith("synthwavepunk_v3Alpha.safetensors")
    assert data["converted_from"].endswith("synthwavepunk_v3Alpha.ckpt") and not data["pickle_kept"]
    names = sorted(p.name for p in tmp_home.folder("checkpoint").iterdir() if p.is_file())
    assert names == ["synthwavepunk_v3Alpha.civitai.info", "synthwavepunk_v3Alpha.preview.png",
                     "synthwavepunk_v3Alpha.safetensors"]
    with Catalog(tmp_home) as catalog:
        asset = catalog.get(data["sha256"])
    assert asset.format == "safetensors" and asset.source_sha256 is not None
    assert asset.trigger_words  # the converted file carries the Civitai metadata


def test_keep_pickle_keeps_both(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    result = run_cli("--home", tmp_home.root, "get", "civitai:1102@1292", "--format", "ckpt", "--keep-pickle",
                     "--no-sidecars", "--json")
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in tmp_home.folder("checkpoint").iterdir() if p.is_file())
    assert names == ["synthwavepunk_v3Alpha.ckpt", "synthwavepunk_v3Alpha.safetensors"]


def test_kinds_go_to_their_layout_folders(site: CivitaiServer, tmp_path: Path, run_cli) -> None:
    home = init_home(tmp_path / "webui", "a1111")
    assert run_cli("--home", home.root, "get", "urn:air:flux1:lora:civitai:706978@1050496").exit_code == 0
    assert run_cli("--home", home.root, "get", "https://civitai.com/models/3036").exit_code == 0
    assert (home.root / "models" / "Lora" / "aeshteticv5.safetensors").is_file()
    embedding = list((home.root / "embeddings").glob("21charturnerv2*"))
    assert [p.suffix for p in embedding if p.suffix in (".pt", ".safetensors")] == [".safetensors"]


def test_to_puts_the_file_in_the_given_folder(site: CivitaiServer, tmp_home: Home, tmp_path: Path, run_cli) -> None:
    target = tmp_path / "elsewhere"
    result = run_cli("--home", tmp_home.root, "get", "civitai:1102@1292", "--to", target, "--no-sidecars")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["synthwavepunk_v3Alpha.safetensors"]


def test_login_required_is_one_clear_line(site: CivitaiServer, tmp_home: Home, run_cli,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    site.require_login.add(VERSION_ID)
    result = run_cli("--home", tmp_home.root, "get", "civitai:1102@1292")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "requires you to be logged in" in result.stderr and "CIVITAI_TOKEN" in result.stderr
    monkeypatch.setenv("CIVITAI_TOKEN", "good-token")
    ok = run_cli("--home", tmp_home.root, "get", "civitai:1102@1292", "--json")
    assert ok.exit_code == 0 and "good-token" not in ok.stdout + ok.stderr
    with Catalog(tmp_home) as catalog:
        stored = catalog.db.execute("SELECT group_concat(json) FROM remote").fetchone()[0]
    assert "good-token" not in stored


def test_a_token_stored_by_login_is_used(site: CivitaiServer, tmp_home: Home, run_cli,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    site.require_login.add(VERSION_ID)
    monkeypatch.setattr("sys.stdin", io.StringIO("good-token\n"))
    assert run_cli("civitai", "login", "--token-stdin").exit_code == 0
    assert run_cli("--home", tmp_home.root, "get", "civitai:1102@1292").exit_code == 0


def test_bad_references_exit_2_with_the_accepted_forms(tmp_home: Home, run_cli) -> None:
    result = run_cli("--home", tmp_home.root, "get", "not a model")
    assert result.exit_code == 2 and "accepted forms" in result.stderr


def test_several_refs_report_each_failure(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    result = run_cli("--home", tmp_home.root, "get", "civitai:1102@1292", "civitai:1102@999999", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert len(data["results"]) == 1 and data["failed"][0]["ref"] == "civitai:1102@999999"
    assert "1 of 2 downloads failed" in result.stderr


def test_civitai_search_table_and_json(site: CivitaiServer, run_cli) -> None:
    table = run_cli("civitai", "search", "synthwave")
    assert table.exit_code == 0 and "1102" in table.stdout and "Checkpoint" in table.stdout
    assert "3036" not in table.stdout
    # Piped: one tab-separated line per model; `--format csv` has a header line.
    record = table.stdout.splitlines()[0].split("\t")
    assert len(table.stdout.splitlines()) == 1 and record[0] == "1102" and record[2] == "Checkpoint"
    assert record[-1].startswith("urn:air:civitai:1102@")
    as_csv = run_cli("civitai", "search", "synthwave", "--format", "csv").stdout.splitlines()
    assert as_csv[0] == "id,name,type,base,creator,downloads,get with" and as_csv[1].startswith("1102,")
    data = json.loads(run_cli("civitai", "search", "--type", "TextualInversion", "--json").stdout)
    assert [m["id"] for m in data] == [3036]
    assert json.loads(run_cli("civitai", "search", "--base", "SD 2.1", "--json").stdout)[0]["name"].startswith(
        "CharTurner")


def test_civitai_info_by_ref_and_by_hash(site: CivitaiServer, run_cli, models) -> None:
    shown = run_cli("civitai", "info", "https://civitai.com/models/1102")
    assert shown.exit_code == 0 and "SynthwavePunk (1102)" in shown.stdout and "justmaier" in shown.stdout
    as_json = json.loads(run_cli("civitai", "info", "https://civitai.com/models/1102", "--json").stdout)
    assert [f["name"] for f in as_json["modelVersions"][0]["files"]] == [
        "synthwavepunk_v3Alpha.ckpt", "synthwavepunk_v3Alpha.safetensors"]
    by_file = json.loads(run_cli("civitai", "info", models["lora"], "--json").stdout)
    assert by_file["id"] == 1050496
    by_version = json.loads(run_cli("civitai", "info", "urn:air:sd1:checkpoint:civitai:1102@1292", "--json").stdout)
    assert by_version["id"] == 1292 and by_version["model"]["name"] == "SynthwavePunk"
    missing = run_cli("civitai", "info", "0" * 64)
    assert missing.exit_code == 1 and "Model not found" in missing.stderr


def test_civitai_sync_fills_in_what_the_catalog_lacks(site: CivitaiServer, tmp_home: Home, run_cli, models) -> None:
    folder = tmp_home.folder("lora")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mystery.safetensors").write_bytes(models["lora"].read_bytes())
    factory.lora(folder / "homemade.safetensors", seed=7)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    result = run_cli("--home", tmp_home.root, "civitai", "sync", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["checked"] == 2 and len(report["matched"]) == 1 and len(report["not_found"]) == 1
    assert report["matched"][0]["version_id"] == 1050496
    assert json.loads((folder / "mystery.civitai.info").read_text())["id"] == 1050496
    assert (folder / "mystery.preview.png").is_file()
    assert not (folder / "homemade.civitai.info").exists()
    with Catalog(tmp_home) as catalog:
        asset = catalog.find("mystery")
    assert asset.trigger_words == ["aesthetic_pos3", "dynamic_pos3"]
    # Nothing left to look up the second time.
    assert json.loads(run_cli("--home", tmp_home.root, "civitai", "sync", "--json").stdout)["checked"] == 1


def test_a_plain_url_goes_where_its_tensors_say(site: CivitaiServer, tmp_home: Home, run_cli, models) -> None:
    url = site.storage_location(site.served(956231))  # any http server; here the storage host
    result = run_cli("--home", tmp_home.root, "get", url, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["results"][0]
    assert data["kind"] == "lora" and data["source"] == "url"
    assert Path(data["path"]) == tmp_home.folder("lora") / "aeshteticv5.safetensors"
    assert Path(data["path"]).read_bytes() == models["lora"].read_bytes()
    assert list(tmp_home.downloads_dir.iterdir()) == []
    with Catalog(tmp_home) as catalog:
        assert catalog.get(data["sha256"]).kind == "lora"
    again = json.loads(run_cli("--home", tmp_home.root, "get", url, "--json").stdout)["results"][0]
    assert again["already_present"] and again["path"] == data["path"]
    assert sorted(p.name for p in tmp_home.folder("lora").iterdir()) == ["aeshteticv5.safetensors"]


def test_a_plain_url_of_something_that_is_no_model_is_kept_too(site: CivitaiServer, tmp_home: Home,
                                                                run_cli) -> None:
    site.served(194).data, site.served(194).path = b"\x00" * 4096, None
    url = site.storage_location(site.served(194))
    result = run_cli("--home", tmp_home.root, "get", url, "--json")
    assert result.exit_code == 0, result.stderr
    kept = tmp_home.downloads_dir / "synthwavepunk_v3Alpha.safetensors"
    assert kept.read_bytes() == b"\x00" * 4096  # downloaded whole and never thrown away
    data = json.loads(result.stdout)["results"][0]
    assert data["kind"] == "other" and data["path"] == str(kept)
    assert f"kept in {kept}" in result.stderr and "sdhub mv synthwavepunk_v3Alpha.safetensors --kind" in result.stderr
    with Catalog(tmp_home) as catalog:
        asset = catalog.get(data["sha256"])
    assert asset.kind == "other" and asset.defect == "broken"  # catalogued with what was found
    # --kind on the next get files it (a plain URL has no published hash: its bytes come again, and go).
    again = run_cli("--home", tmp_home.root, "get", url, "--kind", "vae", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["results"][0]["path"] == str(tmp_home.folder("vae") / kept.name)
    assert [p.name for p in tmp_home.folder("vae").iterdir()] == [kept.name]
    assert list(tmp_home.downloads_dir.iterdir()) == []
    with Catalog(tmp_home) as catalog:
        assert catalog.get(data["sha256"]).kind == "vae"


def test_civitai_info_of_a_catalogued_model(site: CivitaiServer, tmp_home: Home, run_cli, models) -> None:
    folder = tmp_home.folder("lora")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mystery.safetensors").write_bytes(models["lora"].read_bytes())
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    shown = json.loads(run_cli("--home", tmp_home.root, "civitai", "info", "mystery", "--json").stdout)
    assert shown["id"] == 1050496
    unknown = run_cli("--home", tmp_home.root, "civitai", "info", "nothing-like-this")
    assert unknown.exit_code != 0 and "Traceback" not in unknown.stderr


def test_a_file_converted_here_is_looked_up_on_civitai_by_its_original_hash(site: CivitaiServer, tmp_home: Home,
                                                                           run_cli, models) -> None:
    got = run_cli("--home", tmp_home.root, "get", "civitai:1102@1292", "--format", "ckpt", "--json")
    converted = Path(json.loads(got.stdout)["results"][0]["path"])
    for ref in (converted, converted.stem, hashlib.sha256(converted.read_bytes()).hexdigest()):
        shown = run_cli("--home", tmp_home.root, "civitai", "info", ref, "--json")
        assert shown.exit_code == 0, (ref, shown.stderr)
        assert json.loads(shown.stdout)["id"] == 1292
    # A converted file whose Civitai record is gone from the catalog is found again by sync.
    folder = tmp_home.folder("checkpoint")
    (folder / "synthwavepunk_v3Alpha.civitai.info").unlink()
    with Catalog(tmp_home) as catalog:
        catalog.db.execute("DELETE FROM remote")
        catalog.db.conn.commit()
    report = json.loads(run_cli("--home", tmp_home.root, "civitai", "sync", "--json").stdout)
    assert [m["version_id"] for m in report["matched"]] == [1292]
    assert report["matched"][0]["found_by"] == hashlib.sha256(models["ckpt"].read_bytes()).hexdigest()


class RunsAShellCommand:
    """Pickles as a call to os.system: what a malicious checkpoint does when torch.load-ed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_and_quarantined(civitai: CivitaiServer, fixture_json, tmp_home: Home,
                                                       tmp_path: Path, run_cli) -> None:
    import torch

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": RunsAShellCommand(marker)}, evil)
    civitai.add_version(fixture_json("model-version"), {289: evil})
    result = run_cli("--home", tmp_home.root, "get", "https://civitai.com/models/1244?modelVersionId=1318")
    assert result.exit_code == 1, result.stderr
    assert "system" in result.stderr and "quarantine" in result.stderr
    assert not marker.exists()
    assert [p for p in tmp_home.folder("checkpoint").iterdir() if p.is_file()] == []
    assert (tmp_home.catalog_dir / "quarantine" / "froggyStyle_toad.ckpt").read_bytes() == evil.read_bytes()


def test_a_token_pasted_in_a_url_is_not_echoed(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    result = run_cli("--home", tmp_home.root, "get", "https://civitai.com/api/download/models/1292?token=sk-pasted",
                     "--json", "--no-sidecars")
    assert result.exit_code == 0, result.stderr
    assert "sk-pasted" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["results"][0]["ref"].endswith("?token=***")
