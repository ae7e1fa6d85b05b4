"""``inspect`` for diffusers pipeline folders: each component's weights and the configs that describe them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sdhub.errors import BadInputError
from sdhub.formats import open_model
from sdhub.models.pipeline_folder import (
    WEIGHT_FOLDERS, component_of_folder, detect_from_configs, read_json_object, weight_files)
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

def inspect_diffusers_folder(folder: Path, *, check_values: bool = True,
                             progress: Progress = NULL_PROGRESS) -> InspectReport:
    """Inspect a diffusers pipeline folder: one report over all its components."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise BadInputError(f"{folder} is a folder but not a diffusers pipeline (no model_index.json)")
    model_index = read_json_object(index_path)
    detection = detect_from_configs(folder, model_index)
    summaries: list[ComponentSummary] = []
    scan = ValueScan() if check_values else None
    all_infos = []
    for folder_name in WEIGHT_FOLDERS:
        name = component_of_folder(folder_name, detection.base_model)
        for path in weight_files(folder / folder_name):
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
