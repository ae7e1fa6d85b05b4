"""Text encoders alone: CLIP text towers (transformers or OpenCLIP names) and T5 encoders.

Which encoder it is comes from the structure (a CLIP text tower, a T5 with gated feed-forward) and then its
real width and depth: CLIP-L (768 wide, 12 layers) serves SD1, SDXL, SD3 and FLUX.1; OpenCLIP ViT-H (1024,
24) serves SD2; CLIP-G / bigG (1280, 32) serves SDXL and SD3; T5 v1.1 XXL (4096, 24 blocks) serves SD3 and
FLUX.1. An encoder serves several families, so ``base_model`` stays empty and ``details["families"]`` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdhub.models.detection import Detection, count_indices, dimension, shape_of as _shape

#: (hidden width, layers) -> (encoder, families it serves)
CLIP_TEXT_ENCODERS = {
    (768, 12): ("clip-l", ("sd1", "sdxl", "sd3", "flux1")),
    (1024, 24): ("openclip-h", ("sd2",)),
    (1024, 23): ("openclip-h", ("sd2",)),  # diffusers' SD2 text_encoder/ drops the last layer, which SD2 never uses
    (1280, 32): ("clip-g", ("sdxl", "sd3")),
}
T5_ENCODERS = {(4096, 24): ("t5-xxl", ("sd3", "flux1"))}
_CLIP_LAYOUTS = (
    # (layout, token embedding, layer pattern)
    ("transformers", "text_model.embeddings.token_embedding.weight", r"text_model\.encoder\.layers\.(\d+)\."),
    ("transformers", "embeddings.token_embedding.weight", r"encoder\.layers\.(\d+)\."),
    ("open_clip", "token_embedding.weight", r"transformer\.resblocks\.(\d+)\."),
)
# ComfyUI's scaled fp8 files add a scale per weight and a marker tensor.
_SCALED_FP8_MARKER = "scaled_fp8"


def detect_text_encoder(tensors: Mapping[str, Any]) -> Detection | None:
    """A text-encoder verdict, or None. A whole CLIP model (with its vision tower) is not one."""
    names = set(tensors)
    if any(n.startswith(("vision_model.", "visual.")) for n in names):
        return None
    return _t5(tensors, names) or _clip(tensors, names)


def _clip(tensors: Mapping[str, Any], names: set[str]) -> Detection | None:
    for layout, embedding, pattern in _CLIP_LAYOUTS:
        layers = count_indices(names, pattern)
        if embedding not in names or not layers or len(_shape(tensors[embedding])) != 2:
            continue
        vocabulary, width = _shape(tensors[embedding])
        evidence = [f"CLIP text tower ({layout} names): {layers} layers, width {width}, {vocabulary} tokens"]
        projection = next((_shape(tensors[k]) for k in ("text_projection.weight", "text_projection") if k in names),
                          None)
        if projection is not None and len(projection) == 2:
            evidence.append(f"text projection {projection[0]}x{projection[1]} (pooled output for SDXL/SD3)")
        return _verdict(evidence, CLIP_TEXT_ENCODERS.get((width, layers)), width, layers, layout, "CLIP", names)
    return None


def _t5(tensors: Mapping[str, Any], names: set[str]) -> Detection | None:
    query = "encoder.block.0.layer.0.SelfAttention.q.weight"
    if query not in names:
        return None
    width = dimension(tensors[query], 1)
    if width is None:
        return None
    blocks = count_indices(names, r"encoder\.block\.(\d+)\.")
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in names
    evidence = [f"T5 encoder (encoder.block.N.layer.0.SelfAttention): {blocks} blocks, width {width}"]
    evidence.append("gated-GELU feed-forward (wi_0/wi_1): T5 v1.1" if gated else "plain ReLU feed-forward: T5 v1.0")
    if any(n.startswith("decoder.block.") for n in names):
        evidence.append("also holds T5's decoder, which diffusion models do not use")
    if "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in names:
        # UMT5 (Wan's encoder) keeps position buckets in every block; T5 only in the first.
        evidence.append("relative position buckets in every block: UMT5, not the T5 of SD3/FLUX.1")
        return _verdict(evidence, None, width, blocks, "transformers", "T5", names)
    known = T5_ENCODERS.get((width, blocks)) if gated else None
    return _verdict(evidence, known, width, blocks, "transformers", "T5", names)


def _verdict(evidence: list[str], known: tuple[str, tuple[str, ...]] | None, width: int, layers: int, layout: str,
             what: str, names: set[str]) -> Detection:
    details: dict[str, Any] = {"hidden_size": width, "layers": layers, "layout": layout}
    encoder = None
    if known is not None:
        encoder, families = known
        details.update(encoder=encoder, families=list(families))
        evidence.append(f"width {width} with {layers} layers: {encoder.upper()}, the text encoder of "
                        + ", ".join(families))
    else:
        evidence.append(f"a {what} text encoder of a size no SD family uses (width {width}, {layers} layers)")
    if _SCALED_FP8_MARKER in names:
        evidence.append("ComfyUI scaled fp8 (a scale_weight per tensor)")
    return Detection("text-encoder", variant=encoder, evidence=evidence, details=details)
