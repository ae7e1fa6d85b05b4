"""Textual-inversion embeddings: how many vectors, and which text encoder(s) they fit.

SD1 and SD2 embeddings hold one table of vectors (A1111's ``string_to_param``, saved as ``emb_params``,
or diffusers' ``learned_embeds`` keyed by the token). Families with several text encoders keep one
table per encoder, keyed by the encoder (OneTrainer, kohya, A1111 for SDXL): SDXL ``clip_l`` +
``clip_g``; SD3 ``clip_l`` + ``clip_g`` + ``t5``; FLUX.1 ``clip_l`` + ``t5`` (OneTrainer may add
``*_out`` output vectors). The encoders present decide the family; their widths confirm it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdhub.models.detection import Detection, TEXT_WIDTH_BASE, shape_of as _shape

#: Per-encoder keys and each encoder's real width.
ENCODER_KEYS = {"clip_l": ("CLIP-L", 768), "clip_g": ("CLIP-G", 1280), "t5": ("T5-XXL", 4096),
                "t5xxl": ("T5-XXL", 4096)}
_OUTPUT_SUFFIX = "_out"


def detect_embedding(tensors: Mapping[str, Any]) -> Detection | None:
    """The verdict on an embedding file, or None when its tensors are not one."""
    names = set(tensors)
    if names and all(n.removesuffix(_OUTPUT_SUFFIX) in ENCODER_KEYS for n in names):
        return _per_encoder_embedding(tensors)
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


def _per_encoder_embedding(tensors: Mapping[str, Any]) -> Detection | None:
    """An embedding with one table per text encoder (clip_l / clip_g / t5)."""
    shapes = {name: _shape(tensors[name]) for name in tensors if not name.endswith(_OUTPUT_SUFFIX)}
    if not shapes or any(len(shape) not in (1, 2) for shape in shapes.values()):
        return None
    encoders = {ENCODER_KEYS[name][0] for name in shapes}
    evidence = []
    for name, shape in shapes.items():
        encoder, width = ENCODER_KEYS[name]
        vectors = shape[0] if len(shape) == 2 else 1
        fits = "" if shape[-1] == width else f"; not {encoder}'s real width {width}"
        evidence.append(f"{name}: {vectors} vector(s) of width {shape[-1]} ({encoder}{fits})")
    if encoders == {"CLIP-L", "CLIP-G"}:
        families, why = ["sdxl"], "clip_l + clip_g (SDXL embedding)"
    elif encoders == {"CLIP-L", "CLIP-G", "T5-XXL"} or encoders == {"CLIP-G", "T5-XXL"}:
        families, why = ["sd3"], "clip_g with t5 (SD3's text encoders)"
    elif encoders == {"CLIP-L", "T5-XXL"}:
        families, why = ["flux1"], "clip_l + t5 without clip_g (FLUX.1's text encoders)"
    elif encoders == {"T5-XXL"}:
        families, why = ["flux1", "sd3"], "t5 alone: fits FLUX.1 or SD3 (both encode with T5-XXL)"
    elif encoders == {"CLIP-L"}:
        families, why = ["flux1", "sd3", "sdxl"], "clip_l alone: fits SDXL, SD3 or FLUX.1 (each has a CLIP-L)"
    else:
        families, why = ["sd3", "sdxl"], "clip_g alone: fits SDXL or SD3"
    base = families[0] if len(families) == 1 else None
    evidence.insert(0, why)
    if any(name.endswith(_OUTPUT_SUFFIX) for name in tensors):
        evidence.append("with output vectors (" + ", ".join(sorted(n for n in tensors if n.endswith(_OUTPUT_SUFFIX)))
                        + ")")
    counts = {shape[0] if len(shape) == 2 else 1 for shape in shapes.values()}
    if len(counts) > 1:
        evidence.append(f"warning: the encoders' tables hold different numbers of vectors ({sorted(counts)})")
    return Detection("embedding", base_model=base, embedding_vectors=max(counts), evidence=evidence,
                     details={"families": families})


def _embedding_from_vectors(info: Any, source: str) -> Detection:
    shape = _shape(info)
    width = shape[-1]
    vectors = shape[0] if len(shape) == 2 else 1
    base = TEXT_WIDTH_BASE.get(width)
    evidence = [f"{source}: {vectors} vector(s) of width {width}"]
    evidence.append(f"width {width} fits {base}" if base else f"width {width} matches no known text encoder")
    return Detection("embedding", base_model=base, embedding_vectors=vectors, evidence=evidence)
