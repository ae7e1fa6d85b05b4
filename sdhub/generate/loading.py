"""A single-file checkpoint becomes diffusers components, offline, with one copy of the weights.

The file is read through the safe reader (``sdhub.formats.open_model``: safetensors, or a
``.ckpt`` without running its pickle), its architecture comes from ``sdhub.models.detect``, and
each component is built empty on the meta device from the shipped config. Tensors are renamed
with diffusers' own LDM converters while still backed by the file's memory map, then cast and
moved to the target device one at a time and assigned into the model, so the weights exist once
(on the CPU in the file's own dtype they stay mapped from the file, copy-on-write).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from sdhub.errors import BadInputError, MissingDependencyError, UsageError
from sdhub.generate.model_configs import PipelineConfig, load_tokenizers, pipeline_config
from sdhub.progress import NULL_PROGRESS, Progress

_UNET_PREFIX = "model.diffusion_model."
_VAE_PREFIX = "first_stage_model."
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}

# Where each text encoder lives in the single-file layouts, per architecture.
TEXT_ENCODER_PREFIXES = {
    "sd1": {"text_encoder": ("clip", "cond_stage_model.transformer.")},
    "sd2": {"text_encoder": ("openclip", "cond_stage_model.model.")},
    "sd2-v": {"text_encoder": ("openclip", "cond_stage_model.model.")},
    "sdxl": {"text_encoder": ("clip", "conditioner.embedders.0.transformer."),
             "text_encoder_2": ("openclip", "conditioner.embedders.1.model.")},
    "sdxl-refiner": {"text_encoder_2": ("openclip", "conditioner.embedders.0.model.")},
}


def select_device(requested: str | None = None) -> torch.device:
    """``requested`` if given and usable, else CUDA, then Apple MPS, then the CPU."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise UsageError(f"unknown device {requested!r}; use cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError("--device cuda asked for, but torch sees no CUDA device "
                                         f"(torch {torch.__version__}); run `sdhub doctor`")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise MissingDependencyError("--device mps asked for, but torch has no MPS support here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def select_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """fp16 on GPUs, fp32 on the CPU, unless ``requested`` ('fp32', 'fp16', 'bf16') says otherwise."""
    if requested:
        try:
            return _DTYPES[requested.lower()]
        except KeyError:
            raise UsageError(f"unknown dtype {requested!r}; choose one of: {', '.join(_DTYPES)}") from None
    return torch.float32 if device.type == "cpu" else torch.float16


def dtype_name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


@dataclass
class LoadedModel:
    """A checkpoint's components ready to sample with, and what was learnt while loading it."""

    path: Path
    arch: str
    variant: str | None
    config: PipelineConfig
    unet: Any
    vae: Any
    text_encoders: dict[str, Any]
    tokenizers: dict[str, Any]
    alphas_cumprod: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    vae_source: str
    load_seconds: float
    evidence: list[str] = field(default_factory=list)

    @property
    def prediction_type(self) -> str:
        return self.config.prediction_type

    @property
    def family(self) -> str:
        return self.arch.split("-")[0]

    def pipeline(self) -> Any:
        """The same components as a ready diffusers pipeline (for users of diffusers' own API)."""
        import diffusers

        scheduler = diffusers.EulerDiscreteScheduler.from_config(self.config.components["scheduler"])
        if self.arch == "sdxl":
            return diffusers.StableDiffusionXLPipeline(
                vae=self.vae, text_encoder=self.text_encoders["text_encoder"],
                text_encoder_2=self.text_encoders["text_encoder_2"], tokenizer=self.tokenizers["tokenizer"],
                tokenizer_2=self.tokenizers["tokenizer_2"], unet=self.unet, scheduler=scheduler)
        if self.arch == "sdxl-refiner":
            return diffusers.StableDiffusionXLImg2ImgPipeline(
                vae=self.vae, text_encoder=None, text_encoder_2=self.text_encoders["text_encoder_2"],
                tokenizer=None, tokenizer_2=self.tokenizers["tokenizer_2"], unet=self.unet, scheduler=scheduler,
                requires_aesthetics_score=True)
        return diffusers.StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoders["text_encoder"], tokenizer=self.tokenizers["tokenizer"],
            unet=self.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "architecture": self.arch, "variant": self.variant,
            "prediction": self.prediction_type, "device": str(self.device), "dtype": dtype_name(self.dtype),
            "vae": self.vae_source, "tiny": self.config.tiny, "load_seconds": round(self.load_seconds, 3),
        }


