"""Generation metadata in images from A1111, ComfyUI and NovelAI, read into one normalised shape.

A1111 stores its infotext in the PNG ``parameters`` chunk (JPEG/WebP: EXIF UserComment);
ComfyUI stores its graphs as JSON in ``prompt`` (API format) and ``workflow`` (UI format);
NovelAI sets ``Software: NovelAI``, the prompt in ``Description`` and the settings as JSON in
``Comment``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdhub.errors import BadInputError
from sdhub.generate.infotext import PNG_KEY, Infotext

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_SAMPLER_INPUTS = ("KSampler", "KSamplerAdvanced")


@dataclass
class ImageMetadata:
    """What made an image: ``source`` is a1111, comfyui, novelai or none; ``raw`` has every text chunk."""

    path: str
    source: str
    prompt: str | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    sampler: str | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    model_hash: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    infotext: str | None = None
    raw: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_image_metadata(path: Path) -> ImageMetadata:
    """Read the generation metadata of an image file (PNG, JPEG, WebP)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path} does not exist or is not a file")
    try:
        with Image.open(path) as image:
            image.load()
            info = {key: value for key, value in image.info.items() if isinstance(value, str)}
            comment = _exif_user_comment(image)
            size = image.size
    except (UnidentifiedImageError, OSError, ValueError) as error:
        # Pillow refuses a text chunk that inflates past its limit with ValueError
        raise BadInputError(f"{path} is not a readable image: {error}") from None
    if comment and PNG_KEY not in info:
        info[PNG_KEY] = comment
    metadata = ImageMetadata(str(path), "none", width=size[0], height=size[1], raw=info)
    if info.get("Software") == "NovelAI" or "Comment" in info and "Description" in info:
        _read_novelai(metadata, info)
    elif PNG_KEY in info and _json_object(info[PNG_KEY]) is None:
        # a JSON object here is another tool's (Fooocus, SwarmUI); a prompt may itself start with "{"
        _read_a1111(metadata, info[PNG_KEY])
    elif "prompt" in info or "workflow" in info:
        _read_comfyui(metadata, info)
    return metadata


def _exif_user_comment(image: Any) -> str | None:
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # malformed EXIF is common and never fatal for reading a prompt
        return None
    if isinstance(raw, str):
        return raw or None
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix.startswith(b"UNICODE"):
        # A1111 (piexif) writes UTF-16 big-endian; some tools write little-endian.
        big, little = body.decode("utf-16-be", "replace"), body.decode("utf-16-le", "replace")
        return big if sum(c.isascii() for c in big) >= sum(c.isascii() for c in little) else little
    return body.decode("utf-8", "replace").rstrip("\x00") or None


def _to_int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: "inf"
        return None


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _read_a1111(metadata: ImageMetadata, text: str) -> None:
    parsed = Infotext.from_text(text)
    fields = parsed.generation_fields()
    metadata.source = "a1111"
    metadata.infotext = text
    metadata.prompt, metadata.negative_prompt = parsed.prompt, parsed.negative_prompt
    metadata.parameters = dict(parsed.params)
    metadata.steps = _to_int(fields.get("Steps"))
    metadata.sampler = fields.get("Sampler")
    metadata.cfg_scale = _to_float(fields.get("CFG scale"))
    metadata.seed = _to_int(fields.get("Seed"))
    metadata.width = _to_int(fields.get("Size-1")) or metadata.width
    metadata.height = _to_int(fields.get("Size-2")) or metadata.height
    metadata.model = fields.get("Model")
    metadata.model_hash = fields.get("Model hash")


def _read_novelai(metadata: ImageMetadata, info: dict[str, str]) -> None:
    metadata.source = "novelai"
    settings = _json_object(info.get("Comment")) or {}
    metadata.parameters = settings
    metadata.prompt = info.get("Description", settings.get("prompt"))
    metadata.negative_prompt = settings.get("uc")
    metadata.steps = _to_int(settings.get("steps"))
    metadata.sampler = settings.get("sampler")
    metadata.cfg_scale = _to_float(settings.get("scale"))
    metadata.seed = _to_int(settings.get("seed"))
    metadata.width = _to_int(settings.get("width")) or metadata.width
    metadata.height = _to_int(settings.get("height")) or metadata.height
    metadata.model = info.get("Source")


def _read_comfyui(metadata: ImageMetadata, info: dict[str, str]) -> None:
    metadata.source = "comfyui"
    graph = _json_object(info.get("prompt"))
    workflow = _json_object(info.get("workflow"))
    metadata.parameters = {"prompt": graph, "workflow": workflow}
    nodes = {key: node for key, node in (graph or {}).items() if isinstance(node, dict)}
    sampler = next((node for node in nodes.values() if node.get("class_type") in _SAMPLER_INPUTS), None)
    if sampler is None:
        return
    inputs = _inputs(sampler)
    metadata.seed = _to_int(inputs.get("seed", inputs.get("noise_seed")))
    metadata.steps = _to_int(inputs.get("steps"))
    metadata.cfg_scale = _to_float(inputs.get("cfg"))
    metadata.sampler = inputs.get("sampler_name")
    metadata.prompt = _linked_text(nodes, inputs.get("positive"))
    metadata.negative_prompt = _linked_text(nodes, inputs.get("negative"))
    model = _follow(nodes, inputs.get("model"))
    for _ in range(len(nodes)):  # through LoRA loaders and patches; a graph may loop
        if model is None or "ckpt_name" in _inputs(model) or "model" not in _inputs(model):
            break
        model = _follow(nodes, _inputs(model)["model"])
    if model is not None:
        metadata.model = _inputs(model).get("ckpt_name")
    latent = _follow(nodes, inputs.get("latent_image"))
    if latent is not None:
        metadata.width = _to_int(_inputs(latent).get("width")) or metadata.width
        metadata.height = _to_int(_inputs(latent).get("height")) or metadata.height


def _json_object(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the interpreter's stack
        return None
    return value if isinstance(value, dict) else None


def _inputs(node: dict) -> dict:
    """A ComfyUI node's inputs (an empty dict where a file gives something else)."""
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _follow(nodes: dict[str, dict], link: Any) -> dict | None:
    """A ComfyUI input ``[node_id, output_index]`` -> the node it points to."""
    if isinstance(link, list) and link and isinstance(link[0], (str, int)):
        return nodes.get(str(link[0]))
    return None


def _linked_text(nodes: dict[str, dict], link: Any, depth: int = 0) -> str | None:
    node = _follow(nodes, link)
    if node is None or depth > 8:
        return None
    inputs = _inputs(node)
    for key in ("text", "text_g", "prompt"):
        value = inputs.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return _linked_text(nodes, value, depth + 1)
    for key in ("conditioning", "conditioning_1", "positive"):
        if key in inputs:
            return _linked_text(nodes, inputs[key], depth + 1)
    return None
