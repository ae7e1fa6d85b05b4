"""Textual-inversion embeddings of every family: SD1 (768), SD2 (1024), SDXL (clip_l + clip_g), SD3
(clip_l + clip_g + t5) and FLUX.1 (clip_l + t5), in .safetensors and torch .pt, with their vector count."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import sdhub
from sdhub.models.detect import detect
from sdhub.testing import lora_layouts as layouts


def _infos(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    return {name: (torch.float32, shape) for name, shape in shapes.items()}


@pytest.mark.parametrize("family, families", [
    ("sd1", None), ("sd2", None), ("sdxl", ["sdxl"]), ("sd3", ["sd3"]), ("flux1", ["flux1"]),
])
def test_real_width_embeddings_of_every_family(family: str, families: list[str] | None) -> None:
    detection = detect(_infos(layouts.embedding_shapes(family, vectors=6)), {})
    assert (detection.kind, detection.base_model, detection.embedding_vectors) == ("embedding", family, 6)
    assert detection.details.get("families") == families
    assert detection.evidence


def test_per_encoder_widths_are_named_in_the_evidence() -> None:
    detection = detect(_infos(layouts.embedding_shapes("sd3", vectors=2)), {})
    assert "clip_g with t5 (SD3's text encoders)" in detection.evidence
    assert "t5: 2 vector(s) of width 4096 (T5-XXL)" in detection.evidence
    assert "clip_l: 2 vector(s) of width 768 (CLIP-L)" in detection.evidence


@pytest.mark.parametrize("keys, families", [
    ({"t5": (3, 4096)}, ["flux1", "sd3"]),       # a T5 table alone: both FLUX.1 and SD3 encode with T5-XXL
    ({"t5xxl": (3, 4096)}, ["flux1", "sd3"]),
    ({"clip_l": (3, 768)}, ["flux1", "sd3", "sdxl"]),
    ({"clip_g": (3, 1280)}, ["sd3", "sdxl"]),
])
def test_a_single_encoder_table_lists_the_families_it_fits(keys: dict, families: list[str]) -> None:
    detection = detect(_infos(keys), {})
    assert (detection.kind, detection.base_model, detection.embedding_vectors) == ("embedding", None, 3)
    assert detection.details["families"] == families


def test_onetrainer_output_vectors_and_uneven_tables() -> None:
    with_outputs = {**layouts.embedding_shapes("sd3", 2), "clip_l_out": (2, 768), "t5_out": (2, 4096)}
    detection = detect(_infos(with_outputs), {})
    assert (detection.base_model, detection.embedding_vectors) == ("sd3", 2)
    assert any(line.startswith("with output vectors") for line in detection.evidence)
    uneven = detect(_infos({"clip_l": (2, 768), "t5": (3, 4096)}), {})
    assert (uneven.base_model, uneven.embedding_vectors) == ("flux1", 3)
    assert any(line.startswith("warning") for line in uneven.evidence)
    # Names beside the encoder keys make it something else: not an embedding.
    assert detect(_infos({"clip_l": (2, 768), "weight": (4, 4)}), {}).kind != "embedding"


FILES = {
    "sd1-a1111.pt": lambda p: layouts.write_a1111_embedding(p, "sd1", 4),
    "sd2-a1111.pt": lambda p: layouts.write_a1111_embedding(p, "sd2", 8),
    "sd1.safetensors": lambda p: layouts.write_embedding(p, "sd1", 4),
    "sdxl.safetensors": lambda p: layouts.write_embedding(p, "sdxl", 2),
    "sd3.safetensors": lambda p: layouts.write_embedding(p, "sd3", 3),
    "flux1.safetensors": lambda p: layouts.write_embedding(p, "flux1", 5),
    "flux1-onetrainer.pt": lambda p: layouts.write_embedding(p, "flux1", 5),
    "t5-only.safetensors": lambda p: layouts.write_embedding(p, "flux1", 1, keys=("t5",)),
}
EXPECTED = {"sd1-a1111.pt": ("sd1", 4), "sd2-a1111.pt": ("sd2", 8), "sd1.safetensors": ("sd1", 4),
            "sdxl.safetensors": ("sdxl", 2), "sd3.safetensors": ("sd3", 3), "flux1.safetensors": ("flux1", 5),
            "flux1-onetrainer.pt": ("flux1", 5), "t5-only.safetensors": (None, 1)}


@pytest.fixture(scope="module")
def embedding_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("embeddings")
    return {name: write(folder / name) for name, write in FILES.items()}


@pytest.mark.parametrize("name", list(FILES))
def test_embedding_files_inspect_with_family_and_vector_count(embedding_files: dict[str, Path], name: str) -> None:
    report = sdhub.inspect(embedding_files[name])
    assert (report.kind, report.base_model, report.detection.embedding_vectors) == ("embedding", *EXPECTED[name])
    assert [p.code for p in report.problems if p.severity == "error"] == []


@pytest.mark.parametrize("name", ["sd1-a1111.pt", "flux1-onetrainer.pt"])
def test_pickled_embeddings_convert_and_verify(embedding_files: dict[str, Path], tmp_path: Path, name: str) -> None:
    report = sdhub.convert(embedding_files[name], tmp_path / "out.safetensors", verify=True)
    assert (report.status, report.verified) == ("converted", True)
    converted = sdhub.inspect(report.output)
    assert (converted.kind, converted.base_model, converted.detection.embedding_vectors) == ("embedding",
                                                                                              *EXPECTED[name])


@pytest.mark.parametrize("layout", ["sdhub", "a1111", "comfyui", "stabilitymatrix"])
def test_scan_and_hash_keep_each_embedding_family(embedding_files: dict[str, Path], tmp_path: Path,
        layout: str) -> None:
    home = sdhub.init_home(tmp_path / "home", layout)
    folder = home.folder("embedding")
    for name, path in embedding_files.items():
        (folder / name).write_bytes(path.read_bytes())
    report = sdhub.scan(home)
    assert report.errors == []
    with sdhub.Catalog(home) as catalog:
        for name in FILES:
            asset = catalog.find(str(folder / name))
            assert (asset.kind, asset.base_model) == ("embedding", EXPECTED[name][0]), name
        flux = {a.name for a in catalog.list_assets(kind="embedding", base="flux1")}
        assert flux == {"flux1", "flux1-onetrainer"}
    hashes = sdhub.hash(embedding_files["sd3.safetensors"])
    assert (hashes.kind, hashes.file.sha256) == (
        "embedding", hashlib.sha256(embedding_files["sd3.safetensors"].read_bytes()).hexdigest())
