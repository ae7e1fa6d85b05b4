"""Previews honour the user's NSFW setting at get and sync time, in both of Civitai's encodings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer, civitai_model, preview_jpeg

MODEL_ID, VERSION_ID, FILE_ID = 7001, 7002, 7003
#: Today's answers: ``nsfwLevel`` bits (XXX, R, PG13, PG); the PG13 image is the first safe one.
MODERN = [{"nsfwLevel": 16}, {"nsfwLevel": 4}, {"nsfwLevel": 2}, {"nsfwLevel": 1}]
#: 2023 answers: ``nsfw`` as a word or a bool; "Soft" (PG13) is the first safe one.
LEGACY = [{"nsfw": "X"}, {"nsfw": True}, {"nsfw": "Mature"}, {"nsfw": "Soft"}, {"nsfw": "None"}]


@pytest.fixture
def civitai(monkeypatch: pytest.MonkeyPatch) -> Iterator[CivitaiServer]:
    with CivitaiServer() as server:
        monkeypatch.setenv("SDHUB_CIVITAI_URL", server.url)
        monkeypatch.setenv("SDHUB_HTTP_MAX_WAIT", "0.05")
        yield server


@pytest.fixture
def lora(tmp_path: Path) -> Path:
    return factory.lora(tmp_path / "made" / "ink.safetensors")


def _serve(civitai: CivitaiServer, lora: Path, ratings: list[dict[str, Any]]) -> None:
    model = civitai_model(MODEL_ID, VERSION_ID, FILE_ID, name="Ink", file_name="ink.safetensors",
                          images=len(ratings))
    images = model["modelVersions"][0]["images"]
    for image, rating in zip(images, ratings):
        image.pop("nsfwLevel")
        image.update(rating)
    civitai.add_model(model, {FILE_ID: lora})


def _colour(path: Path) -> tuple[int, int, int]:
    with Image.open(path) as image:
        return image.convert("RGB").resize((1, 1)).getpixel((0, 0))


def _index_of(preview: Path, count: int) -> int:
    """Which served image (its index) a saved preview is: the imitation gives each its own colour."""
    colours = {index: _colour_of_served(index) for index in range(count)}
    seen = _colour(preview)
    return min(colours, key=lambda i: sum(abs(a - b) for a, b in zip(colours[i], seen)))


def _colour_of_served(index: int) -> tuple[int, int, int]:
    import io

    with Image.open(io.BytesIO(preview_jpeg(VERSION_ID + index))) as image:
        return image.convert("RGB").resize((1, 1)).getpixel((0, 0))


@pytest.mark.parametrize(("ratings", "safe_index"), [(MODERN, 2), (LEGACY, 3)], ids=["nsfwLevel", "nsfw-2023"])
def test_get_saves_the_first_safe_preview(civitai, lora, tmp_home: Home, run_cli, ratings, safe_index) -> None:
    _serve(civitai, lora, ratings)
    result = run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL_ID}@{VERSION_ID}", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["results"][0]
    sidecar = Path(data["path"]).with_name("ink.preview.png")
    assert _index_of(sidecar, len(ratings)) == safe_index
    fetched = [r.path for r in civitai.requests_to("storage") if r.path.startswith("/images/")]
    assert fetched == [f"/images/{VERSION_ID}/{safe_index}.jpeg"]  # nothing above the limit is downloaded
    with Catalog(tmp_home) as catalog:
        saved = [p for p in catalog.show(data["sha256"]).previews if p["path"]]
    assert saved[0]["nsfw_level"] == 2


def test_a_higher_setting_lets_an_r_preview_through(civitai, lora, tmp_home: Home, run_cli) -> None:
    _serve(civitai, lora, MODERN)
    assert run_cli("settings", "preview_nsfw", "R").exit_code == 0
    assert json.loads(run_cli("settings", "--json").stdout)["preview_nsfw"] == "R"
    result = run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL_ID}@{VERSION_ID}", "--json")
    path = Path(json.loads(result.stdout)["results"][0]["path"])
    assert _index_of(path.with_name("ink.preview.png"), len(MODERN)) == 1


def test_no_safe_image_means_no_preview_and_a_warning(civitai, lora, tmp_home: Home, run_cli) -> None:
    _serve(civitai, lora, [{"nsfwLevel": 8}, {"nsfw": "Mature"}, {}])  # the last says nothing: not shown
    result = run_cli("--home", tmp_home.root, "get", f"urn:air:sd1:lora:civitai:{MODEL_ID}@{VERSION_ID}")
    assert result.exit_code == 0, result.stderr
    assert "every image is above the NSFW level shown (PG13)" in result.stderr
    assert not list(tmp_home.folder("lora").glob("ink.preview.*"))


def test_a_bad_setting_is_refused_in_one_line(run_cli) -> None:
    result = run_cli("settings", "preview_nsfw", "spicy")
    assert result.exit_code == 2 and "unknown NSFW level 'spicy'" in result.stderr


@pytest.mark.parametrize(("ratings", "safe_index"), [(MODERN, 2), (LEGACY, 3)], ids=["nsfwLevel", "nsfw-2023"])
def test_sync_saves_the_first_safe_preview(civitai, lora, tmp_home: Home, run_cli, ratings, safe_index) -> None:
    _serve(civitai, lora, ratings)
    folder = tmp_home.folder("lora")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mine.safetensors").write_bytes(lora.read_bytes())
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    result = run_cli("--home", tmp_home.root, "civitai", "sync", "--json")
    assert result.exit_code == 0, result.stderr
    assert _index_of(folder / "mine.preview.png", len(ratings)) == safe_index
