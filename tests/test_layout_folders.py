"""Every kind has its folders in every layout, as each project names them; scan walks all of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sdhub.catalog import Catalog
from sdhub.config import ASSET_KINDS, LAYOUTS, init_home, open_home
from sdhub.models.kinds import KINDS, OTHER

#: Where new files of each kind go in a fresh home of each layout (the first folder each project names).
EXPECTED = {
    "sdhub": {
        "checkpoint": "models", "diffusion-model": "models/diffusion-models", "lora": "loras",
        "embedding": "embeddings", "vae": "models/vae", "text-encoder": "models/text-encoders",
        "controlnet": "models/controlnet", "ip-adapter": "models/ip-adapters", "clip-vision": "models/clip-vision",
        "upscaler": "models/upscalers", "preview-decoder": "models/preview-decoders",
        "hypernetwork": "models/hypernetworks", "wildcards": "wildcards",
    },
    "a1111": {
        "checkpoint": "models/Stable-diffusion", "diffusion-model": "models/Stable-diffusion", "lora": "models/Lora",
        "embedding": "embeddings", "vae": "models/VAE", "text-encoder": "models/text_encoder",
        "controlnet": "models/ControlNet", "ip-adapter": "models/ControlNet",
        "clip-vision": "models/ControlNetPreprocessor", "upscaler": "models/ESRGAN",
        "preview-decoder": "models/VAE-approx", "hypernetwork": "models/hypernetworks",
        "wildcards": "extensions/sd-dynamic-prompts/wildcards",
    },
    "comfyui": {
        "checkpoint": "models/checkpoints", "diffusion-model": "models/diffusion_models", "lora": "models/loras",
        "embedding": "models/embeddings", "vae": "models/vae", "text-encoder": "models/text_encoders",
        "controlnet": "models/controlnet", "ip-adapter": "models/ipadapter", "clip-vision": "models/clip_vision",
        "upscaler": "models/upscale_models", "preview-decoder": "models/vae_approx",
        "hypernetwork": "models/hypernetworks", "wildcards": "wildcards",
    },
    "stabilitymatrix": {
        "checkpoint": "Models/StableDiffusion", "diffusion-model": "Models/DiffusionModels", "lora": "Models/Lora",
        "embedding": "Models/Embeddings", "vae": "Models/VAE", "text-encoder": "Models/TextEncoders",
        "controlnet": "Models/ControlNet", "ip-adapter": "Models/IpAdapter", "clip-vision": "Models/ClipVision",
        "upscaler": "Models/ESRGAN", "preview-decoder": "Models/ApproxVAE", "hypernetwork": "Models/Hypernetwork",
        "wildcards": "Models/Wildcards",
    },
}


def _unknown_model(path: Path, seed: float) -> Path:
    """A small safetensors file whose tensors no detector knows: the folder must not decide its kind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"mystery.weight": torch.full((2, 2), seed)}, str(path))
    return path


