"""``inspect`` for diffusers pipeline folders: each component's weights and the configs that describe them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sdhub.errors import BadInputError
from sdhub.formats import open_model
from sdhub.models import components as comp
from sdhub.models.detect import CROSS_ATTENTION_BASE, INPUT_CHANNEL_VARIANTS, Detection, family
from sdhub.ops.inspect import (
    ComponentSummary,
    InspectReport,
    ValueScan,
    dominant_dtype,
    scan_values,
    structural_problems,
    summarise_component,
)
from sdhub.progress import NULL_PROGRESS, Progress

_WEIGHT_COMPONENTS = (comp.UNET, comp.VAE, comp.TEXT_ENCODER, comp.TEXT_ENCODER_2)


def _read_json(path: Path) -> dict[str, Any]:
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
            weight_map = _read_json(indexes[0]).get("weight_map", {})
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
    unet = _read_json(unet_config_path) if unet_config_path.is_file() else {}
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
        if _read_json(scheduler_path).get("prediction_type") == "v_prediction":
            detection.architecture = "sd2-v"
            evidence.append("scheduler prediction_type = v_prediction")
    detection.base_model = family(architecture)
    return detection


def inspect_diffusers_folder(folder: Path, *, check_values: bool = True,
                             progress: Progress = NULL_PROGRESS) -> InspectReport:
    """Inspect a diffusers pipeline folder: one report over all its components."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise BadInputError(f"{folder} is a folder but not a diffusers pipeline (no model_index.json)")
    model_index = _read_json(index_path)
    detection = detect_from_configs(folder, model_index)
    summaries: list[ComponentSummary] = []
    scan = ValueScan() if check_values else None
    all_infos = []
    for name in _WEIGHT_COMPONENTS:
        for path in weight_files(folder / name):
            with open_model(path) as model:
                keys = list(model.tensors)
                all_infos.extend(model.tensors.values())
                if scan is not None:
                    scan_values(model, {name: keys}, progress, scan)
                summaries.append(summarise_component(model, name, keys, None, str(path.relative_to(folder))))
    components = _merge_shards(summaries)
    problems = list(scan.problems) if scan is not None else []  # scan_values keeps running totals
    if scan is not None:
        for summary in components:
            summary.nan_values = scan.nan_values.get(summary.name, 0)
            summary.inf_values = scan.inf_values.get(summary.name, 0)
    problems += structural_problems(detection, {s.name: [s.name] for s in components})
    return InspectReport(
        path=str(folder),
        format="diffusers",
        size=sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
        detection=detection,
        dtype=dominant_dtype(all_infos),
        tensor_count=len(all_infos),
        parameter_count=sum(info.numel for info in all_infos),
        components=components,
        ema=False,
        training_state=False,
        training_entries=[],
        metadata={"model_index": json.dumps(model_index, sort_keys=True)},
        lora=None,
        problems=problems,
        prune=None,
        values_checked=scan is not None,
    )


def _merge_shards(summaries: list[ComponentSummary]) -> list[ComponentSummary]:
    merged: dict[str, ComponentSummary] = {}
    for summary in summaries:
        if summary.name not in merged:
            merged[summary.name] = summary
            continue
        total = merged[summary.name]
        dtypes = Counter(total.dtypes) + Counter(summary.dtypes)
        merged[summary.name] = ComponentSummary(
            summary.name, total.tensors + summary.tensors, total.parameters + summary.parameters,
            total.bytes + summary.bytes, dict(sorted(dtypes.items())), total.nan_values, total.inf_values,
            f"{total.file}, {summary.file}")
    return list(merged.values())
