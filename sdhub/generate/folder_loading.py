"""A diffusers pipeline folder (``sdhub get hf:org/repo``, ``save_pretrained``) loaded for generation.

The same discipline as single files: weights are read through the safe reader (``.safetensors``,
or a ``.bin`` without running its pickle), each component is built empty on the meta device from
the folder's own config and its tensors assigned one at a time; the tokenizers come from the
folder. Nothing is fetched.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch

from sdhub.errors import BadInputError
from sdhub.formats import open_model
from sdhub.generate.loading import (
    TEXT_ENCODER_PREFIXES,
    LoadedModel,
    assign_weights,
    empty_text_encoder,
    empty_unet,
    empty_vae,
    load_vae,
    materializer,
)
from sdhub.generate.model_configs import PipelineConfig, load_tokenizers
from sdhub.models.pipeline_folder import detect_from_configs, read_json_object, weight_files
from sdhub.progress import NULL_PROGRESS, Progress


def is_pipeline_folder(path: Path) -> bool:
    """True for a folder with a ``model_index.json`` (what diffusers' ``save_pretrained`` writes)."""
    return path.is_dir() and (path / "model_index.json").is_file()


def load_pipeline_folder(folder: Path, *, vae: str | Path | None, device: torch.device, dtype: torch.dtype,
                         progress: Progress = NULL_PROGRESS) -> LoadedModel:
    """Load a diffusers SD/SDXL pipeline folder (and optionally a replacement VAE file) for generation."""
    started = time.perf_counter()
    if not is_pipeline_folder(folder):
        raise BadInputError(f"{folder} is a folder but not a diffusers pipeline (no model_index.json)")
    model_index = read_json_object(folder / "model_index.json")
    detection = detect_from_configs(folder, model_index)
    arch = detection.architecture
    if detection.kind != "checkpoint" or arch not in TEXT_ENCODER_PREFIXES:
        raise BadInputError(f"{folder.name} is not a Stable Diffusion pipeline sdhub can generate with "
                            f"({'; '.join(detection.evidence)})")
    encoders = tuple(TEXT_ENCODER_PREFIXES[arch])
    weighted = ("unet", *encoders, *(() if vae is not None else ("vae",)))
    components = {"model_index": model_index,
                  "scheduler": _config(folder, "scheduler", "scheduler_config.json")}
    for name in ("unet", "vae", *encoders):
        components[name] = _config(folder, name, "config.json")
    config = PipelineConfig(arch, components)
    config.tokenizer_dirs = {tokenizer: folder / tokenizer for tokenizer in
                             (name.replace("text_encoder", "tokenizer") for name in encoders)
                             if (folder / tokenizer).is_dir()}
    tokenizers = load_tokenizers(config)
    with contextlib.ExitStack() as open_files:
        weights = {name: _component_tensors(folder, name, open_files) for name in weighted}
        task = progress.task(f"Loading {folder.name}", total=sum(map(len, weights.values())), unit="tensors")
        materialize = materializer(device, dtype, task.advance)
        unet = assign_weights(empty_unet(config), weights["unet"], materialize, "UNet", folder)
        text_encoders = {name: assign_weights(empty_text_encoder(config, name), weights[name], materialize,
                                              name.replace("_", " "), folder) for name in encoders}
        if vae is None:
            vae_model = assign_weights(empty_vae(config), weights["vae"], materialize, "VAE", folder)
            vae_source = "baked-in"
        task.finish()
    if vae is not None:
        vae_model = load_vae(vae, config, device=device, dtype=dtype)
        vae_source = str(vae)
    return LoadedModel(
        path=folder, arch=arch, variant=detection.variant, config=config, unet=unet, vae=vae_model,
        text_encoders=text_encoders, tokenizers=tokenizers, alphas_cumprod=_alphas_cumprod(components["scheduler"]),
        device=device, dtype=dtype, vae_source=vae_source, load_seconds=time.perf_counter() - started,
        evidence=list(detection.evidence),
    )


def _config(folder: Path, component: str, file_name: str) -> dict[str, Any]:
    path = folder / component / file_name
    if not path.is_file():
        raise BadInputError(f"{folder.name}: {component}/{file_name} is missing; the pipeline folder is incomplete")
    return read_json_object(path)


def _component_tensors(folder: Path, component: str, open_files: contextlib.ExitStack) -> dict[str, torch.Tensor]:
    """``{name: mapped tensor}`` for a component's floating-point weights, over all its shards."""
    files = weight_files(folder / component)
    if not files:
        raise BadInputError(f"{folder.name}: {component}/ holds no weights (.safetensors or .bin); "
                            "the pipeline folder is incomplete")
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        model_file = open_files.enter_context(open_model(path))
        # Integer buffers (old CLIP position ids) are rebuilt, never cast into the weights' dtype.
        tensors.update({name: model_file.load(name, keep=True) for name, info in model_file.tensors.items()
                        if info.dtype.is_floating_point})
    return tensors


def _alphas_cumprod(scheduler: dict[str, Any]) -> torch.Tensor:
    """ᾱ from the folder's training schedule (SD's scaled_linear, or linear)."""
    from sdhub.generate.samplers import scaled_linear_alphas_cumprod

    steps = int(scheduler.get("num_train_timesteps", 1000))
    start, end = float(scheduler.get("beta_start", 0.00085)), float(scheduler.get("beta_end", 0.012))
    schedule = scheduler.get("beta_schedule", "scaled_linear")
    if schedule == "scaled_linear":
        return scaled_linear_alphas_cumprod(steps, start, end)
    if schedule == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
        return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)
    raise BadInputError(f"scheduler beta_schedule {schedule!r} is not one sdhub can sample with "
                        "(scaled_linear or linear)")