def load_checkpoint(path: str | Path, *, vae: str | Path | None = None, device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None, progress: Progress = NULL_PROGRESS) -> LoadedModel:
    """Load a single-file SD checkpoint, or a diffusers pipeline folder, (and optionally a replacement
    VAE) for generation."""
    from sdhub.formats import open_model
    from sdhub.models.detect import detect, read_sidecar_config

    started = time.perf_counter()
    path = Path(path)
    target_device = device if isinstance(device, torch.device) else select_device(device)
    target_dtype = dtype if isinstance(dtype, torch.dtype) else select_dtype(target_device, dtype)
    if path.is_dir():
        from sdhub.generate.folder_loading import load_pipeline_folder

        return load_pipeline_folder(path, vae=vae, device=target_device, dtype=target_dtype, progress=progress)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file or pipeline folder")
    with open_model(path) as model_file:
        detection = detect(model_file.tensors, model_file.metadata, sidecar_config=read_sidecar_config(path))
        if detection.kind != "checkpoint" or detection.architecture is None:
            raise BadInputError(f"{path.name} is not a Stable Diffusion checkpoint sdhub can generate with "
                                f"(detected: {detection.kind}); {'; '.join(detection.evidence)}")
        input_conv = model_file.tensors.get(_UNET_PREFIX + "input_blocks.0.0.weight")
        if input_conv is None:
            raise BadInputError(f"{path.name} has no UNet input convolution; the file is incomplete")
        config = pipeline_config(detection.architecture, int(input_conv.shape[0]), int(input_conv.shape[1]))
        tokenizers = load_tokenizers(config)
        used = (_UNET_PREFIX, *(prefix for _, prefix in TEXT_ENCODER_PREFIXES[config.arch].values()),
                *(() if vae is not None else (_VAE_PREFIX,)))
        total = sum(1 for name, info in model_file.tensors.items()
                    if name.startswith(used) and info.dtype.is_floating_point)
        task = progress.task(f"Loading {path.name}", total=total, unit="tensors")
        state = _LazyState(model_file)
        materialize = materializer(target_device, target_dtype, task.advance)
        unet = _build_unet(config, state.with_prefix(_UNET_PREFIX), materialize, path)
        text_encoders = {
            name: _build_text_encoder(config, name, kind, prefix, state.with_prefix(prefix), materialize, path)
            for name, (kind, prefix) in TEXT_ENCODER_PREFIXES[config.arch].items()
        }
        if vae is None:
            baked_vae = state.with_prefix(_VAE_PREFIX)
            if not baked_vae:
                raise BadInputError(f"{path.name} has no VAE baked in; pass a VAE (--vae FILE or catalog name)")
            vae_model = _build_vae(config, baked_vae, materialize, path)
            vae_source = "baked-in"
        alphas_cumprod = (model_file.load("alphas_cumprod").to(torch.float32).clone()
                          if "alphas_cumprod" in model_file.tensors else None)
        task.update(completed=total)  # tensors the architecture does not use were skipped, not loaded
        task.finish()
    if vae is not None:
        vae_model = load_vae(vae, config, device=target_device, dtype=target_dtype)
        vae_source = str(vae)
    if alphas_cumprod is None:
        from sdhub.generate.samplers import scaled_linear_alphas_cumprod

        alphas_cumprod = scaled_linear_alphas_cumprod()
    return LoadedModel(
        path=path, arch=config.arch, variant=detection.variant, config=config, unet=unet, vae=vae_model,
        text_encoders=text_encoders, tokenizers=tokenizers, alphas_cumprod=alphas_cumprod,
        device=target_device, dtype=target_dtype, vae_source=vae_source,
        load_seconds=time.perf_counter() - started, evidence=list(detection.evidence),
    )


def load_vae(path: str | Path, config: PipelineConfig, *, device: torch.device, dtype: torch.dtype) -> Any:
    """A standalone VAE file (LDM names with or without ``first_stage_model.``, or diffusers names)."""
    from sdhub.formats import open_model

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"VAE {path} is not a file")
    with open_model(path) as model_file:
        state = _LazyState(model_file)
        if any(name.startswith(_VAE_PREFIX) for name in model_file.tensors):
            tensors = state.with_prefix(_VAE_PREFIX)
        else:
            tensors = state.with_prefix("", roots=("encoder.", "decoder.", "quant_conv.", "post_quant_conv."))
        if not tensors:
            raise BadInputError(f"{path.name} holds no VAE weights (no encoder./decoder. tensors)")
        return _build_vae(config, tensors, materializer(device, dtype, lambda amount=1: None), path)


class _LazyState:
    """Tensors of an open model file by prefix, memory-mapped (not read) until they are materialised."""

    def __init__(self, model_file: Any) -> None:
        self._file = model_file

    def with_prefix(self, prefix: str, roots: tuple[str, ...] = ("",)) -> dict[str, torch.Tensor]:
        """``{full name: mapped tensor}`` for the floating-point tensors under ``prefix`` (and ``roots``)."""
        selected = {}
        for name, info in self._file.tensors.items():
            rest = name[len(prefix):]
            if name.startswith(prefix) and rest.startswith(roots) and info.dtype.is_floating_point:
                selected[name] = self._file.load(name, keep=True)
        return selected


