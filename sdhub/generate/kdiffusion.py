"""k-diffusion's ``sampling`` (and ``external``) modules, loaded without the rest of the package.

A1111 samples with k-diffusion's ``sampling.py``; sdhub runs the same file. The package's
``__init__`` imports its training stack (kornia, clean-fid, wandb, ...) and its ``utils`` imports
torchvision, none of which generation needs and torchvision's PyPI build cannot load beside a CPU
torch. So the two modules are loaded from the installed distribution under a private package name,
with ``utils`` standing in as the one helper they use (``append_dims``). Installed with
``pip install --no-deps k-diffusion`` (see scripts/setup-env and pyproject.toml's ``samplers`` extra).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

import torch

from sdhub.errors import MissingDependencyError

_PACKAGE = "sdhub_k_diffusion"  # private name: a full k-diffusion install stays importable as itself
_LOCK = threading.Lock()
INSTALL_HINT = "pip install --no-deps 'k-diffusion==0.1.1.post1' torchdiffeq"


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Append trailing singleton dimensions until ``x`` has ``target_dims`` (k-diffusion's helper)."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]


def _load(name: str) -> Any:
    full_name = f"{_PACKAGE}.{name}"
    if full_name in sys.modules:
        return sys.modules[full_name]
    spec = importlib.util.find_spec("k_diffusion")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"the k-diffusion samplers are not installed; run: {INSTALL_HINT}")
    if _PACKAGE not in sys.modules:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = list(spec.submodule_search_locations)
        utils = types.ModuleType(f"{_PACKAGE}.utils")
        utils.append_dims = append_dims
        package.utils = utils
        sys.modules[_PACKAGE] = package
        sys.modules[utils.__name__] = utils
    location = next(iter(spec.submodule_search_locations))
    module_spec = importlib.util.spec_from_file_location(full_name, f"{location}/{name}.py")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[full_name] = module
    try:
        module_spec.loader.exec_module(module)
    except ImportError as error:
        del sys.modules[full_name]
        raise MissingDependencyError(f"k-diffusion's {name}.py needs {error.name}, which is not installed; "
                         f"run: {INSTALL_HINT}") from None
    setattr(sys.modules[_PACKAGE], name, module)
    return module


def sampling() -> Any:
    """k-diffusion's ``sampling`` module (samplers, Karras/exponential schedules, Brownian noise)."""
    with _LOCK:
        return _load("sampling")


def external() -> Any:
    """k-diffusion's ``external`` module (CompVisDenoiser and its discrete schedule)."""
    with _LOCK:
        _load("sampling")
        return _load("external")
