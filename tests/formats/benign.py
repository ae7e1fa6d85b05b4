"""Benign checkpoints written with ``torch.save`` itself, with the tensors a faithful conversion must keep."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

try:
    from torch_files import rewrite_data_pkl
except ImportError:  # imported as formats.benign from another test folder
    from formats.torch_files import rewrite_data_pkl


@dataclass
class Benign:
    name: str
    path: Path
    expected: dict[str, torch.Tensor]  # what the output must hold, name for name, bit for bit


def _save(path: Path, obj: Any, legacy: bool) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _dtypes() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "f32": torch.randn(3, 4, generator=g), "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(), "f64": torch.randn(2, generator=g).double(),
        "i64": torch.arange(7), "i32": torch.arange(4, dtype=torch.int32), "i16": torch.arange(3, dtype=torch.int16),
        "i8": torch.tensor([-3, 4], dtype=torch.int8), "u8": torch.tensor([250, 1], dtype=torch.uint8),
        "u16": torch.tensor([65000, 2], dtype=torch.uint16), "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5), "empty": torch.empty(0, 4),
    }


def _views() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    base = torch.randn(6, 8, generator=g)
    column = torch.randn(3, 1, generator=g)
    views = {"transposed": base.t(), "strided": base[:, ::2], "offset": base[2:], "narrow": base.narrow(1, 2, 3),
             "element": base[1, 1], "expanded": column.expand(3, 4), "base": base}
    return views, {k: v.contiguous() for k, v in views.items()}


def _shared() -> dict[str, torch.Tensor]:
    base = torch.arange(10, dtype=torch.float32)
    return {"a": base, "b": base, "c": base[2:5], "d": base.view(2, 5), "tied.weight": base}


def _parameters() -> dict[str, torch.Tensor]:
    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(12, dtype=torch.float32).view(3, 4))
    return {"weight": layer.weight, "bias": torch.nn.Parameter(torch.zeros(3), requires_grad=False)}


def _training_extras() -> dict[str, Any]:
    return {
        "hyper_parameters": argparse.Namespace(lr=1e-4, name="run", betas=(0.9, 0.99)),
        "tags": {"anime", "v1"}, "frozen": frozenset({1, 2}), "shape": torch.Size([2, 3]),
        "device": torch.device("cuda", 0), "cpu": torch.device("cpu"), "dtype": torch.float16,
        "best_score": np.float64(0.25), "steps": np.int64(900), "curve": np.arange(3, dtype=np.float32),
        "epoch": 3, "global_step": 900, "note": b"bytes too",
    }


def write_benign(folder: Path) -> list[Benign]:
    """Every benign case, in the zip and the legacy format."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Benign] = []
    views, views_expected = _views()
    shared = _shared()
    params = _parameters()
    builders: list[tuple[str, Callable[[], Any], dict[str, torch.Tensor]]] = [
        ("dtypes", _dtypes, _dtypes()),
        ("views", lambda: views, views_expected),
        ("shared", lambda: shared, {k: v.contiguous() for k, v in shared.items()}),
        ("parameters", lambda: params, {k: v.detach() for k, v in params.items()}),
        ("training", lambda: {"state_dict": {"model.w": torch.ones(2, 2)}, **_training_extras()},
         {"model.w": torch.ones(2, 2)}),
        ("nested", lambda: {"model": {"encoder": {"w": torch.ones(2)}, "decoder": {"w": torch.zeros(3)}},
                            "optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}}},
         {"encoder.w": torch.ones(2), "decoder.w": torch.zeros(3)}),
        ("module_wrapper", lambda: {"module": {"layer.weight": torch.full((2, 2), 7.0)}, "epoch": 1},
         {"layer.weight": torch.full((2, 2), 7.0)}),
    ]
    for name, build, expected in builders:
        for legacy in (False, True):
            suffix = "pt" if legacy else "ckpt"
            label = f"{name}-{'legacy' if legacy else 'zip'}"
            cases.append(Benign(label, _save(folder / f"{label}.{suffix}", build(), legacy), expected))

    # numpy scalars under numpy 2's module path (what torch.save writes here) and numpy 1's.
    numpy_obj = {"state_dict": {"w": torch.ones(3)}, "score": np.float64(0.5), "count": np.int32(7)}
    zip_new = _save(folder / "numpy-core2-zip.ckpt", numpy_obj, legacy=False)
    cases.append(Benign("numpy-_core-zip", zip_new, {"w": torch.ones(3)}))
    old_names = {b"numpy._core.multiarray\nscalar": b"numpy.core.multiarray\nscalar"}
    cases.append(Benign("numpy-core-zip", rewrite_data_pkl(zip_new, folder / "numpy-core1-zip.ckpt", old_names),
                        {"w": torch.ones(3)}))
    legacy_new = _save(folder / "numpy-core2-legacy.pt", numpy_obj, legacy=True)
    cases.append(Benign("numpy-_core-legacy", legacy_new, {"w": torch.ones(3)}))
    legacy_old = folder / "numpy-core1-legacy.pt"
    data = legacy_new.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in data
    legacy_old.write_bytes(data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    cases.append(Benign("numpy-core-legacy", legacy_old, {"w": torch.ones(3)}))

    # Archives re-written by other tools list their folders too ("archive/", "archive/data/").
    source = _save(folder / "folders-source.ckpt", _shared(), legacy=False)
    expected = {k: v.contiguous() for k, v in _shared().items()}
    cases.append(Benign("folders-zipfile", with_folder_entries(source, folder / "folders-zipfile.ckpt"), expected))
    if shutil.which("zip"):
        cases.append(Benign("folders-zip-cli", rezip_with_cli(source, folder / "folders-zip-cli.ckpt"), expected))
    return cases


def with_folder_entries(source: Path, target: Path) -> Path:
    """``source`` re-written by Python's zipfile with an entry for every folder, before its files."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            parts = info.filename.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth]) + "/"
                if folder not in out.NameToInfo:
                    out.mkdir(folder)
            out.writestr(info.filename, archive.read(info))
    return target


def rezip_with_cli(source: Path, target: Path) -> Path:
    """``source`` unpacked and packed again by Info-ZIP's ``zip -0 -r`` (folders listed, extra fields)."""
    unpacked = target.with_suffix(".unpacked")
    with zipfile.ZipFile(source) as archive:
        archive.extractall(unpacked)
        prefix = archive.namelist()[0].split("/")[0]
    subprocess.run(["zip", "-q", "-0", "-r", str(target.resolve()), prefix], cwd=unpacked, check=True)
    shutil.rmtree(unpacked)
    return target
