"""What a diffusers pipeline folder holds: its JSON configs, each component's weight files, its architecture.

Shared by ``inspect`` (which reports on the folder) and generation (which loads it); nothing here
reads weights.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sdhub.errors import BadInputError
from sdhub.models import components as comp
from sdhub.models.detect import CROSS_ATTENTION_BASE, INPUT_CHANNEL_VARIANTS, Detection, family
from sdhub.models.detect_transformer import flux_variant, sd3_architecture


def read_json_object(path: Path) -> dict[str, Any]:
    """A config file's JSON object, or a one-line error naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadInputError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(value, dict):
        raise BadInputError(f"{path}: expected a JSON object")
    return value


# Which variant's weights stand in when a component has no plain ones: the inference weights in
# half precision first; "non_ema" (SD1.5's raw training weights) only when nothing else is there.
_VARIANT_ORDER = ("fp16", "bf16", "fp32")


#: The weight files diffusers loads from a component folder.
WEIGHT_SUFFIXES = (".safetensors", ".bin")
#: Weights of other kinds a pipeline repo may also carry: single-file checkpoints, Flax, ONNX, TF, GGUF.
OTHER_WEIGHT_SUFFIXES = (".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".onnx_data", ".pb", ".h5", ".ot", ".gguf")


def chosen_weight_names(names: Iterable[str]) -> list[str]:
    """Of one component folder's file names, the weights to load, .safetensors before .bin: the
    plain ones (one file, or an index and its shards), else one variant's (``model.fp16.safetensors``,
    sharded or not), fp16 first and ``non_ema`` last."""
    names = sorted(names)
    for suffix in WEIGHT_SUFFIXES:
        ext = re.escape(suffix)
        choices: dict[str, list[str]] = {}  # variant ("" for none) -> its files
        for name in names:
            if index := re.fullmatch(rf"[^.]+{ext}\.index(?:\.([^.]+))?\.json", name):
                variant = index.group(1) or ""
                shard = re.compile(rf"[^.]+?{re.escape('.' + variant) if variant else ''}-\d+-of-\d+{ext}")
                choices.setdefault(variant, [name, *(n for n in names if shard.fullmatch(n))])
        for name in names:
            if single := re.fullmatch(rf"[^.]+(?:\.([^.-]+))?{ext}", name):
                choices.setdefault(single.group(1) or "", [name])
        if choices:
            return choices[min(choices, key=_variant_rank)]
    return []


def weight_files(folder: Path) -> list[Path]:
    """The files holding one component's weights (see ``chosen_weight_names``); a sharded set is
    the shards its index names."""
    if not folder.is_dir():
        return []
    chosen = chosen_weight_names(p.name for p in folder.iterdir() if p.is_file())
    if chosen and chosen[0].endswith(".json"):
        return _index_shards(folder, folder / chosen[0])
    return [folder / name for name in chosen]


def pipeline_download_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Of a pipeline repo's file paths, (wanted, skipped): every config, tokenizer and other small
    file is wanted, but of the weights only each component's ``chosen_weight_names``; single-file
    checkpoints beside the pipeline and other frameworks' weights are skipped."""
    names = sorted(names)
    by_component: dict[str, list[str]] = {}
    for name in names:
        component, _, rest = name.partition("/")
        if rest and "/" not in rest:
            by_component.setdefault(component, []).append(rest)
    chosen = {f"{component}/{name}" for component, files in by_component.items()
              for name in chosen_weight_names(files)}
    wanted: list[str] = []
    skipped: list[str] = []
    for name in names:
        weights = (name.endswith(WEIGHT_SUFFIXES + OTHER_WEIGHT_SUFFIXES)
                   or re.search(r"\.(safetensors|bin)\.index(\.[^./]+)?\.json$", name) is not None)
        (skipped if weights and name not in chosen else wanted).append(name)
    return wanted, skipped


def _variant_rank(variant: str) -> tuple[int, str]:
    """Sort key: plain weights, then ``_VARIANT_ORDER``, then any other variant, "non_ema" last."""
    known = ("", *_VARIANT_ORDER)
    if variant in known:
        return known.index(variant), variant
    return len(known) + (variant == "non_ema"), variant


def _index_shards(folder: Path, index: Path) -> list[Path]:
    """The shard files a ``*.index.json`` names, all inside ``folder``."""
    weight_map = read_json_object(index).get("weight_map", {})
    if not isinstance(weight_map, dict):
        raise BadInputError(f"{index}: weight_map is not a JSON object")
    shards = [Path(os.path.normpath(folder / str(shard))) for shard in sorted({str(v) for v in weight_map.values()})]
    # Judged by name, not by resolving links: a Hugging Face cache snapshot's files are links to its blobs.
    if any(shard.parent != Path(os.path.normpath(folder)) for shard in shards):
        raise BadInputError(f"{index}: names a shard outside its folder")
    return shards


def _component_present(model_index: dict[str, Any], name: str) -> bool:
    entry = model_index.get(name)
    return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None


def detect_from_configs(folder: Path, model_index: dict[str, Any]) -> Detection:
    """Architecture of a pipeline folder from model_index.json and the component configs."""
    evidence = [f"diffusers pipeline {model_index.get('_class_name', '?')}"]
    unet_config_path = folder / "unet" / "config.json"
    unet = read_json_object(unet_config_path) if unet_config_path.is_file() else {}
    transformer_config_path = folder / "transformer" / "config.json"
    if not unet and transformer_config_path.is_file():
        return _transformer_pipeline(model_index, read_json_object(transformer_config_path), evidence)
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
    detection = Detection("checkpoint" if unet else "other", architecture=architecture, evidence=evidence)
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


#: Where a transformer pipeline keeps its text encoders, by family (FLUX.1's T5 is its text_encoder_2).
TRANSFORMER_TEXT_ENCODERS: dict[str, dict[str, str]] = {
    "flux1": {comp.TEXT_ENCODER: "CLIP-L", comp.TEXT_ENCODER_2: "T5-XXL"},
    "sd3": {comp.TEXT_ENCODER: "CLIP-L", comp.TEXT_ENCODER_2: "CLIP-G", comp.TEXT_ENCODER_3: "T5-XXL"},
}


def _transformer_pipeline(model_index: dict[str, Any], config: dict[str, Any], evidence: list[str]) -> Detection:
    """A FLUX.1 or SD3 pipeline from its ``transformer/config.json``: the same structural facts the
    weights show (guidance embedding, input/output channels; second-attention blocks, q/k norms)."""
    model_class = str(config.get("_class_name", ""))
    layers = config.get("num_layers") if isinstance(config.get("num_layers"), int) else 0
    heads, head_dim = config.get("num_attention_heads"), config.get("attention_head_dim")
    width = heads * head_dim if isinstance(heads, int) and isinstance(head_dim, int) else None
    architecture: str | None = None
    variant: str | None = None
    if model_class == "FluxTransformer2DModel":
        fam = "flux1"
        taken = config.get("in_channels", 64)
        given = config.get("out_channels") or taken
        evidence.append(f"transformer/config.json: FluxTransformer2DModel, {layers} double-stream and "
                        f"{config.get('num_single_layers', '?')} single-stream blocks, width {width}")
        if isinstance(taken, int) and isinstance(given, int):
            architecture, variant = flux_variant(taken, given, bool(config.get("guidance_embeds")), evidence, {})
    elif model_class == "SD3Transformer2DModel":
        fam = "sd3"
        dual = config.get("dual_attention_layers") or []
        evidence.append(f"transformer/config.json: SD3Transformer2DModel, {layers} joint blocks, width {width}")
        architecture = sd3_architecture(list(dual) if isinstance(dual, list) else [], bool(config.get("qk_norm")),
                                        width, layers, evidence)
    else:
        evidence.append(f"transformer/config.json names {model_class or 'no class'}, not a FLUX.1 or SD3 transformer")
        return Detection("other", evidence=evidence)
    encoders = [label for name, label in TRANSFORMER_TEXT_ENCODERS[fam].items() if _component_present(model_index, name)]
    has_vae = _component_present(model_index, comp.VAE)
    kind = "checkpoint" if encoders or has_vae else "diffusion-model"
    evidence.append(f"text encoders {', '.join(encoders) or 'none'}; " + ("a VAE" if has_vae else "no VAE"))
    return Detection(kind, architecture=architecture, variant=variant, base_model=fam, evidence=evidence,
                     details={"layout": "diffusers", "hidden_size": width, "text_encoders": encoders})


#: The folders of a pipeline that hold weights, in the order reports list them.
WEIGHT_FOLDERS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def component_of_folder(folder_name: str, family_name: str | None) -> str:
    """The checkpoint component a pipeline folder's weights are: a transformer is the diffusion model
    (``unet``), and FLUX.1's ``text_encoder_2`` is T5, which checkpoints call text encoder 3."""
    if folder_name == "transformer":
        return comp.UNET
    if family_name == "flux1" and folder_name == comp.TEXT_ENCODER_2:
        return comp.TEXT_ENCODER_3
    return folder_name

