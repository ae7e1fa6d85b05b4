"""Homes filled with factory-made assets, in each layout, for the catalog tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdhub.catalog import Catalog
from sdhub.config import Home, init_home
from sdhub.testing import factory


@dataclass
class StockedHome:
    """A home and the path of each asset written into it, by a short label."""

    home: Home
    paths: dict[str, Path]

    def catalog(self) -> Catalog:
        return Catalog(self.home)


#: label -> (kind folder, file name, writer, expected kind)
ASSETS = {
    "sd1": ("checkpoint", "dreamy-sd15.safetensors", lambda p: factory.sd1_checkpoint(p, seed=1), "checkpoint"),
    "sd1-ckpt": ("checkpoint", "old-style.ckpt", lambda p: factory.sd1_checkpoint(p, fmt="ckpt", seed=2),
                 "checkpoint"),
    "sdxl": ("checkpoint", "xl-base.safetensors", lambda p: factory.sdxl_checkpoint(p, seed=3), "checkpoint"),
    "lora": ("lora", "inkstyle.safetensors", lambda p: factory.lora(p, seed=4), "lora"),
    "embedding": ("embedding", "badhands.pt", lambda p: factory.embedding(p, seed=5), "embedding"),
    "vae": ("vae", "clear-vae.safetensors", lambda p: factory.vae(p, seed=6), "vae"),
}


def stock_from_cache(root: Path, layout: str, cache: dict[str, bytes],
                     labels: tuple[str, ...] = tuple(ASSETS)) -> StockedHome:
    home = init_home(root, layout)
    paths = {}
    for label in labels:
        kind, name, _, _ = ASSETS[label]
        path = home.folder(kind) / name
        path.write_bytes(cache[label])
        paths[label] = path
    return StockedHome(home, paths)


def civitai_version(sha256: str, *, model_name: str = "Ink Style", version_id: int = 130072,
                    model_id: int = 4201, words: tuple[str, ...] = ("inkstyle", "sketch lines"),
                    base_model: str = "SD 1.5") -> dict:
    """A Civitai ``/model-versions/by-hash`` answer for a file, in the documented shape."""
    return {
        "id": version_id, "modelId": model_id, "name": "v1.0", "baseModel": base_model,
        "baseModelType": "Standard", "trainedWords": list(words),
        "description": "<p>Bold <b>ink</b> outlines.</p>",
        "air": f"urn:air:sd1:lora:civitai:{model_id}@{version_id}",
        "model": {"name": model_name, "type": "LORA", "nsfw": False, "poi": False},
        "files": [{"id": 1, "name": "inkstyle.safetensors", "sizeKB": 470.4, "type": "Model", "primary": True,
                   "metadata": {"format": "SafeTensor", "size": None, "fp": "fp32"},
                   "hashes": {"SHA256": sha256.upper(), "AutoV2": sha256[:10].upper()}}],
        "images": [{"url": "https://image.civitai.com/x/preview.jpeg", "nsfwLevel": 1, "width": 512,
                    "height": 768, "type": "image"}],
        "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
    }
