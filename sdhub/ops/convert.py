"""``convert``: a PyTorch pickle (.ckpt/.pt/.pth/.bin) to ``.safetensors``, without running it.

The source is opened with the safe reader, its weights streamed one tensor at a time into a
temporary file beside the output (contiguous tensors are copied file-to-file, casts run in
chunks), and the source's SHA-256 is computed by a second thread during the copy so the
metadata can record it. Peak memory is bounded by one tensor, not the file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdhub import __version__
from sdhub.errors import Interrupted, MissingFileError, SdhubError, UsageError, VerificationError
from sdhub.formats import DeferredValue, ModelFile, TensorSpec, open_model, write_safetensors
from sdhub.formats.dtypes import dtype_name, torch_dtype
from sdhub.formats.safe_unpickler import DEFAULT_LIMITS
from sdhub.ops.cast import output_dtype
from sdhub.ops.hashing import BackgroundSha256
from sdhub.progress import NULL_PROGRESS, Progress, check_cancelled, interrupted

#: Extensions of the pickle files a folder conversion picks up.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
DTYPE_CHOICES = ("keep", "fp16", "bf16", "fp32")


@dataclass
class ConvertReport:
    """What one conversion did; ``to_dict`` is the ``--json`` output."""

    source: str
    output: str
    status: str                      # converted | skipped | failed
    source_format: str = ""
    tensors: int = 0
    bytes_written: int = 0
    dtype: str = "keep"
    source_sha256: str | None = None
    verified: bool = False
    deleted_original: bool = False
    embedding_layout: bool = False
    placeholders: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    reason: str = ""
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "output": self.output, "status": self.status,
            "source_format": self.source_format, "tensors": self.tensors, "bytes_written": self.bytes_written,
            "dtype": self.dtype, "source_sha256": self.source_sha256, "verified": self.verified,
            "deleted_original": self.deleted_original, "embedding_layout": self.embedding_layout,
            "placeholders": self.placeholders, "dropped": self.dropped, "extras": _plain(self.extras),
            "seconds": round(self.seconds, 3), "reason": self.reason,
        }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else repr(v) for k, v in values.items()}


def embedding_metadata(extras: dict[str, Any], taken: dict[str, Any]) -> dict[str, str]:
    """An A1111 embedding's scalar entries (``name``, ``step``, ``sd_checkpoint``, ``sd_checkpoint_name``...)
    as safetensors metadata under the keys A1111 pickles them with; text, as safetensors requires;
    entries A1111 left empty (None) are left out, and sdhub's own keys are never replaced."""
    return {str(key): str(value) for key, value in extras.items()
            if value is not None and isinstance(value, (str, int, float, bool)) and key not in taken}


def default_output(source: Path) -> Path:
    """Where ``convert`` writes by default: the source's name with ``.safetensors``, beside it."""
    return source.with_suffix(".safetensors")


def already_safetensors(source: Path, dtype: str) -> str:
    """What to tell a user who asks to convert a file that is already .safetensors."""
    if dtype == "keep":
        return (f"{source.name} is already .safetensors: nothing to convert. To change its precision add "
                f"--dtype fp16 -o {source.stem}-fp16.safetensors; to drop EMA and training state use sdhub prune")
    return (f"{source.name} is already .safetensors; to store it as {dtype}, name the new file: "
            f"-o {source.stem}-{dtype}.safetensors")


