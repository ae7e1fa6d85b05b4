"""Textual-inversion embeddings from files: A1111 ``.pt``, diffusers ``.bin``, ``.safetensors``.

The name used in prompts is the file stem, as in A1111. Vectors come from ``string_to_param``
(A1111 .pt), ``emb_params`` (safetensors), ``clip_l``/``clip_g`` (SDXL), or the file's only tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sdhub.errors import BadInputError
from sdhub.generate.conditioning import Embedding
from sdhub.generate.tensor_files import read_tensors

EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors")


def embedding_from_tensors(name: str, tensors: dict[str, torch.Tensor], sha256: str | None = None) -> Embedding:
    """Pick the vectors out of an embedding file's tensors the way A1111 does."""
    if "clip_g" in tensors and "clip_l" in tensors:
        return Embedding(name, {"clip_l": tensors["clip_l"], "clip_g": tensors["clip_g"]}, sha256)
    params = [key for key in tensors if key.startswith("string_to_param")]
    candidates = params or (["emb_params"] if "emb_params" in tensors else list(tensors))
    if len(candidates) != 1:
        raise BadInputError(f"embedding {name!r} holds {len(candidates)} candidate tensors; expected exactly one")
    vectors = tensors[candidates[0]].detach()
    if vectors.ndim == 1:
        vectors = vectors.unsqueeze(0)  # diffusers learned_embeds.bin: one (dim,) vector
    if vectors.ndim != 2:
        raise BadInputError(f"embedding {name!r} has vectors of shape {tuple(vectors.shape)}; expected (n, dim)")
    return Embedding(name, vectors.to(torch.float32), sha256)


def load_embedding(path: Path) -> Embedding:
    """Read one embedding file; its prompt name is the file stem and its hash the file's SHA-256."""
    from sdhub.ops.hashing import hash_file

    path = Path(path)
    tensors, _ = read_tensors(path)
    return embedding_from_tensors(path.stem, tensors, hash_file(path).sha256)


def load_embeddings(folder: Path) -> tuple[list[Embedding], list[str]]:
    """Every readable embedding under ``folder`` and a one-line reason for each file skipped."""
    embeddings, skipped = [], []
    folder = Path(folder)
    if not folder.is_dir():
        return embeddings, skipped
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in EMBEDDING_SUFFIXES or not path.is_file():
            continue
        try:
            embeddings.append(load_embedding(path))
        except Exception as error:  # one broken file must not hide the others; it is reported
            skipped.append(f"{path.name}: {error}")
    return embeddings, skipped
