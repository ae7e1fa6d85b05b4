"""The file rule (safetensors before pickles, pruned before full, fp16 before fp32, no EMA-only copies) for a
Civitai version and a Hub repo of loose checkpoints: what it picks, what --prefer/--file change, and that
only the chosen file is downloaded."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

import pytest

from sdhub.config import Home
from sdhub.errors import NotFoundError, UsageError
from sdhub.sources.file_choice import choose, from_file_name
from sdhub.sources.get import get
from sdhub.sources.get_list import file_candidates
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer, civitai_model
from sdhub.testing.hub_server import HubServer

ASTRA = {  # the five copies of one model a community upload often holds
    "Astra_fp32_full.ckpt": ("PickleTensor", "full", "fp32"),
    "Astra_fp32_full.safetensors": ("SafeTensor", "full", "fp32"),
    "Astra_fp16_pruned.safetensors": ("SafeTensor", "pruned", "fp16"),
    "Astra_fp16_pruned.ckpt": ("PickleTensor", "pruned", "fp16"),
    "Astra-ema-only.safetensors": ("SafeTensor", "pruned", "fp16"),
}
FAQ_CHOICE = "Astra_fp16_pruned.safetensors"


@pytest.fixture
def astra_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("astra")
    return {
        "Astra_fp32_full.ckpt": b"not even a pickle" * 4000,
        "Astra_fp32_full.safetensors": factory.sd1_checkpoint(folder / "a.safetensors", seed=2).read_bytes(),
        FAQ_CHOICE: factory.sd1_checkpoint(folder / "b.safetensors", seed=3).read_bytes(),
        "Astra_fp16_pruned.ckpt": factory.sd1_checkpoint(folder / "c.ckpt", fmt="ckpt", seed=4).read_bytes(),
        "Astra-ema-only.safetensors": b"ema",  # the smallest: only the EMA rule keeps it out
    }


@pytest.fixture
def astra_version(civitai: CivitaiServer, astra_files: dict[str, bytes]) -> CivitaiServer:
    model = civitai_model(7001, 8001, 1, name="Astra", file_name="x", model_type="Checkpoint")
    version = model["modelVersions"][0]
    template = version["files"][0]
    version["files"] = []
    for file_id, (name, (fmt, size, fp)) in enumerate(ASTRA.items(), 1):
        version["files"].append({**template, "id": file_id, "name": name, "primary": file_id == 1,
                                 "metadata": {"format": fmt, "size": size, "fp": fp},
                                 "downloadUrl": f"https://civitai.com/api/download/models/8001?type=Model&format={fmt}"
                                                f"&size={size}&fp={fp}"})
    civitai.add_model(model, {i: astra_files[name] for i, name in enumerate(ASTRA, 1)})
    return civitai


def _stored_file_ids(server: CivitaiServer) -> set[int]:
    """The files the storage host served (a download may use several connections for one file)."""
    return {int(urlsplit(r.path).path.split("/")[2]) for r in server.requests_to("storage") if r.method == "GET"}


def test_the_rule_picks_the_faqs_file_by_name_alone() -> None:
    candidates = [from_file_name(name, 100) for name in ASTRA]
    picked = choose(candidates)
    assert picked.chosen.name == FAQ_CHOICE
    rows = {row["name"]: row["why"] for row in picked.rows()}
    assert rows["Astra-ema-only.safetensors"] == "an EMA-only training copy"
    assert rows["Astra_fp16_pruned.ckpt"] == "pickle, not safetensors"
    assert rows["Astra_fp32_full.safetensors"] == "full, not pruned"
    # The pruned EMA weights of SD 1.5 (v1-5-pruned-emaonly) are the generation file, not a training copy.
    assert not from_file_name("v1-5-pruned-emaonly.safetensors").ema_only
    assert choose(candidates, prefer=["fp32"]).chosen.name == "Astra_fp32_full.safetensors"
    assert choose(candidates, prefer=["ckpt"]).chosen.name == "Astra_fp16_pruned.ckpt"
    assert choose(candidates, prefer=["full", "ckpt"]).chosen.name == "Astra_fp32_full.ckpt"
    with pytest.raises(UsageError, match="--prefer 'tiny'"):
        choose(candidates, prefer=["tiny"])
    with pytest.raises(NotFoundError, match="no file named 'nope.safetensors'"):
        choose(candidates, file_name="nope.safetensors")


def test_a_civitai_version_gets_the_faqs_file_and_nothing_else(astra_version: CivitaiServer, tmp_home: Home,
                                                               astra_files: dict[str, bytes]) -> None:
    result = get(tmp_home, "https://civitai.com/models/7001")
    assert result.path.read_bytes() == astra_files[FAQ_CHOICE]
    assert _stored_file_ids(astra_version) == {3}  # not the primary ckpt, not the EMA copy
    assert "the rule" in result.remote["file_rule"]


@pytest.mark.parametrize(("choices", "file_id"), [
    ({"prefer": ["fp32"]}, 2),
    ({"file_name": "Astra_fp16_pruned.ckpt"}, 4),
    ({"format": "ckpt"}, 4),  # --format narrows the candidates, then the rule picks among them
])
def test_civitai_wishes_override_the_rule(astra_version: CivitaiServer, tmp_home: Home, choices, file_id: int) -> None:
    get(tmp_home, "https://civitai.com/models/7001", **choices)
    assert _stored_file_ids(astra_version) == {file_id}


def test_get_list_shows_a_civitai_versions_candidates(astra_version: CivitaiServer, run_cli, tmp_home: Home) -> None:
    result = run_cli("--home", tmp_home.root, "get", "https://civitai.com/models/7001", "--list", "--json")
    assert result.exit_code == 0, result.stderr
    [choice] = json.loads(result.stdout)[0]["choices"]
    assert choice["chosen"] == FAQ_CHOICE
    assert [row["name"] for row in choice["candidates"]][0] == FAQ_CHOICE
    assert {row["name"]: row["size"] for row in choice["candidates"]}["Astra-ema-only.safetensors"] == 3
    assert astra_version.requests_to("storage") == []  # listing downloads nothing
    table = run_cli("--home", tmp_home.root, "get", "https://civitai.com/models/7001", "--list", "--prefer", "fp32")
    assert table.exit_code == 0, table.stderr
    chosen_line = next(line for line in table.stdout.splitlines() if line.startswith("*"))
    assert "Astra_fp32_full.safetensors" in chosen_line and "--prefer" in chosen_line


@pytest.fixture
def astra_repo(hub: HubServer, astra_files: dict[str, bytes]) -> HubServer:
    hub.add_repo("SruNya/Astra_by_SruNya", {**astra_files, "README.md": b"# Astra", "Astra.yaml": b"model: {}"})
    return hub


def _cdn_blobs(server: HubServer) -> set[str]:
    return {urlsplit(r.path).path.rsplit("/", 1)[-1] for r in server.requests_to("cdn") if r.method == "GET"}


def test_a_hub_repo_of_loose_copies_gets_one_by_the_rule(astra_repo: HubServer, tmp_home: Home,
                                                         astra_files: dict[str, bytes]) -> None:
    result = get(tmp_home, "https://huggingface.co/SruNya/Astra_by_SruNya")
    assert sorted(p.name for p in result.path.iterdir()) == sorted(["README.md", "Astra.yaml", FAQ_CHOICE])
    assert _cdn_blobs(astra_repo) == {hashlib.sha256(astra_files[FAQ_CHOICE]).hexdigest()}
    [note] = [w for w in result.warnings if "left out 4" in w]
    assert FAQ_CHOICE in note and "--include '*'" in note and "Astra_fp32_full.ckpt" in note


def test_hub_wishes_and_include_everything(astra_repo: HubServer, tmp_home: Home, astra_files) -> None:
    result = get(tmp_home, "hf:SruNya/Astra_by_SruNya", prefer=["fp32"], kind="checkpoint")
    assert (result.path / "Astra_fp32_full.safetensors").exists()
    assert _cdn_blobs(astra_repo) == {hashlib.sha256(astra_files["Astra_fp32_full.safetensors"]).hexdigest()}
    with pytest.raises(NotFoundError, match="no file named 'Astra.gguf'"):
        get(tmp_home, "hf:SruNya/Astra_by_SruNya", file_name="Astra.gguf")


def test_hub_include_star_still_fetches_every_copy(astra_repo: HubServer, tmp_home: Home) -> None:
    result = get(tmp_home, "hf:SruNya/Astra_by_SruNya", include=["*"])
    assert {p.name for p in result.path.iterdir()} >= set(ASTRA)
    assert not any("left out" in w for w in result.warnings)


def test_get_list_shows_a_hub_repos_candidates(astra_repo: HubServer, run_cli, tmp_home: Home) -> None:
    listing = file_candidates("hf:SruNya/Astra_by_SruNya")
    [choice] = listing.choices
    assert choice.chosen.name == FAQ_CHOICE and len(choice.candidates) == 5
    result = run_cli("--home", tmp_home.root, "get", "hf:SruNya/Astra_by_SruNya", "--list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("*") and FAQ_CHOICE in line for line in lines)
    assert any("Astra-ema-only.safetensors" in line and "EMA-only training copy" in line for line in lines)
    assert astra_repo.requests_to("cdn") == []
