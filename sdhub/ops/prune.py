"""``prune``: a model file cut down to the weights generation uses, streamed tensor by tensor.

EMA weights are used, dropped or kept; training state is dropped; CLIP position ids are
repaired on request; floats are cast (integers never); a VAE is kept, dropped or baked in from
another file. The plan (which source tensor becomes which output tensor, in which type) is
computed from tensor descriptions alone, so ``inspect`` can say what pruning would save without
writing anything. Output goes through the one streaming safetensors writer.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sdhub.errors import BadInputError, UsageError
from sdhub.formats import DeferredValue, ModelFile, TensorSpec, open_model, write_safetensors
from sdhub.formats.dtypes import DTYPES
from sdhub.formats.safe_unpickler import DEFAULT_LIMITS
from sdhub.models import components as comp
from sdhub.models.detect import PREDICTION_METADATA_KEY, Detection, detect, read_sidecar_config
from sdhub.models.vae_keys import is_diffusers_vae, ldm_vae_names, ldm_vae_shape
from sdhub.ops.cast import FP8, FP8_COMPANION, Fp8Clipping, cast_tensor, fp8_tensor, output_dtype, target_dtype
from sdhub.ops.hashing import BackgroundSha256
from sdhub.progress import NULL_PROGRESS, Progress, check_cancelled, reporting_stop

EMA_CHOICES = ("use", "drop", "keep")
VAE_DTYPE_CHOICES = ("fp32", "same")
SOURCE_SHA256_KEY = "sdhub.source_sha256"


@dataclass(frozen=True)
class PruneOptions:
    """What to keep and how: the CLI flags of ``sdhub prune`` as data.

    ``ema=None`` means "use" when the file has EMA weights; ``vae`` is "keep", "drop" or "bake"
    with ``vae_file``; ``dtype`` is fp16, bf16, fp32, fp8 (the diffusion model's matrices in
    float8_e4m3fn, everything else in fp16) or keep.
    """

    ema: str | None = None
    dtype: str = "fp16"
    vae: str = "keep"
    vae_file: str | None = None
    vae_dtype: str = "same"
    fix_clip: bool = False
    keep_training_state: bool = False
    force: bool = False
    allow_expansion: bool = False  # accept tensors describing far more than the file stores

    def __post_init__(self) -> None:
        if self.ema is not None and self.ema not in EMA_CHOICES:
            raise UsageError(f"--ema must be one of {', '.join(EMA_CHOICES)}, not {self.ema!r}")
        if self.vae not in ("keep", "drop", "bake"):
            raise UsageError(f"--vae must be keep, drop or bake FILE, not {self.vae!r}")
        if (self.vae == "bake") != (self.vae_file is not None):
            raise UsageError("--vae bake needs a VAE file (--vae bake FILE), and only bake takes one")
        if self.vae_dtype not in VAE_DTYPE_CHOICES:
            raise UsageError(f"--vae-dtype must be fp32 or same, not {self.vae_dtype!r}")
        try:
            target_dtype(self.dtype)
        except UsageError:
            raise UsageError(f"--dtype must be fp16, bf16, fp32, fp8 or keep, not {self.dtype!r}") from None


@dataclass(frozen=True)
class PlannedTensor:
    """One output tensor: where it comes from and the type it is written in."""

    name: str
    source: str
    dtype: str
    shape: tuple[int, ...]
    from_vae_file: bool = False
    fix: str | None = None  # "position_ids": written as 0..n-1 instead of the source values

    @property
    def nbytes(self) -> int:
        size = DTYPES[self.dtype].itemsize
        for dim in self.shape:
            size *= dim
        return size


@dataclass
class PrunePlan:
    """The output tensors plus what was left out and why."""

    tensors: list[PlannedTensor]
    ema: str  # used | dropped | kept | none
    ema_tensors_used: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    position_ids_fixed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def estimated_size(self, metadata: dict[str, str]) -> int:
        """The output file's size to within a few bytes: its safetensors header plus the tensor data."""
        entries: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
        offset = 0
        for planned in self.tensors:
            entries[planned.name] = {"dtype": planned.dtype, "shape": list(planned.shape),
                                     "data_offsets": [offset, offset + planned.nbytes]}
            offset += planned.nbytes
        header = len(json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        return 8 + header + (-header % 8) + offset


@dataclass
class PruneReport:
    """What ``prune`` wrote; ``to_dict`` is ``sdhub prune --json``."""

    source: str
    output: str
    bytes_before: int
    bytes_after: int
    ema: str
    ema_tensors_used: int
    dtype: str
    vae: str
    tensors_written: int
    dropped: dict[str, int]
    position_ids_fixed: list[str]
    training_entries_dropped: list[str]
    source_sha256: str
    warnings: list[str]
    #: How many tensors were written in each type ({"F8_E4M3": 300, "F16": 500}).
    tensors_by_dtype: dict[str, int] = field(default_factory=dict)
    #: With --dtype fp8: the values clamped to ±448 (``Fp8Clipping.to_dict``); None for other types.
    fp8_clipping: dict[str, Any] | None = None

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_saved": self.bytes_saved}


def position_ids_broken(tensor: Any) -> bool:
    """Whether a CLIP position_ids buffer is anything but the integers 0..n-1."""
    import torch

    expected = torch.arange(tensor.shape[-1], dtype=torch.float64).expand(tensor.shape)
    return tensor.is_floating_point() or not torch.equal(tensor.to(torch.float64), expected)


def plan_prune(model: ModelFile, detection: Detection, options: PruneOptions, vae_model: ModelFile | None = None,
               broken_position_ids: set[str] | None = None) -> PrunePlan:
    """Decide, from tensor descriptions alone, what ``prune`` writes for ``model``."""
    names = list(model.tensors)
    by_component = {name: comp.component_of(name) for name in names}
    has_ema = any(c == comp.EMA for c in by_component.values())
    is_checkpoint = detection.kind == "checkpoint"
    ema = options.ema or ("use" if has_ema else "drop")
    if options.ema == "use" and not has_ema:
        raise UsageError(f"{model.path.name} has no EMA weights to use (try --ema drop)")
    target = target_dtype(options.dtype)
    fp8 = target == FP8
    if fp8:
        _check_fp8_applies(model, detection, by_component)
    # Under fp8 only the diffusion model's matrices are fp8; every other float is 16 bit.
    companion = FP8_COMPANION if fp8 else target
    vae_target = "F32" if options.vae_dtype == "fp32" else companion
    plan = PrunePlan([], ema="none" if not has_ema else {"use": "used", "drop": "dropped", "keep": "kept"}[ema])

    if options.vae == "bake" and not is_checkpoint:
        raise UsageError(f"{model.path.name} is a {detection.kind}, not a checkpoint: a VAE can only be baked into a checkpoint")
    drop_vae = options.vae in ("drop", "bake") and is_checkpoint

    def drop(reason: str) -> None:
        plan.dropped[reason] = plan.dropped.get(reason, 0) + 1

    for name in names:
        info = model.tensors[name]
        component = by_component[name]
        if not is_checkpoint and component in (comp.EMA, comp.DDPM_BUFFERS):
            component = comp.UNKNOWN  # a bare name like "betas" in a LoRA is just a tensor
        if component == comp.EMA and ema != "keep":
            drop("ema")
            continue
        if component == comp.TRAINING and not options.keep_training_state:
            drop("training")
            continue
        if component == comp.VAE and drop_vae:
            drop("vae")
            continue
        source = name
        if component == comp.UNET and ema == "use" and has_ema:
            ema_name = comp.ema_key_for(name)
            if ema_name in model.tensors:
                if model.tensors[ema_name].shape != info.shape:
                    raise BadInputError(f"{model.path.name}: EMA tensor {ema_name} has shape "
                                        f"{model.tensors[ema_name].shape}, {name} has {info.shape}")
                source = ema_name
                plan.ema_tensors_used += 1
        if name in comp.POSITION_ID_KEYS:
            # Position ids are indices: never cast; rewritten as int64 0..n-1 when repaired.
            if broken_position_ids and name in broken_position_ids and options.fix_clip:
                plan.position_ids_fixed.append(name)
                plan.tensors.append(PlannedTensor(name, name, "I64", info.shape, fix="position_ids"))
            else:
                plan.tensors.append(PlannedTensor(name, name, info.dtype_name, info.shape))
            continue
        if component == comp.DDPM_BUFFERS:
            dtype = info.dtype_name  # the noise schedule keeps its precision
        elif component == comp.VAE:
            dtype = output_dtype(info.dtype_name, vae_target)
        else:
            wanted = target if fp8 and component == comp.UNET and fp8_tensor(name, tuple(info.shape)) else companion
            dtype = output_dtype(model.tensors[source].dtype_name, wanted)
        plan.tensors.append(PlannedTensor(name, source, dtype, info.shape))

    if has_ema and ema == "use":
        unet_count = sum(1 for c in by_component.values() if c == comp.UNET)
        if plan.ema_tensors_used < unet_count:
            plan.warnings.append(f"{unet_count - plan.ema_tensors_used} of {unet_count} UNet tensors have no EMA copy; "
                                 "their regular weights were used")
    if vae_model is not None:
        plan.tensors.extend(_baked_vae(model, vae_model, vae_target, _vae_prefix(model, detection)))
    if broken_position_ids and not options.fix_clip:
        plan.warnings.append("CLIP position_ids are broken (not 0..76); --fix-clip repairs them")
    if is_checkpoint and detection.base_model == "sdxl" and options.vae != "drop" and vae_target == "F16":
        plan.warnings.append("SDXL's VAE gives NaN (black images) in fp16 unless it is an fp16-fixed VAE; "
                             "--vae-dtype fp32 keeps it in full precision")
    return plan


# "other" may still hold a recognisable diffusion model; the names decide then.
_FP8_KINDS = ("checkpoint", "diffusion-model", "other")


def _check_fp8_applies(model: ModelFile, detection: Detection, by_component: dict[str, str]) -> None:
    """fp8 is for a checkpoint's or diffusion-model file's diffusion weights; anything else is refused."""
    if detection.kind not in _FP8_KINDS:
        raise UsageError(f"{model.path.name} is a {detection.kind}: --dtype fp8 is for checkpoints and diffusion "
                         "models (use --dtype fp16 or bf16)")
    if comp.UNET not in by_component.values():
        raise UsageError(f"{model.path.name} has no diffusion model (UNet or transformer) weights: --dtype fp8 stores "
                         "only those in fp8 (use --dtype fp16 or bf16)")


def _vae_prefix(model: ModelFile, detection: Detection) -> str:
    """Where a checkpoint keeps its VAE: ``vae.`` in ComfyUI's Flux files (its loader reads only that), else
    ``first_stage_model.``."""
    if any(name.startswith("vae.") for name in model.tensors) or detection.base_model == "flux1":
        return "vae."
    return "first_stage_model."


def _baked_vae(model: ModelFile, vae_model: ModelFile, vae_target: str | None, prefix: str) -> list[PlannedTensor]:
    """The VAE file's weights under the checkpoint's VAE names (``prefix`` + LDM names)."""
    # The discriminator and loss of a VAE training checkpoint are not the VAE.
    canonical = {name: comp.canonical_key(name) for name in vae_model.tensors if comp.component_of(name) == comp.VAE}
    if is_diffusers_vae(canonical.values()):  # e.g. a Hub diffusion_pytorch_model.safetensors
        original = ldm_vae_names(canonical.values())
        canonical = {name: original[key] for name, key in canonical.items()}
    planned = []
    for name, key in canonical.items():
        info = vae_model.tensors[name]
        planned.append(PlannedTensor(prefix + key, name, output_dtype(info.dtype_name, vae_target),
                                     ldm_vae_shape(key, tuple(info.shape)), from_vae_file=True))
    if not planned:
        raise BadInputError(f"{vae_model.path.name} holds no VAE weights")
    existing = {n: i.shape for n, i in model.tensors.items() if comp.component_of(n) == comp.VAE}
    if existing:
        incoming = {t.name: t.shape for t in planned}
        if incoming != existing:
            differing = sorted(set(incoming) ^ set(existing)) or sorted(
                n for n in incoming if incoming[n] != existing[n])
            raise BadInputError(f"{vae_model.path.name} does not fit {model.path.name}'s VAE "
                                f"(first difference: {differing[0]})")
    return planned


def default_output(src: Path) -> Path:
    """``model.ckpt`` -> ``model-pruned.safetensors`` beside it."""
    return src.with_name(f"{src.stem}-pruned.safetensors")


def training_entries(model: ModelFile) -> list[str]:
    """Top-level pickle entries only training resumes from (optimizer state, schedulers, callbacks)."""
    names = [entry.split(" (", 1)[0] for entry in model.report.dropped] + list(model.report.extras)
    return [name for name in names if name.split(".", 1)[0] in comp.TRAINING_PREFIXES]


def find_broken_position_ids(model: ModelFile) -> set[str]:
    """The CLIP position_ids buffers in ``model`` that are not exactly 0..n-1."""
    return {name for name in comp.POSITION_ID_KEYS if name in model.tensors and position_ids_broken(model.load(name))}


def prune(src: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
          options: PruneOptions = PruneOptions(), progress: Progress = NULL_PROGRESS, *,
          overwrite: bool = False, source_sha256: str | None = None) -> PruneReport:
    """Write the inference-only ``.safetensors`` of ``src`` to ``out`` (default ``<stem>-pruned.safetensors``).

    An existing ``out`` is replaced only with ``overwrite``, and never when it is ``src``;
    ``source_sha256`` skips hashing the source when the caller knows it (the catalog does).
    """
    src_path = Path(src)
    if src_path.is_dir():
        raise UsageError(f"{src_path} is a folder; prune works on single model files")
    out_path = Path(out) if out is not None else default_output(src_path)
    new_folder = out is not None and str(out).endswith(("/", os.sep)) and not out_path.exists()
    if out is not None and (out_path.is_dir() or new_folder):  # "-o models/": the default name in that folder
        out_path = out_path / default_output(src_path).name
    if out_path.suffix != ".safetensors":
        raise UsageError(f"{out_path}: prune writes .safetensors; give the output that extension")
    if out_path.exists() and src_path.exists() and os.path.samefile(src_path, out_path):
        raise UsageError(f"{out_path} is the input file; prune never overwrites its input (choose another -o)")
    if out_path.exists() and not overwrite:
        raise UsageError(f"{out_path} already exists (use --overwrite to replace it)")
    with reporting_stop(lambda: f"no output written ({out_path.name})"), contextlib.ExitStack() as stack:
        check_cancelled(progress)
        model = stack.enter_context(open_model(src_path, limits=replace(DEFAULT_LIMITS,
                                                                       allow_expansion=options.allow_expansion)))
        detection = detect(model.tensors, model.metadata, sidecar_config=read_sidecar_config(src_path))
        if detection.kind == "embedding":
            raise UsageError(embedding_refusal(src_path))
        vae_model = stack.enter_context(open_model(options.vae_file)) if options.vae == "bake" else None
        broken = find_broken_position_ids(model)
        check_cancelled(progress)  # opening and planning a big checkpoint reports nothing
        plan = plan_prune(model, detection, options, vae_model, broken)
        if not plan.tensors:
            raise BadInputError(f"{src_path.name}: nothing would be left after pruning")

        sha = BackgroundSha256(src_path, source_sha256, progress)
        target = target_dtype(options.dtype)
        clipping = Fp8Clipping()
        specs = [_spec(model, vae_model, planned, options.force, clipping) for planned in plan.tensors]
        metadata: dict[str, Any] = output_metadata(model, detection, options, plan)
        metadata[SOURCE_SHA256_KEY] = DeferredValue(64, sha.result)
        training_dropped = training_entries(model)
        if options.keep_training_state and training_dropped:
            plan.warnings.append("optimizer and scheduler state cannot be stored in .safetensors and was left out: "
                                 + ", ".join(training_dropped))
        if new_folder:
            out_path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(out_path, specs, metadata, progress, overwrite=overwrite, source_digest=sha)
    if clipping.total:
        largest = max(clipping.max_abs.values())
        plan.warnings.append(f"{clipping.total} value(s) in {len(clipping.counts)} tensor(s) lay beyond fp8's ±448 "
                             f"and were clamped to it (largest magnitude {largest:g})")
    return PruneReport(
        source=str(src_path), output=str(out_path), bytes_before=model.size, bytes_after=out_path.stat().st_size,
        ema=plan.ema, ema_tensors_used=plan.ema_tensors_used, dtype=options.dtype if target else "keep",
        vae=vae_outcome(model, detection, options),
        tensors_written=len(plan.tensors), dropped=plan.dropped, position_ids_fixed=plan.position_ids_fixed,
        training_entries_dropped=training_dropped,
        source_sha256=sha.result(), warnings=plan.warnings,
        tensors_by_dtype=dict(Counter(planned.dtype for planned in plan.tensors)),
        fp8_clipping=clipping.to_dict() if target == FP8 else None,
    )


def embedding_refusal(path: Path) -> str:
    """Why prune does not take an embedding, and what to do instead."""
    advice = (f"; to turn it into .safetensors use sdhub convert {path.name} --delete-original"
              if path.suffix.lower() != ".safetensors" else "")
    return (f"{path.name} is a textual-inversion embedding: there is nothing to prune in it (no EMA, training "
            "state or VAE), and a second copy in embeddings/ would be loaded by A1111 as another embedding" + advice)


def vae_outcome(model: ModelFile, detection: Detection, options: PruneOptions) -> str:
    """What prune did with the VAE, as the report says it: kept, dropped, baked from FILE, or none (no VAE)."""
    if options.vae == "bake":
        return f"baked from {options.vae_file}"
    if detection.kind == "vae":
        return "kept"
    if detection.kind != "checkpoint" or not any(comp.component_of(name) == comp.VAE for name in model.tensors):
        return "none"
    return {"keep": "kept", "drop": "dropped"}[options.vae]


def output_metadata(model: ModelFile, detection: Detection, options: PruneOptions, plan: PrunePlan) -> dict[str, str]:
    """The pruned file's ``__metadata__``: the source's, plus what sdhub did (the source hash is added at write time)."""
    metadata = dict(model.metadata)
    metadata.setdefault("format", "pt")
    metadata["sdhub.source_file"] = model.path.name
    vae = f"bake:{Path(options.vae_file).name}" if options.vae == "bake" and options.vae_file else options.vae
    metadata["sdhub.pruned"] = json.dumps({
        "ema": plan.ema, "dtype": options.dtype, "vae": vae, "vae_dtype": options.vae_dtype,
        "fix_clip": options.fix_clip, "training_state": options.keep_training_state,
    }, sort_keys=True)
    if detection.architecture == "sd2-v":
        metadata[PREDICTION_METADATA_KEY] = "v"
    if options.keep_training_state and model.report.extras:
        metadata["sdhub.training_extras"] = json.dumps(model.report.extras, sort_keys=True, default=str)
    return metadata


def _spec(model: ModelFile, vae_model: ModelFile | None, planned: PlannedTensor, force: bool,
          clipping: Fp8Clipping | None = None) -> TensorSpec:
    if planned.fix == "position_ids":
        def arange() -> Any:
            import torch

            return torch.arange(planned.shape[-1], dtype=torch.int64).expand(planned.shape).contiguous()

        return TensorSpec(planned.name, "I64", planned.shape, producer=arange)
    source_file = vae_model if planned.from_vae_file else model
    source_dtype = source_file.tensors[planned.source].dtype_name
    if source_dtype == planned.dtype:
        return source_file.spec(planned.source, out_name=planned.name, out_shape=planned.shape)

    def cast(chunk: Any) -> Any:
        return cast_tensor(chunk, planned.dtype, name=planned.source, force=force, source_file=source_file.path.name,
                           clipping=clipping)

    return source_file.spec(planned.source, planned.dtype, cast, out_name=planned.name, out_shape=planned.shape)