def convert(src: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, dtype: str = "keep",
            overwrite: bool = False, verify: bool = False, delete_original: bool = False,
            progress: Progress = NULL_PROGRESS, allow_expansion: bool = False) -> ConvertReport:
    """Convert one model file to ``.safetensors`` and return what was done.

    ``allow_expansion`` accepts tensors that describe far more bytes than the file stores
    (stride-0 views, one storage under many names), so the output may be much larger.
    """
    started = time.monotonic()
    source = Path(src)
    if dtype == "fp8":
        raise UsageError("convert keeps every part of a model in one type; fp8 is for a checkpoint's diffusion "
                         f"model only: sdhub prune {source.name} --dtype fp8")
    if dtype not in DTYPE_CHOICES:
        raise UsageError(f"unknown --dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    if not source.exists():
        raise MissingFileError(f"{source}: no such file")
    output = Path(out) if out is not None else default_output(source)
    if output.is_dir():
        output = output / default_output(source).name
    if output.resolve() == source.resolve():
        if source.suffix.lower() == ".safetensors":
            raise UsageError(already_safetensors(source, dtype))
        raise UsageError(f"{source} would be overwritten by its own conversion; choose another output with -o")
    if output.exists() and not overwrite:
        raise UsageError(f"{output} already exists (use --overwrite to replace it)")
    if not output.parent.is_dir():
        raise UsageError(f"{output.parent} is not a folder")
    target = None if dtype == "keep" else dtype_name(dtype)

    try:
        with open_model(source, limits=replace(DEFAULT_LIMITS, allow_expansion=allow_expansion)) as model:
            if model.format == "safetensors" and target is None:
                raise UsageError(already_safetensors(source, dtype))
            specs = _specs(model, target)
            digest = BackgroundSha256(source, progress=progress)
            metadata = {
                "format": "pt",
                "sdhub.converted_from": source.name,
                "sdhub.source_format": model.format,
                "sdhub.source_sha256": DeferredValue(64, digest.result),
                "sdhub.version": __version__,
            }
            if target is not None:
                metadata["sdhub.dtype"] = target
            if model.embedding_layout:
                metadata.update(embedding_metadata(model.report.extras, metadata))
            write_safetensors(output, specs, metadata, progress, overwrite=overwrite, source_digest=digest)
            sha256 = digest.result()
            report = ConvertReport(
                source=str(source), output=str(output), status="converted", source_format=model.format,
                tensors=len(specs), bytes_written=output.stat().st_size, dtype=dtype, source_sha256=sha256,
                embedding_layout=model.embedding_layout, placeholders=model.report.placeholders,
                dropped=model.report.dropped, extras=model.report.extras,
            )
            if verify:
                try:
                    verify_conversion(model, output, target, progress)
                except BaseException:
                    output.unlink(missing_ok=True)
                    raise
                report.verified = True
    except (KeyboardInterrupt, Interrupted) as stop:
        raise interrupted(stop, f"no output written ({output.name})") from None
    if delete_original:
        source.unlink()
        report.deleted_original = True
    report.seconds = time.monotonic() - started
    return report


def _specs(model: ModelFile, target: str | None) -> list[TensorSpec]:
    specs = []
    buffers: dict[str, Any] = {}  # shared by the chunked casts of contiguous tensors
    for name, info in model.tensors.items():
        wanted = output_dtype(info.dtype_name, target)
        if wanted == info.dtype_name:
            specs.append(model.spec(name))
        else:
            chunked = model.raw_source(name) is not None
            cast = _caster(wanted, name, model.path.name, buffers if chunked else None)
            specs.append(model.spec(name, wanted, transform=cast))
    return specs


def _caster(target: str, name: str, source_file: str, buffers: dict[str, Any] | None = None):
    """An elementwise cast for one tensor; with ``buffers`` it casts into one reused buffer per dtype.

    Reuse is safe because the writer consumes each result before asking for the next.

    The common case (every value in range) is one min/max pass and one conversion; anything
    else (an overflow, a NaN) goes through ``sdhub.ops.cast.cast_tensor``, which decides.
    """
    def cast(tensor: Any) -> Any:
        import torch

        from sdhub.ops.cast import cast_tensor, fits_fp16

        dtype = torch_dtype(target)
        if tensor.numel() == 0 or not tensor.is_floating_point():
            return cast_tensor(tensor, target, name=name, source_file=source_file)
        if dtype == torch.float16 and tensor.dtype != torch.float16 and not fits_fp16(tensor):
            return cast_tensor(tensor, target, name=name, source_file=source_file)
        if buffers is None:
            return tensor.to(dtype)
        buffer = buffers.get(target)
        if buffer is None or buffer.numel() < tensor.numel():
            buffer = buffers[target] = torch.empty(tensor.numel(), dtype=dtype)
        out = buffer[: tensor.numel()].view(tensor.shape)
        out.copy_(tensor)
        return out

    return cast


def verify_conversion(model: ModelFile, output: Path, target: str | None, progress: Progress = NULL_PROGRESS) -> None:
    """Re-read ``output`` and check every tensor equals the source's (cast as asked), bit for bit.

    The source is read a second time by ``ReferenceReading`` (Python's unpickler with torch.load's
    storage rules, or the safetensors library), not by the reader that converted it, so a
    mistake of that reader shows as a difference instead of agreeing with itself.
    """
    import torch

    from sdhub.formats.reference_reader import ReferenceReading

    with open_model(output) as written, ReferenceReading(model.path) as reference:
        if not set(written.tensors) == set(model.tensors) == set(reference.names):
            missing = sorted((set(model.tensors) | set(reference.names)) ^ set(written.tensors))
            raise VerificationError(f"{output.name}: tensor names differ from the source ({', '.join(missing[:3])})")
        task = progress.task(f"Verifying {output.name}", total=len(model.tensors), unit="tensors")
        try:
            for name in model.tensors:
                expected = reference.load(name)
                wanted = output_dtype(model.tensors[name].dtype_name, target)
                if wanted != model.tensors[name].dtype_name:
                    expected = _caster(wanted, name, model.path.name)(expected)
                actual = written.load(name)
                if (actual.dtype != expected.dtype or actual.shape != expected.shape
                        or not torch.equal(_bits(actual), _bits(expected))):
                    raise VerificationError(f"{output.name}: tensor {name!r} differs from the source")
                task.advance(1)
        finally:
            task.finish()


def _bits(tensor: Any) -> Any:
    import torch

    flat = tensor.contiguous().reshape(-1)
    return flat.view(torch.uint8) if flat.numel() else flat


def find_pickles(folder: Path) -> list[Path]:
    """The pickle model files directly in ``folder`` and below, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES
                  and not p.name.startswith("."))


def convert_paths(paths: list[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None,
                  dtype: str = "keep", overwrite: bool = False, verify: bool = False,
                  delete_original: bool = False, progress: Progress = NULL_PROGRESS,
                  allow_expansion: bool = False) -> list[ConvertReport]:
    """Convert files and folders; a folder converts every pickle in it, skipping converted ones."""
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and str(out).endswith(("/", os.sep)):
        out_dir.mkdir(parents=True, exist_ok=True)  # "-o converted/" names a folder even for one file
    jobs: list[tuple[Path, Path | None, bool]] = []  # (source, output, from a folder)
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in find_pickles(path):
                target = None
                if out_dir is not None:
                    target = out_dir / found.relative_to(path).with_suffix(".safetensors")
                jobs.append((found, target, True))
        elif path.exists():
            jobs.append((path, out_dir, False))
        else:
            raise MissingFileError(f"{path}: no such file or folder")
    if out_dir is not None and len(jobs) > 1 and not out_dir.is_dir():
        if out_dir.exists():
            raise UsageError(f"{out_dir} is a file; with several inputs -o must be a folder")
        out_dir.mkdir(parents=True)
    reports = []
    for source, target, from_folder in jobs:
        if target is not None and target.suffix == ".safetensors":
            target.parent.mkdir(parents=True, exist_ok=True)
        final = target if target is not None and not target.is_dir() else (
            (target or source.parent) / default_output(source).name)
        if from_folder and final.exists() and not overwrite:
            reports.append(ConvertReport(str(source), str(final), "skipped", reason="already converted"))
            continue
        try:
            check_cancelled(progress)
            reports.append(convert(source, final, dtype=dtype, overwrite=overwrite, verify=verify,
                                   delete_original=delete_original, progress=progress,
                                   allow_expansion=allow_expansion))
        except (KeyboardInterrupt, Interrupted) as stop:
            converted = [Path(r.output).name for r in reports if r.status == "converted"]
            raise interrupted(stop, f"{len(converted)} of {len(jobs)} files converted before it "
                                    f"({', '.join(converted)})" if converted else "") from None
        except SdhubError as error:
            if len(jobs) == 1:
                raise
            # One refused file in a folder must not stop the others; the caller sees it in the report.
            reports.append(ConvertReport(str(source), str(final), "failed", reason=error.message,
                                         exit_code=error.exit_code))
    return reports

