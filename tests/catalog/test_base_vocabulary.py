"""One base-model vocabulary: the family the tensors prove, and beside it the label a source gives.

A user who asks for ``--base sdxl`` gets Pony and Illustrious LoRAs too (they are SDXL fine-tunes);
``--base pony`` gets only what Civitai labels Pony; ``--base "SD 1.5"`` is ``--base sd1``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from catalog_homes import civitai_version
from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.errors import UsageError
from sdhub.models.base_labels import CIVITAI_BASE_MODELS, compact, known_label, label_family, metadata_label
from sdhub.models.kinds import FAMILIES
from sdhub.testing import factory


@pytest.mark.parametrize(("label", "family"), [
    ("SD 1.4", "sd1"), ("SD 1.5", "sd1"), ("SD 1.5 LCM", "sd1"), ("SD 1.5 Hyper", "sd1"),
    ("SD 2.0", "sd2"), ("SD 2.1 768", "sd2"), ("SD 2.1 Unclip", "sd2"),
    ("SDXL 1.0", "sdxl"), ("SDXL Lightning", "sdxl"), ("SDXL Turbo", "sdxl"), ("SDXL Hyper", "sdxl"),
    ("Pony", "sdxl"), ("Illustrious", "sdxl"), ("NoobAI", "sdxl"),
    ("SD 3", "sd3"), ("SD 3.5 Large", "sd3"), ("SD 3.5 Medium", "sd3"),
    ("Flux.1 D", "flux1"), ("Flux.1 S", "flux1"), ("Flux.1 Kontext", "flux1"),
    # Not one of sdhub's families, whatever the name suggests: AuraFlow, a pruned Flux, FLUX.2, video.
    ("Pony V7", None), ("Chroma", None), ("Flux.2 D", None), ("Wan Video 14B t2v", None), ("Other", None),
    # Written any way a user types them.
    ("pony", "sdxl"), ("sd1.5", "sd1"), ("FLUX.1 d", "flux1"), ("sdxl_1.0", "sdxl"),
    # A family or architecture name, and what training tools write into a file's metadata.
    ("sdxl", "sdxl"), ("sd2-v", "sd2"), ("flux1-schnell", "flux1"), ("sdxl_base_v1-0", "sdxl"), ("sd_v1", "sd1"),
    ("stable-diffusion-v2-768-v", "sd2"), ("stable-diffusion-3.5-large/lora", "sd3"), ("flux-1-dev/lora", "flux1"),
    # A label Civitai might add one day: no family is guessed from its first word.
    ("Flux.3 Pro", None), ("", None), (None, None),
])
def test_every_label_names_its_family(label: str | None, family: str | None) -> None:
    assert label_family(label) == family


def test_the_table_holds_every_civitai_label_once_with_a_family_sdhub_knows() -> None:
    assert len({compact(label) for label in CIVITAI_BASE_MODELS} - {"odor"}) == len(CIVITAI_BASE_MODELS) - 2
    assert set(CIVITAI_BASE_MODELS.values()) - {None} == set(FAMILIES)
    assert known_label("noob ai") == "NoobAI" and known_label("illustrious") == "Illustrious"


def test_the_metadata_label_is_the_model_spec_then_kohyas() -> None:
    assert metadata_label({"modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
                           "ss_base_model_version": "sdxl_base_v1-0"}) == "stable-diffusion-xl-v1-base/lora"
    assert metadata_label({"ss_base_model_version": "sd_v1"}) == "sd_v1"
    assert metadata_label({"ss_base_model_version": "None"}) is None and metadata_label(None) is None


#: The library: three SDXL LoRAs, an SD1 LoRA, and a tiny embedding whose vectors are too narrow to tell
#: any family; each written once by the factory (in its kind's folder), copied into every test's home.
LIBRARY = {
    "plain-xl": ("lora", lambda path: factory.lora(path, base="sdxl")),
    "pony-style": ("lora", lambda path: factory.lora(path, base="sdxl", seed=1)),
    "illustrious-eyes": ("lora", lambda path: factory.lora(path, base="sdxl", seed=2)),
    "ink-sd1": ("lora", lambda path: factory.lora(path, base="sd1")),
    "narrow-embedding": ("embedding", lambda path: factory.embedding(path, fmt="safetensors")),
}


@pytest.fixture(scope="module")
def library_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("library")
    return {name: Path(write(folder / f"{name}.safetensors")).read_bytes() for name, (_, write) in LIBRARY.items()}


@pytest.fixture
def labelled(tmp_home: Home, library_files: dict[str, bytes]) -> Catalog:
    """The library scanned, with what Civitai says about four of its files recorded."""
    for name, (kind, _) in LIBRARY.items():
        tmp_home.folder(kind).mkdir(parents=True, exist_ok=True)
        (tmp_home.folder(kind) / f"{name}.safetensors").write_bytes(library_files[name])
    catalog = Catalog(tmp_home)
    catalog.scan()
    for name, label, version in (("pony-style", "Pony", 11), ("illustrious-eyes", "Illustrious", 12),
                                 ("ink-sd1", "SD 1.5", 13), ("narrow-embedding", "SD 1.5", 14)):
        sha = catalog.find(name).sha256
        catalog.set_remote(sha, "civitai", civitai_version(sha, model_name=name, version_id=version,
                                                           base_model=label))
    yield catalog
    catalog.close()


def _names(assets) -> list[str]:
    return sorted(asset.files[0].path.rsplit("/", 1)[-1].split(".")[0] for asset in assets)


def test_a_family_lists_its_fine_tunes_and_a_label_only_what_carries_it(labelled: Catalog) -> None:
    assert _names(labelled.list_assets(base="sdxl")) == ["illustrious-eyes", "plain-xl", "pony-style"]
    assert _names(labelled.list_assets(base="SDXL", kind="lora")) == ["illustrious-eyes", "plain-xl", "pony-style"]
    assert _names(labelled.list_assets(base="pony")) == ["pony-style"]
    assert _names(labelled.list_assets(base="PONY")) == _names(labelled.list_assets(base="Pony"))
    assert _names(labelled.list_assets(base="illustrious")) == ["illustrious-eyes"]
    # A label that names a family itself means the family, however it is spelled.
    sd1 = ["ink-sd1", "narrow-embedding"]
    assert _names(labelled.list_assets(base="sd1")) == sd1
    assert _names(labelled.list_assets(base="SD 1.5")) == sd1 == _names(labelled.list_assets(base="sd1.5"))
    # A label Civitai has but nobody here carries: an empty list, not an error.
    assert labelled.list_assets(base="NoobAI") == []


def test_an_unknown_base_is_refused_with_the_choices(labelled: Catalog) -> None:
    with pytest.raises(UsageError) as error:
        labelled.list_assets(base="xl")
    message = str(error.value)
    assert "unknown base model 'xl'" in message and "sd1, sd2, sdxl, sd3, flux1" in message
    assert "Illustrious, Pony, SD 1.5" in message  # the labels this catalog holds


def test_the_family_and_the_label_are_kept_apart(labelled: Catalog) -> None:
    pony = labelled.find("pony-style")
    assert (pony.base_model, pony.base_model_from, pony.base_label, pony.base_label_from) == (
        "sdxl", "detection", "Pony", "civitai")
    assert pony.base_text == "sdxl (Pony)"
    data = pony.to_dict()
    assert (data["base_model"], data["base_label"], data["base_model_from"], data["base_label_from"]) == (
        "sdxl", "Pony", "detection", "civitai")
    # Without a Civitai record the label is the file's own metadata, kept but not shown in listings.
    plain = labelled.find("plain-xl")
    assert (plain.base_label, plain.base_label_from) == ("stable-diffusion-xl-v1-base/lora", "metadata")
    assert plain.base_text == "sdxl"


def test_a_family_the_tensors_cannot_tell_comes_from_the_label_and_says_so(labelled: Catalog) -> None:
    narrow = labelled.find("narrow-embedding")
    assert narrow.kind == "embedding"
    assert (narrow.base_model, narrow.base_model_from, narrow.base_label) == ("sd1", "label", "SD 1.5")


def test_the_tensors_win_over_a_label_that_contradicts_them(labelled: Catalog) -> None:
    sha = labelled.find("plain-xl").sha256
    labelled.set_remote(sha, "civitai", civitai_version(sha, version_id=15, base_model="SD 1.5"))
    asset = labelled.get(sha)
    assert (asset.base_model, asset.base_model_from, asset.base_label) == ("sdxl", "detection", "SD 1.5")
    assert "plain-xl" not in _names(labelled.list_assets(base="SD 1.5"))


def test_a_rescan_keeps_the_civitai_label(labelled: Catalog) -> None:
    labelled.scan(full=True)
    pony = labelled.find("pony-style")
    assert (pony.base_model, pony.base_label, pony.base_label_from) == ("sdxl", "Pony", "civitai")
    assert labelled.find("narrow-embedding").base_model == "sd1"


def test_a_derived_file_takes_its_origins_label(labelled: Catalog, tmp_home: Home) -> None:
    copy = factory.lora(tmp_home.folder("lora") / "pony-style-fp16.safetensors", base="sdxl", seed=1,
                        dtype=torch.float16)
    child = labelled.add_file(copy)
    labelled.record_lineage(child.sha256, labelled.find("pony-style").sha256, "cast")
    child = labelled.get(child.sha256)
    assert (child.base_model, child.base_label, child.base_label_from) == ("sdxl", "Pony", "civitai")
    assert "pony-style-fp16" in _names(labelled.list_assets(base="pony"))


def test_search_finds_labels_and_takes_the_same_filters(labelled: Catalog) -> None:
    assert _names(labelled.search("pony")) == ["pony-style"]
    assert _names(labelled.search("illustrious eyes")) == ["illustrious-eyes"]
    assert _names(labelled.search("style", base="sdxl")) == ["pony-style"]
    assert _names(labelled.search("style", base="sd1")) == []
    with pytest.raises(UsageError, match="unknown base model"):
        labelled.search("style", base="nonsense")


def test_kind_unknown_is_the_old_name_of_other(labelled: Catalog, tmp_home: Home) -> None:
    save_file({"stem.0.weight": torch.zeros(4, 3, 3, 3)}, str(tmp_home.folder("checkpoint") / "mystery.safetensors"))
    labelled.scan()
    assert _names(labelled.list_assets(kind="unknown")) == _names(labelled.list_assets(kind="other")) == ["mystery"]
    # The names --kind takes everywhere (get, mv): folder names and plurals, in any case.
    assert _names(labelled.list_assets(kind="LoRAs")) == _names(labelled.list_assets(kind="lora"))
    with pytest.raises(UsageError, match="unknown kind 'lorax'"):
        labelled.list_assets(kind="lorax")
