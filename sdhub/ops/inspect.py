"""``inspect``: what a model file is, what is in it, and what is wrong with it, without loading it.

Works on ``.safetensors``, torch ``.ckpt``/``.pt``/``.bin`` (through the safe reader, never
executing the pickle) and diffusers folders. The answer comes from tensor names, shapes and
metadata; the value checks (NaN/Inf, fp16 overflow, CLIP position ids) stream the tensors one at
a time, so memory stays bounded by the largest tensor.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdhub.errors import BadInputError, MissingFileError
from sdhub.formats import ModelFile, open_model
from sdhub.formats.dtypes import is_floating
from sdhub.formats.quantised import QUANTISED
from sdhub.models import components as comp
from sdhub.models.detect import Detection, detect, read_sidecar_config
from sdhub.ops.cast import FP16_OVERFLOW, NARROW_FLOATS, measurable
from sdhub.ops.prune import (
    SOURCE_SHA256_KEY,
    PruneOptions,
    output_metadata,
    plan_prune,
    position_ids_broken,
    training_entries,
)
from sdhub.progress import NULL_PROGRESS, Progress

#: Bumped when a key of ``InspectReport.to_dict()`` changes meaning or disappears.
SCHEMA_VERSION = 1
_EXAMPLES = 5
_TOP_TAGS = 10

_COMPONENT_LABELS = {
    comp.UNET: "UNet", comp.VAE: "VAE", comp.TEXT_ENCODER: "text encoder", comp.TEXT_ENCODER_2: "text encoder 2",
    comp.TEXT_ENCODER_3: "text encoder 3 (T5)",
    comp.EMA: "EMA weights", comp.TRAINING: "training state", comp.DDPM_BUFFERS: "noise schedule buffers",
    comp.UNKNOWN: "unrecognised tensors",
}


@dataclass
class ComponentSummary:
    """One part of the model: how many tensors and parameters, in which types, how many bytes."""

    name: str
    tensors: int
    parameters: int
    bytes: int
    dtypes: dict[str, int]
    nan_values: int | None = None  # None when values were not checked
    inf_values: int | None = None
    file: str | None = None  # diffusers folders: the weights file, relative to the folder


@dataclass
class Problem:
    """Something a user should know before generating with the file."""

    code: str  # nan | inf | fp16_overflow | broken_position_ids | missing_vae | missing_text_encoder | unknown_keys | pickle_placeholders
    severity: str  # error | warning | info
    message: str
    component: str | None = None
    tensors: list[str] = field(default_factory=list)


@dataclass
class InspectReport:
    """Everything ``sdhub inspect`` says about one file or folder; ``to_dict`` is the ``--json`` output."""

    path: str
    format: str
    size: int
    detection: Detection
    dtype: str | None
    tensor_count: int
    parameter_count: int
    components: list[ComponentSummary]
    ema: bool
    training_state: bool
    training_entries: list[str]
    metadata: dict[str, str]
    lora: dict[str, Any] | None
    problems: list[Problem]
    prune: dict[str, Any] | None
    values_checked: bool
    reader: dict[str, Any] | None = None
    #: GGUF / bitsandbytes files: the scheme and tensor counts by type (``Quantisation.to_dict``).
    quantisation: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return self.detection.kind

    @property
    def architecture(self) -> str | None:
        return self.detection.architecture

    @property
    def base_model(self) -> str | None:
        return self.detection.base_model

    def problem_codes(self) -> list[str]:
        return [problem.code for problem in self.problems]

    def to_dict(self) -> dict[str, Any]:
        detection = self.detection.to_dict()
        return {
            "schema": SCHEMA_VERSION,
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "kind": detection["kind"],
            "architecture": detection["architecture"],
            "variant": detection["variant"],
            "inpainting": detection["inpainting"],
            "base_model": detection["base_model"],
            "lora_flavour": detection["lora_flavour"],
            "embedding_vectors": detection["embedding_vectors"],
            "evidence": detection["evidence"],
            "details": detection["details"],
            "dtype": self.dtype,
            "tensor_count": self.tensor_count,
            "parameter_count": self.parameter_count,
            "components": [asdict(c) for c in self.components],
            "ema": self.ema,
            "training_state": self.training_state,
            "training_entries": self.training_entries,
            "metadata": self.metadata,
            "lora": self.lora,
            "problems": [asdict(p) for p in self.problems],
            "prune": self.prune,
            "values_checked": self.values_checked,
            "reader": self.reader,
            "quantisation": self.quantisation,
        }


def inspect_file(path: str | Path, *, check_values: bool = True, progress: Progress = NULL_PROGRESS) -> InspectReport:
    """Inspect a model file or diffusers folder; ``check_values=False`` reads names and shapes only."""
    target = Path(path)
    if not target.exists():
        raise MissingFileError(f"{target}: no such file or folder")
    if target.is_dir():
        # inspect_diffusers builds on this module's pieces, so it is imported only when needed.
        from sdhub.ops.inspect_diffusers import inspect_diffusers_folder

        return inspect_diffusers_folder(target, check_values=check_values, progress=progress)
    with open_model(target) as model:
        detection = detect(model.tensors, model.metadata, sidecar_config=read_sidecar_config(target))
        groups = comp.group_by_component(model.tensors)
        if detection.kind in ("lora", "embedding", "vae", "other", *_WHOLE_KINDS):
            groups = _regroup_non_checkpoint(groups, detection)
        scan = scan_values(model, groups, progress) if check_values else None
        problems = structural_problems(detection, groups, model.report.placeholders)
        if scan is not None:
            problems = scan.problems + problems
        summaries = [summarise_component(model, name, keys, scan) for name, keys in groups.items()]
        training_tensors = Counter(k.split(".", 1)[0] for k in groups.get(comp.TRAINING, []))
        training = training_entries(model) + [f"{prefix} ({n} tensors)" for prefix, n in training_tensors.items()]
        return InspectReport(
            path=str(target),
            format=model.format,
            size=model.size,
            detection=detection,
            dtype=dominant_dtype(model.tensors.values()),
            tensor_count=len(model.tensors),
            parameter_count=sum(info.numel for info in model.tensors.values()),
            components=summaries,
            ema=comp.EMA in groups,
            training_state=bool(training),
            training_entries=training,
            metadata=dict(model.metadata),
            lora=kohya_summary(model.metadata) if detection.kind == "lora" else None,
            problems=problems,
            prune=prune_estimate(model, detection, scan.broken_position_ids if scan else set()),
            values_checked=scan is not None,
            reader=model.report.to_dict() if model.format not in ("safetensors", "gguf") else None,
            quantisation=model.quantisation.to_dict() if model.quantisation else None,
        )


#: Kinds whose tensors are one model, not checkpoint parts (a ControlNet's ``input_blocks`` are not a UNet's).
_WHOLE_KINDS = ("controlnet", "ip-adapter", "clip-vision", "upscaler", "preview-decoder", "hypernetwork",
                "text-encoder")


def _regroup_non_checkpoint(groups: dict[str, list[str]], detection: Detection) -> dict[str, list[str]]:
    """Outside checkpoints, bare names like ``betas`` or ``emb_params`` are not checkpoint parts."""
    if detection.kind == "embedding" or detection.kind in _WHOLE_KINDS:
        return {detection.kind: [k for keys in groups.values() for k in keys]}
    if detection.lora_flavour == "lora-diffusion":
        # cloneofsimo names tensors "unet:N:up" / "text_encoder:N:down", or by position alone in its .pt.
        parts: dict[str, list[str]] = {}
        for key in (k for keys in groups.values() for k in keys):
            model = key.split(":", 1)[0] if ":" in key else "lora"
            parts.setdefault({"unet": comp.UNET, "text_encoder": comp.TEXT_ENCODER}.get(model, "lora"), []).append(key)
        return parts
    regrouped: dict[str, list[str]] = {}
    for name, keys in groups.items():
        if name in (comp.EMA, comp.DDPM_BUFFERS):
            name = comp.UNKNOWN
        regrouped.setdefault(name, []).extend(keys)
    return regrouped


def dominant_dtype(infos: Any) -> str | None:
    """The floating or quantised type holding most of the bytes (integer buffers do not count)."""
    by_type: Counter[str] = Counter()
    for info in infos:
        if is_floating(info.dtype_name) or info.dtype_name in QUANTISED:
            by_type[info.dtype_name] += info.nbytes
    return by_type.most_common(1)[0][0] if by_type else None


def summarise_component(model: ModelFile, name: str, keys: list[str], scan: "ValueScan | None",
                        file: str | None = None) -> ComponentSummary:
    dtypes = Counter(model.tensors[k].dtype_name for k in keys)
    return ComponentSummary(
        name=name,
        tensors=len(keys),
        parameters=sum(model.tensors[k].numel for k in keys),
        bytes=sum(model.tensors[k].nbytes for k in keys),
        dtypes=dict(sorted(dtypes.items())),
        nan_values=scan.nan_values.get(name, 0) if scan else None,
        inf_values=scan.inf_values.get(name, 0) if scan else None,
        file=file,
    )


# ---- values ---------------------------------------------------------------------------------


@dataclass
class ValueScan:
    """Per-component counts of bad values and the problems they make."""

    nan_values: dict[str, int] = field(default_factory=dict)
    inf_values: dict[str, int] = field(default_factory=dict)
    nan_tensors: dict[str, list[str]] = field(default_factory=dict)
    inf_tensors: dict[str, list[str]] = field(default_factory=dict)
    overflow_values: int = 0
    overflow_tensors: list[str] = field(default_factory=list)
    broken_position_ids: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)


def scan_values(model: ModelFile, groups: dict[str, list[str]], progress: Progress = NULL_PROGRESS,
                scan: ValueScan | None = None) -> ValueScan:
    """Stream every tensor once (in file order) counting NaN, Inf and fp16 overflow per component."""
    import torch

    scan = scan or ValueScan()
    component_of = {key: name for name, keys in groups.items() for key in keys}
    names = sorted(component_of, key=lambda n: (model.source(n).data_start, model.source(n).offset))
    task = progress.task(f"Checking {model.path.name}", total=sum(model.tensors[n].nbytes for n in names),
                         unit="bytes")
    for name in names:
        info = model.tensors[name]
        component = component_of[name]
        if name.endswith("position_ids") and len(info.shape) in (1, 2) and info.shape[-1] > 0:
            if position_ids_broken(model.load(name)):
                scan.broken_position_ids.add(name)
        if is_floating(info.dtype_name) and info.numel:
            tensor = measurable(model.load(name))
            low, high = (float(v) for v in torch.aminmax(tensor))
            if math.isnan(low) or math.isnan(high):
                _count(scan.nan_values, scan.nan_tensors, component, name, int(torch.isnan(tensor).sum()))
            if math.isinf(low) or math.isinf(high):
                _count(scan.inf_values, scan.inf_tensors, component, name, int(torch.isinf(tensor).sum()))
            if info.dtype_name not in ("F16", *NARROW_FLOATS) and (high >= FP16_OVERFLOW or low <= -FP16_OVERFLOW):
                over = int((torch.isfinite(tensor) & (tensor.abs() >= FP16_OVERFLOW)).sum())
                if over:
                    scan.overflow_values += over
                    scan.overflow_tensors.append(name)
            del tensor
        task.advance(info.nbytes)
    task.finish()
    scan.problems = _value_problems(scan)
    return scan


def _count(values: dict[str, int], tensors: dict[str, list[str]], component: str, name: str, count: int) -> None:
    if count:
        values[component] = values.get(component, 0) + count
        tensors.setdefault(component, []).append(name)


def _label(component: str) -> str:
    return _COMPONENT_LABELS.get(component, component)


def _value_problems(scan: ValueScan) -> list[Problem]:
    problems = []
    for code, values, tensors, word in (("nan", scan.nan_values, scan.nan_tensors, "NaN"),
                                        ("inf", scan.inf_values, scan.inf_tensors, "infinite")):
        for component, count in values.items():
            names = tensors[component]
            consequence = " (images will come out black)" if component == comp.VAE else ""
            problems.append(Problem(
                code, "error",
                f"{_label(component)}: {count} {word} value(s) in {len(names)} tensor(s){consequence}, "
                f"e.g. {names[0]}", component, names[:_EXAMPLES]))
    if scan.overflow_values:
        problems.append(Problem(
            "fp16_overflow", "warning",
            f"{scan.overflow_values} value(s) in {len(scan.overflow_tensors)} tensor(s) are beyond fp16's range "
            f"(±65504), e.g. {scan.overflow_tensors[0]}: an fp16 copy would hold inf; keep fp32/bf16, or "
            "prune --force clamps them", None, scan.overflow_tensors[:_EXAMPLES]))
    for name in sorted(scan.broken_position_ids):
        problems.append(Problem(
            "broken_position_ids", "warning",
            f"CLIP position_ids are not the integers 0..76 ({name}): some tokens get the wrong position "
            "embedding; sdhub prune --fix-clip repairs them", comp.component_of(name), [name]))
    return problems


# ---- structure ------------------------------------------------------------------------------


# The encoders a checkpoint of each family needs (SD3 files without T5 are published and work without it).
_TEXT_ENCODERS = {"sdxl": [comp.TEXT_ENCODER, comp.TEXT_ENCODER_2], "sd3": [comp.TEXT_ENCODER, comp.TEXT_ENCODER_2],
                  "flux1": [comp.TEXT_ENCODER, comp.TEXT_ENCODER_3]}


def structural_problems(detection: Detection, groups: dict[str, list[str]], placeholders: list[str] | None = None
                        ) -> list[Problem]:
    """Problems visible from names alone: missing parts, unknown keys, pickle objects left out."""
    problems = []
    if detection.kind == "checkpoint":
        if comp.VAE not in groups:
            problems.append(Problem(
                "missing_vae", "warning",
                "no VAE weights: images need a separate VAE (without one they come out washed-out or as noise); "
                "sdhub prune --vae bake FILE adds one", comp.VAE))
        wanted = [comp.TEXT_ENCODER_2] if detection.architecture == "sdxl-refiner" else _TEXT_ENCODERS.get(
            detection.base_model or "", [comp.TEXT_ENCODER])
        for component in wanted:
            if component not in groups:
                problems.append(Problem("missing_text_encoder", "warning",
                                        f"no {_label(component)} weights", component))
    unknown = groups.get(comp.UNKNOWN, [])
    if unknown and detection.kind != "other":
        problems.append(Problem(
            "unknown_keys", "warning",
            f"{len(unknown)} tensor(s) with names sdhub does not recognise for a {detection.kind}, e.g. {unknown[0]}",
            comp.UNKNOWN, unknown[:_EXAMPLES]))
    if placeholders:
        problems.append(Problem(
            "pickle_placeholders", "info",
            "the pickle names harmless training objects that were not loaded: " + ", ".join(placeholders)))
    return problems


# ---- metadata -------------------------------------------------------------------------------


def kohya_summary(metadata: dict[str, str]) -> dict[str, Any] | None:
    """A readable digest of kohya ``ss_*`` and ``modelspec.*`` training metadata."""
    if not any(key.startswith(("ss_", "modelspec.")) for key in metadata):
        return None
    summary: dict[str, Any] = {}
    fields = (
        ("title", "modelspec.title"), ("output_name", "ss_output_name"),
        ("base_model_version", "ss_base_model_version"), ("architecture", "modelspec.architecture"),
        ("trained_on", "ss_sd_model_name"), ("network_module", "ss_network_module"),
        ("dim", "ss_network_dim"), ("alpha", "ss_network_alpha"), ("resolution", "ss_resolution"),
        ("epochs", "ss_num_epochs"), ("steps", "ss_max_train_steps"), ("learning_rate", "ss_learning_rate"),
        ("trigger_phrase", "modelspec.trigger_phrase"), ("training_started_at", "ss_training_started_at"),
    )
    for label, key in fields:
        if metadata.get(key) not in (None, "", "None"):
            summary[label] = metadata[key]
    if "resolution" not in summary and metadata.get("modelspec.resolution"):
        summary["resolution"] = metadata["modelspec.resolution"]
    if args := metadata.get("ss_network_args"):
        try:
            summary["network_args"] = json.loads(args)
        except json.JSONDecodeError:
            summary["network_args"] = args
    tags = top_tags(metadata.get("ss_tag_frequency"))
    if tags:
        summary["top_tags"] = tags
    return summary


def top_tags(tag_frequency: str | None, limit: int = _TOP_TAGS) -> list[list[Any]]:
    """``[[tag, count], ...]`` from kohya's ``ss_tag_frequency`` (datasets merged, most frequent first)."""
    if not tag_frequency:
        return []
    try:
        datasets = json.loads(tag_frequency)
    except json.JSONDecodeError:
        return []
    counts: Counter[str] = Counter()
    if isinstance(datasets, dict):
        for tags in datasets.values():
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(count, (int, float)):
                        counts[str(tag).strip()] += int(count)
    return [[tag, count] for tag, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


# ---- prune estimate -------------------------------------------------------------------------


def prune_estimate(model: ModelFile, detection: Detection, broken: set[str]) -> dict[str, Any] | None:
    """What ``sdhub prune`` would write with its defaults, keeping the types and casting to fp16
    (None when prune does not take the file: an embedding, or nothing would be left)."""
    if detection.kind == "embedding" or model.rewrite_refusal:
        return None
    estimate: dict[str, Any] = {"size_now": model.size, "size_after": {}, "bytes_saved": {}}
    for label, dtype in (("keep", "keep"), ("fp16", "fp16")):
        options = PruneOptions(dtype=dtype, fix_clip=True)
        try:
            plan = plan_prune(model, detection, options, None, broken)
        except BadInputError:
            return None
        metadata = {**output_metadata(model, detection, options, plan), SOURCE_SHA256_KEY: "0" * 64}
        size = plan.estimated_size(metadata)
        estimate["size_after"][label] = size
        estimate["bytes_saved"][label] = max(model.size - size, 0)
        estimate["ema"] = plan.ema
        estimate["dropped_tensors"] = plan.dropped
    return estimate
