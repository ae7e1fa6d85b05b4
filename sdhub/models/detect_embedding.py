"""Textual-inversion embeddings: how many vectors, and which text encoder they fit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdhub.models.detection import Detection, TEXT_WIDTH_BASE, shape_of as _shape

def detect_embedding(tensors: Mapping[str, Any]) -> Detection | None:
    names = set(tensors)
    if {"clip_l", "clip_g"} <= names:
        vectors = _shape(tensors["clip_g"])[0]
        return Detection("embedding", base_model="sdxl", embedding_vectors=vectors,
                         evidence=["clip_l and clip_g vectors (SDXL embedding)"])
    params = [n for n in names if n.startswith("string_to_param.")]
    if len(params) == 1:
        return _embedding_from_vectors(tensors[params[0]], "A1111 string_to_param")
    if names == {"emb_params"}:
        return _embedding_from_vectors(tensors["emb_params"], "emb_params tensor")
    if len(names) == 1:
        (name,) = names
        shape = _shape(tensors[name])
        if 1 <= len(shape) <= 2 and shape[-1] in TEXT_WIDTH_BASE:
            return _embedding_from_vectors(tensors[name], f"single learned vector {name!r} (diffusers learned_embeds)")
    return None


def _embedding_from_vectors(info: Any, source: str) -> Detection:
    shape = _shape(info)
    width = shape[-1]
    vectors = shape[0] if len(shape) == 2 else 1
    base = TEXT_WIDTH_BASE.get(width)
    evidence = [f"{source}: {vectors} vector(s) of width {width}"]
    evidence.append(f"width {width} fits {base}" if base else f"width {width} matches no known text encoder")
    return Detection("embedding", base_model=base, embedding_vectors=vectors, evidence=evidence)