def test_the_kinds_with_folders_are_the_vocabulary() -> None:
    assert ASSET_KINDS == tuple(kind for kind in KINDS if kind != OTHER)
    for layout in LAYOUTS.values():
        assert tuple(layout.folders) == ASSET_KINDS, layout.name
        assert all(layout.folders[kind] for kind in ASSET_KINDS), layout.name


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_home_json_shows_a_folder_for_every_kind(tmp_path: Path, run_cli, layout: str) -> None:
    root = tmp_path / layout
    assert run_cli("init", root, "--create", "--layout", layout).exit_code == 0
    result = run_cli("--home", root, "home", "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["folders"] == {kind: str(root / folder) for kind, folder in EXPECTED[layout].items()}
    assert shown["downloads"] == str(root / "downloads")
    # init made them all, so the tools find (and sdhub doctor sees) every folder.
    assert all(Path(folder).is_dir() for folder in shown["folders"].values())
    assert shown["candidate_folders"]["upscaler"][0] == shown["folders"]["upscaler"]


@pytest.mark.parametrize(("layout", "existing", "kind", "expected"), [
    ("a1111", "extensions/sd-webui-controlnet/models", "controlnet", "extensions/sd-webui-controlnet/models"),
    ("a1111", "models/CLIP", "text-encoder", "models/CLIP"),
    ("comfyui", "models/unet", "diffusion-model", "models/unet"),
    ("comfyui", "models/clip", "text-encoder", "models/clip"),
    ("stabilitymatrix", "Models/TextualInversion", "embedding", "Models/TextualInversion"),
    ("stabilitymatrix", "Models/CLIP", "text-encoder", "Models/CLIP"),
    # ComfyUI-Impact-Pack ships its wildcards folder; comfyui-dynamicprompts makes its own (no <ComfyUI>/wildcards)
    ("comfyui", "custom_nodes/ComfyUI-Impact-Pack/wildcards", "wildcards", "custom_nodes/ComfyUI-Impact-Pack/wildcards"),
    ("comfyui", "custom_nodes/comfyui-dynamicprompts/wildcards", "wildcards",
     "custom_nodes/comfyui-dynamicprompts/wildcards"),
])
def test_a_folder_the_install_already_has_wins(tmp_path: Path, layout: str, existing: str, kind: str,
                                               expected: str) -> None:
    root = tmp_path / "install"
    (root / existing).mkdir(parents=True)
    assert init_home(root, layout).folder(kind) == root / expected


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_scan_walks_every_kind_folder_and_the_folder_never_decides_the_kind(tmp_path: Path, layout: str) -> None:
    home = init_home(tmp_path / layout, layout)
    placed = {}
    for number, kind in enumerate(ASSET_KINDS):
        # Every candidate folder of the kind, the second ones (LyCORIS, RealESRGAN, T2IAdapter...) too.
        for candidate in LAYOUTS[layout].folders[kind]:
            path = home.root / candidate / f"{kind}-{candidate.replace('/', '_')}.safetensors"
            placed[str(path)] = _unknown_model(path, float(number))
    with Catalog(open_home(home.root)) as catalog:
        report = catalog.scan()
        rows = catalog.db.execute("SELECT f.path, a.kind FROM files f JOIN assets a ON a.id = f.asset_id").fetchall()
    found = dict(rows)
    assert set(found) == set(placed), report.errors
    assert set(found.values()) == {OTHER}


@pytest.mark.parametrize(("layout", "variant", "expected"), [
    ("a1111", "DAT", "models/DAT"), ("a1111", "HAT", "models/HAT"), ("a1111", "SwinIR", "models/SwinIR"),
    ("a1111", "ESRGAN", "models/ESRGAN"), ("a1111", "SPAN", "models/ESRGAN"), ("a1111", None, "models/ESRGAN"),
    ("stabilitymatrix", "SwinIR", "Models/SwinIR"), ("comfyui", "DAT", "models/upscale_models"),
])
def test_an_upscaler_goes_to_the_folder_of_its_architecture(tmp_path: Path, layout: str, variant: str | None,
                                                            expected: str) -> None:
    # A1111 and Forge load DAT, HAT and SwinIR models only from their own folders (spandrel's
    # architecture name must match the folder's upscaler); ComfyUI has one folder for all.
    home = init_home(tmp_path / layout, layout)
    assert home.folder_for("upscaler", variant) == home.root / expected


@pytest.mark.parametrize(("layout", "variant", "expected"), [
    ("comfyui", "redux", "models/style_models"), ("comfyui", "plus", "models/ipadapter"),
    ("comfyui", None, "models/ipadapter"), ("sdhub", "redux", "models/ip-adapters"),
])
def test_flux_redux_goes_where_comfyui_loads_style_models(tmp_path: Path, layout: str, variant: str | None,
                                                          expected: str) -> None:
    home = init_home(tmp_path / layout, layout)
    assert home.folder_for("ip-adapter", variant) == home.root / expected
