"""Read all tensors of a small weights file (LoRA, embedding) without running pickle code."""

from __future__ import annotations

from pathlib import Path

import torch

from sdhub.errors import BadInputError


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a .safetensors file, or of a .pt/.ckpt/.bin through the safe reader."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path} does not exist or is not a file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                return {name: handle.get_tensor(name) for name in handle.keys()}, dict(handle.metadata() or {})
        except (SafetensorError, OSError, ValueError) as error:
            raise BadInputError(f"{path} is not a readable safetensors file: {error}") from None
    from sdhub.formats import open_model  # the safe unpickler: pickles are data here, never code

    with open_model(path) as model:
        return {name: model.load(name, keep=True) for name in model.tensors}, dict(model.metadata)
