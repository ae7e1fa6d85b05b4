"""Hugging Face datasets and Spaces as sources, as the community FAQ links them (negative embeddings live
in dataset repos): by URL (file, folder, repo) and by ``hf:datasets/...``, through the real
huggingface_hub client against the imitation Hub, with the repo type kept in the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.errors import NotFoundError
from sdhub.sources.get import get
from sdhub.sources.refs import HubRef, parse_ref
from sdhub.testing import factory
from sdhub.testing.hub_server import HubServer


@pytest.mark.parametrize(("text", "expected"), [
    ("https://huggingface.co/datasets/gsdf/EasyNegative/blob/main/EasyNegative.safetensors",
     HubRef("gsdf/EasyNegative", "EasyNegative.safetensors", repo_type="dataset")),
    ("https://huggingface.co/datasets/Nerfgun3/bad_prompt/resolve/main/bad_prompt_version2.pt",
     HubRef("Nerfgun3/bad_prompt", "bad_prompt_version2.pt", repo_type="dataset")),
    ("https://huggingface.co/datasets/gsdf/EasyNegative/tree/main", HubRef("gsdf/EasyNegative", repo_type="dataset")),
    ("https://huggingface.co/datasets/gsdf/EasyNegative", HubRef("gsdf/EasyNegative", repo_type="dataset")),
    ("huggingface.co/datasets/org/pack/tree/v2/negatives/sd15",
     HubRef("org/pack", revision="v2", repo_type="dataset", folder="negatives/sd15")),
    ("hf:datasets/gsdf/EasyNegative/EasyNegative.safetensors",
     HubRef("gsdf/EasyNegative", "EasyNegative.safetensors", repo_type="dataset")),
    ("hf:datasets/gsdf/EasyNegative@abc123", HubRef("gsdf/EasyNegative", revision="abc123", repo_type="dataset")),
    ("hf:spaces/org/demo/models/x.safetensors", HubRef("org/demo", "models/x.safetensors", repo_type="space")),
    ("https://huggingface.co/org/repo/tree/main/unet", HubRef("org/repo", folder="unet")),
])
def test_datasets_spaces_and_folders_are_references(text: str, expected: HubRef) -> None:
    assert parse_ref(text) == expected


def test_the_repo_path_spells_the_type_as_the_hub_does() -> None:
    assert HubRef("gsdf/EasyNegative", repo_type="dataset").repo_path == "datasets/gsdf/EasyNegative"
    assert HubRef("org/demo", repo_type="space").repo_path == "spaces/org/demo"
    assert HubRef("org/model").repo_path == "org/model"


@pytest.fixture
def negatives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("negatives")
    return {"EasyNegative.safetensors": factory.embedding(folder / "a.safetensors", fmt="safetensors", vectors=8).read_bytes(),
            "bad_prompt_version2.pt": factory.embedding(folder / "b.pt", fmt="pt", vectors=4, seed=2).read_bytes()}


def test_an_embedding_from_a_dataset_repo_lands_in_embeddings_with_its_page(
        hub: HubServer, tmp_home: Home, negatives: dict[str, bytes]) -> None:
    # A model repo of the same name holds other bytes: the dataset's must be the ones fetched.
    hub.add_repo("gsdf/EasyNegative", {"EasyNegative.safetensors": b"not this one"})
    repo = hub.add_repo("datasets/gsdf/EasyNegative", {"EasyNegative.safetensors": negatives["EasyNegative.safetensors"],
                                                       "README.md": b"# EasyNegative"})
    result = get(tmp_home, "https://huggingface.co/datasets/gsdf/EasyNegative/blob/main/EasyNegative.safetensors")
    assert result.kind == "embedding" and result.path == tmp_home.folder("embedding") / "EasyNegative.safetensors"
    assert result.path.read_bytes() == negatives["EasyNegative.safetensors"]
    assert any(r.path.startswith("/datasets/gsdf/EasyNegative/resolve/") for r in hub.log)
    with Catalog(tmp_home) as catalog:
        remote = catalog.show(result.sha256).to_dict()["remote"][0]
    assert remote["repo"] == "datasets/gsdf/EasyNegative"
    assert remote["url"] == f"{hub.url}/datasets/gsdf/EasyNegative/blob/{repo.commit}/EasyNegative.safetensors"


def test_hf_datasets_form_fetches_a_pickled_embedding(hub: HubServer, tmp_home: Home,
                                                      negatives: dict[str, bytes]) -> None:
    hub.add_repo("datasets/Nerfgun3/bad_prompt", {"bad_prompt_version2.pt": negatives["bad_prompt_version2.pt"]})
    result = get(tmp_home, "hf:datasets/Nerfgun3/bad_prompt/bad_prompt_version2.pt")
    assert result.kind == "embedding" and result.path.parent == tmp_home.folder("embedding")
    assert result.remote["repo"] == "datasets/Nerfgun3/bad_prompt" and result.remote["repo_type"] == "dataset"


def test_a_folder_url_fetches_only_that_folder(hub: HubServer, tmp_home: Home, negatives: dict[str, bytes]) -> None:
    hub.add_repo("datasets/org/pack", {"negatives/sd15/EasyNegative.safetensors": negatives["EasyNegative.safetensors"],
                                       "other/big.safetensors": b"x" * 4096, "README.md": b"# pack"})
    result = get(tmp_home, "https://huggingface.co/datasets/org/pack/tree/main/negatives/sd15", kind="embedding")
    fetched = sorted(str(p.relative_to(result.path)) for p in result.path.rglob("*") if p.is_file())
    assert fetched == ["negatives/sd15/EasyNegative.safetensors"]
    assert not any("other/big" in r.path for r in hub.log)
    assert result.remote["url"].endswith("/tree/" + result.remote["revision"] + "/negatives/sd15")


def test_a_missing_dataset_says_so_with_its_type(hub: HubServer, tmp_home: Home) -> None:
    with pytest.raises(NotFoundError, match="datasets/gsdf/missing does not exist"):
        get(tmp_home, "hf:datasets/gsdf/missing/x.safetensors")


def test_the_dataset_file_is_cached_where_huggingface_hub_keeps_datasets(
        hub: HubServer, tmp_home: Home, negatives: dict[str, bytes]) -> None:
    from sdhub.sources import huggingface as hub_source

    hub.add_repo("datasets/gsdf/EasyNegative", {"EasyNegative.safetensors": negatives["EasyNegative.safetensors"]})
    get(tmp_home, "hf:datasets/gsdf/EasyNegative/EasyNegative.safetensors")
    assert (Path(hub_source.hub_cache_dir()) / "datasets--gsdf--EasyNegative").is_dir()
