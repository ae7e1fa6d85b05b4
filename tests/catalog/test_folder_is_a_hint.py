"""The folder a file sits in is where the user put it, never evidence against what its tensors say."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.testing import factory


def _kinds(catalog: Catalog) -> dict[str, str]:
    return {asset.files[0].path.rsplit("/", 1)[-1]: asset.kind for asset in catalog.list_assets()}


def test_files_of_other_kinds_in_the_checkpoints_folder_keep_their_own_kind(tmp_home: Home) -> None:
    checkpoints = tmp_home.folder("checkpoint")
    checkpoints.mkdir(parents=True, exist_ok=True)
    factory.vae(checkpoints / "a-vae.safetensors")
    factory.lora(checkpoints / "a-lora.safetensors", base="sd1")
    factory.embedding(checkpoints / "an-embedding.pt")
    # Tensors no detector knows: "other", not "checkpoint".
    save_file({"stem.0.weight": torch.zeros(4, 3, 3, 3), "stage1.mixer.conv.weight": torch.zeros(4, 4, 3, 3)},
              str(checkpoints / "mystery-model.safetensors"))
    factory.sd1_checkpoint(checkpoints / "real-checkpoint.safetensors")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
        assert _kinds(catalog) == {"a-vae.safetensors": "vae", "a-lora.safetensors": "lora",
                                   "an-embedding.pt": "embedding", "mystery-model.safetensors": "other",
                                   "real-checkpoint.safetensors": "checkpoint"}
        assert catalog.list_assets(kind="checkpoint")[0].name.startswith("real-checkpoint")


def test_a_pickle_of_a_plain_list_in_the_loras_folder_is_not_a_lora(tmp_home: Home) -> None:
    loras = tmp_home.folder("lora")
    loras.mkdir(parents=True, exist_ok=True)
    torch.save([torch.zeros(3), torch.ones(2)], loras / "tensors-in-a-list.pt")
    with Catalog(tmp_home) as catalog:
        catalog.scan()
        assert _kinds(catalog) == {"tensors-in-a-list.pt": "other"}
        assert catalog.list_assets(kind="lora") == []
