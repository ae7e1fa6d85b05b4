"""Write state dicts as real users' files: safetensors, zip and legacy torch pickles; always atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from sdhub.testing.lightning import lightning_pickle

TORCH_FORMATS = ("ckpt", "ckpt-legacy", "pt")
FORMATS = ("safetensors", *TORCH_FORMATS)


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> None:
    """Refuse an ``fmt`` the calling factory function cannot write."""
    if fmt not in allowed:
        raise ValueError(f"unknown fmt {fmt!r}; expected one of {', '.join(allowed)}")


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` in ``path``'s folder, fsync, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would make these files unlike any a user downloads
    try:
        write(Path(temporary))
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A .safetensors file (tensors must be real, contiguous and unshared)."""
    from safetensors.torch import save_file

    return write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def save_pickle(path: Path, obj: Any, *, legacy: bool = False) -> Path:
    """A torch.save file: the zip container, or the pre-1.6 legacy stream with ``legacy=True``."""

    def write(temporary: Path) -> None:
        # Given a file object, torch names the zip's top folder "archive/" (as in released checkpoints)
        # rather than after the temporary file.
        with open(temporary, "wb") as handle:
            torch.save(obj, handle, pickle_module=lightning_pickle, _use_new_zipfile_serialization=not legacy)

    return write_atomically(path, write)


def save_any(path: Path, fmt: str, state: dict[str, torch.Tensor], *, wrapper: dict[str, Any] | None = None,
             metadata: dict[str, str] | None = None) -> Path:
    """Write ``state`` as ``fmt``; torch formats nest it as ``{"state_dict": state, **wrapper}`` given a wrapper."""
    check_format(fmt)
    if fmt == "safetensors":
        if wrapper:
            raise ValueError("safetensors files hold tensors only; training extras need fmt='ckpt' or 'ckpt-legacy'")
        return save_tensors(path, state, metadata)
    obj = {"state_dict": state, **wrapper} if wrapper is not None else state
    return save_pickle(path, obj, legacy=fmt == "ckpt-legacy")


def cast_floats(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors cast to ``dtype``; integer buffers (position ids, counters) kept as they are."""
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def materialize(state: dict[str, torch.Tensor], dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    """Fill 'meta' tensors with seeded small random values in ``dtype``, one tensor at a time."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key in list(state):
        tensor = state.pop(key)
        if tensor.is_meta:
            filled = torch.randn(tensor.shape, generator=generator, dtype=torch.float32).mul_(0.02)
            out[key] = filled if dtype == torch.float32 else filled.to(dtype)
        elif tensor.is_floating_point():
            out[key] = tensor.to(dtype).contiguous()
        else:
            out[key] = tensor.contiguous()
    return out
