"""What a diffusers pipeline folder holds: its JSON configs, each component's weight files, its architecture.

Shared by ``inspect`` (which reports on the folder) and generation (which loads it); nothing here
reads weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdhub.errors import BadInputError
from sdhub.models import components as comp
from sdhub.models.detect import CROSS_ATTENTION_BASE, INPUT_CHANNEL_VARIANTS, Detection, family


def read_json_object(path: Path) -> dict[str, Any]:
    """A config file's JSON object, or a one-line error naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadInputError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(value, dict):
        raise BadInputError(f"{path}: expected a JSON object")
    return value


def weight_files(folder: Path) -> list[Path]:
    """The files holding one component's weights: a sharded index, or the plain (non-variant) file."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for suffix in (".safetensors", ".bin"):
        indexes = [p for p in files if p.name.endswith(f"{suffix}.index.json") and p.name.count(".") == 3]
        if indexes:
            weight_map = read_json_object(indexes[0]).get("weight_map", {})
            shards = sorted({str(v) for v in weight_map.values()})
            resolved = [(folder / shard).resolve() for shard in shards]
            if any(folder.resolve() not in path.parents for path in resolved):
                raise BadInputError(f"{indexes[0]}: names a shard outside its folder")
            return resolved
        plain = [p for p in files if p.suffix == suffix and p.name.count(".") == 1]
        if plain:
            return plain[:1]
    variants = [p for p in files if p.suffix in (".safetensors", ".bin")]
    return variants[:1]


def _component_present(model_index: dict[str, Any], name: str) -> bool:
    entry = model_index.get(name)
    return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None


def detect_from_configs(folder: Path, model_index: dict[str, Any]) -> Detection:
    """Architecture of a pipeline folder from model_index.json and the component configs."""
    evidence = [f"diffusers pipeline {model_index.get('_class_name', '?')}"]
    unet_config_path = folder / "unet" / "config.json"
    unet = read_json_object(unet_config_path) if unet_config_path.is_file() else {}
    has_te = _component_present(model_index, comp.TEXT_ENCODER)
    has_te2 = _component_present(model_index, comp.TEXT_ENCODER_2)
    architecture: str | None
    if has_te2 and not has_te:
        architecture = "sdxl-refiner"
        evidence.append("only text_encoder_2 (SDXL refiner)")
    elif has_te2 or unet.get("addition_embed_type") == "text_time":
        architecture = "sdxl"
        evidence.append("two text encoders / size-conditioned UNet (SDXL)")
    elif unet.get("use_linear_projection"):
        architecture = "sd2"
        evidence.append("UNet uses linear attention projections (SD2)")
    elif unet:
        architecture = "sd1"
        evidence.append("UNet uses 1x1 convolution attention projections (SD1)")
    else:
        architecture = None
        evidence.append("no unet/config.json")
    width = unet.get("cross_attention_dim")
    if isinstance(width, int) and width in CROSS_ATTENTION_BASE:
        evidence.append(f"cross-attention width {width} ({CROSS_ATTENTION_BASE[width]})")
    detection = Detection("checkpoint" if unet else "unknown", architecture=architecture, evidence=evidence)
    channels = unet.get("in_channels")
    if isinstance(channels, int) and channels in INPUT_CHANNEL_VARIANTS:
        detection.variant = INPUT_CHANNEL_VARIANTS[channels][0]
        evidence.append(f"UNet input has {channels} channels: {detection.variant}")
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    if architecture == "sd2" and scheduler_path.is_file():
        if read_json_object(scheduler_path).get("prediction_type") == "v_prediction":
            detection.architecture = "sd2-v"
            evidence.append("scheduler prediction_type = v_prediction")
    detection.base_model = family(architecture)
    return detection