def materializer(device: torch.device, dtype: torch.dtype, advance: Callable[..., None]
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Cast and move one tensor. On the CPU in the file's own dtype the tensor stays mapped from
    the file (copy-on-write, as diffusers' loader does): the weights exist once, in the page cache."""

    def materialize(tensor: torch.Tensor) -> torch.Tensor:
        moved = tensor.to(device=device, dtype=dtype)
        if not moved.is_contiguous():
            moved = moved.contiguous()
        advance(1)
        return moved

    return materialize


def assign_weights(model: torch.nn.Module, converted: dict[str, torch.Tensor],
                   materialize: Callable[[torch.Tensor], torch.Tensor], component: str, path: Path
                   ) -> torch.nn.Module:
    """Put ``converted`` (diffusers names) into a meta-device ``model``, checking every name and shape."""
    expected = model.state_dict(keep_vars=True)
    missing = [name for name in expected if name not in converted]
    if missing:
        raise BadInputError(f"{path.name}: the {component} is incomplete or not the expected architecture "
                            f"({len(missing)} weights missing, e.g. {missing[0]})")
    state = {}
    for name, parameter in expected.items():
        # Popped so each file mapping is released as soon as its tensor has been copied out.
        tensor = converted.pop(name)
        if tuple(tensor.shape) != tuple(parameter.shape):
            raise BadInputError(f"{path.name}: {component} weight {name} has shape {tuple(tensor.shape)}, "
                                f"the architecture needs {tuple(parameter.shape)}")
        state[name] = materialize(tensor)
        del tensor
    converted.clear()
    model.load_state_dict(state, assign=True, strict=True)
    _fill_non_persistent_buffers(model, component, path)
    return model.eval().requires_grad_(False)


def _fill_non_persistent_buffers(model: torch.nn.Module, component: str, path: Path) -> None:
    """Buffers that are not saved (CLIP's position ids) are rebuilt on the weights' device."""
    reference = next(model.parameters())
    for module_name, module in model.named_modules():
        for buffer_name, buffer in list(module.named_buffers(recurse=False)):
            if buffer is None or not buffer.is_meta:
                continue
            if buffer_name == "position_ids":
                module.register_buffer(buffer_name, torch.arange(buffer.shape[-1], device=reference.device)
                                       .expand(buffer.shape), persistent=False)
            else:
                raise BadInputError(f"{path.name}: {component} buffer {module_name}.{buffer_name} "
                                    "cannot be rebuilt offline")


def empty_unet(config: PipelineConfig) -> Any:
    """The UNet of ``config`` on the meta device: its shape, no memory, weights still to assign."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config.components["unet"])


def empty_vae(config: PipelineConfig) -> Any:
    """The VAE of ``config`` on the meta device."""
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        return AutoencoderKL.from_config(config.components["vae"])


def empty_text_encoder(config: PipelineConfig, name: str) -> Any:
    """Text encoder ``name`` of ``config`` on the meta device (text_encoder_2 has SDXL's projection)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    settings = {key: value for key, value in config.components[name].items() if key != "architectures"}
    model_class = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
    with torch.device("meta"):
        return model_class(CLIPTextConfig(**settings))


def _build_unet(config: PipelineConfig, tensors: dict[str, torch.Tensor],
                materialize: Callable[[torch.Tensor], torch.Tensor], path: Path) -> Any:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = empty_unet(config)
    converted = convert_ldm_unet_checkpoint(tensors, unet.config)
    tensors.clear()
    return assign_weights(unet, converted, materialize, "UNet", path)


def _build_vae(config: PipelineConfig, tensors: dict[str, torch.Tensor],
               materialize: Callable[[torch.Tensor], torch.Tensor], path: Path) -> Any:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = empty_vae(config)
    if any(".down_blocks." in name or ".mid_block." in name for name in tensors):
        # already in diffusers naming (e.g. an sdxl-vae-fp16-fix download)
        converted = {name.removeprefix(_VAE_PREFIX): tensor for name, tensor in tensors.items()}
    else:
        converted = convert_ldm_vae_checkpoint(tensors, vae.config)
    tensors.clear()
    return assign_weights(vae, converted, materialize, "VAE", path)


def _build_text_encoder(config: PipelineConfig, name: str, kind: str, prefix: str, tensors: dict[str, torch.Tensor],
                        materialize: Callable[[torch.Tensor], torch.Tensor], path: Path) -> Any:
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    if not tensors:
        raise BadInputError(f"{path.name} has no {name.replace('_', ' ')} weights; the checkpoint is incomplete")
    model = empty_text_encoder(config, name)
    # The converters recognise the layout by the file's own prefix (SD2's ignores its unused projection).
    if kind == "clip":
        converted = convert_ldm_clip_checkpoint(tensors, remove_prefix=prefix)
        # Early transformers layouts (NAI era) lack the ``text_model.`` level.
        converted = {key if key.startswith("text_model.") else "text_model." + key: value
                     for key, value in converted.items()}
    else:
        converted = convert_open_clip_checkpoint(model, tensors, prefix=prefix)
    tensors.clear()
    wants_text_model = any(key.startswith("text_model.") for key in model.state_dict())
    if not wants_text_model:
        converted = {key.removeprefix("text_model."): value for key, value in converted.items()}
    return assign_weights(model, converted, materialize, name.replace("_", " "), path)
