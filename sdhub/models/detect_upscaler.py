"""Image upscalers (ESRGAN, RealESRGAN, SwinIR, DAT, HAT and the rest): architecture and scale, by spandrel.

spandrel (the library ComfyUI uses) knows each architecture's key layout and how its hyperparameters
follow from the shapes. It is handed tensors that hold no weights: "meta" tensors of the right shapes
(no memory at all), built once more with the number sequences a constructor reads back on the CPU
(Swin-style drop-path rates); an architecture that still needs real numbers (DAT reads its window
split from a bias table, rebuilt here from the shapes) gets zero-filled tensors, up to
``MAX_PARAMETERS``. Either way only names and shapes decide, so a real-size header is told apart the
same as a file, and nothing in a file is ever loaded by spandrel or torch.load.

spandrel imports torchvision for two architectures sdhub never runs (LaMa inpainting, RestoreFormer);
where torchvision is missing or cannot load (a CUDA build beside a CPU torch), those two names are
stood in for while spandrel is imported, and removed again.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
import types
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from sdhub.models.detection import Detection, shape_of as _shape

#: Above this many parameters (400 MB of fp32 zeros, as much again for the model built from them) an
#: architecture that cannot be built from shapes alone is not built: the file is still an upscaler, its
#: scale is left unknown. Published DAT/SwinIR/HAT models hold 10-40 million.
MAX_PARAMETERS = 100_000_000
#: Wrappers training tools save upscalers under (BasicSR's params / params_ema, plain state_dict...),
#: flattened by the safe reader into name prefixes.
_WRAPPER_PREFIXES = ("params_ema.", "params-ema.", "params.", "model_state_dict.", "state_dict.", "netG.", "module.")
#: spandrel purposes that are upscalers (x1 "Restoration" models live in the same folders).
_UPSCALER_PURPOSES = {"SR": "super-resolution", "Restoration": "restoration (x1: denoise, deblur, dejpeg...)"}
_LOCK = threading.Lock()  # building models is memory-bound: one at a time across scan threads
_SPANDREL: Any = None
_SPANDREL_MISSING: str | None = None
_NUMBER_SEQUENCES = (torch.linspace, torch.logspace)
_TORCHVISION_STAND_INS = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def detect_upscaler(tensors: Mapping[str, Any]) -> Detection | None:
    """An upscaler verdict (kind ``upscaler``, ``variant`` the architecture, ``details['scale']``), or None."""
    shapes = _unwrapped(tensors)
    if not shapes:
        return None
    spandrel = _spandrel()
    if spandrel is None:
        return _by_names(shapes)
    descriptor, how = _describe(spandrel, shapes)
    if descriptor is None:
        return None if how is None else Detection("upscaler", evidence=[how])
    purpose = str(descriptor.purpose)
    architecture = str(descriptor.architecture.name)
    details: dict[str, Any] = {"scale": int(descriptor.scale), "purpose": purpose,
                               "input_channels": int(descriptor.input_channels),
                               "output_channels": int(descriptor.output_channels),
                               "spandrel_id": str(descriptor.architecture.id)}
    if descriptor.tags:
        details["tags"] = [str(tag) for tag in descriptor.tags]
    evidence = [f"spandrel recognises the {architecture} layout ({how}): x{descriptor.scale}, "
                f"{_UPSCALER_PURPOSES.get(purpose, purpose)}"]
    if purpose not in _UPSCALER_PURPOSES:
        # Face restorers and inpainting models share the layout family but are not upscalers.
        return Detection("other", variant=architecture, evidence=evidence + [f"a {purpose} model, not an upscaler"],
                         details=details)
    return Detection("upscaler", variant=architecture, evidence=evidence, details=details)


def _unwrapped(tensors: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return strip_wrapper_prefixes({name: _shape(info) for name, info in tensors.items()})


def strip_wrapper_prefixes(entries: Mapping[str, Any]) -> dict[str, Any]:
    """``entries`` with the training tools' wrapper prefix (``params_ema.``, ``module.``...) taken off
    the names, when every name has it."""
    result = dict(entries)
    for prefix in _WRAPPER_PREFIXES:
        if result and all(name.startswith(prefix) for name in result):
            result = {name[len(prefix):]: value for name, value in result.items()}
    return result


def _describe(spandrel: Any, shapes: dict[str, tuple[int, ...]]) -> tuple[Any, str | None]:
    """spandrel's descriptor and how it was built; (None, None) when no architecture matches."""
    registry = spandrel.MAIN_REGISTRY
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            meta = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
            if not any(support.detect(meta) for support in registry.architectures("detection")):
                return None, None
        except Exception:  # noqa: BLE001 -- shapes no model has (spandrel's checks index into them)
            return None, None
        for numbers_on_cpu in (False, True):
            try:
                with torch.device("meta"), (_NumbersOnCpu() if numbers_on_cpu else contextlib.nullcontext()):
                    return registry.load(meta), "from shapes"
            except Exception:  # noqa: BLE001 -- some architectures need real numbers to be built; retried below
                pass
        parameters = sum(_numel(shape) for shape in shapes.values())
        if parameters > MAX_PARAMETERS:
            return None, (f"an upscaler layout spandrel knows, but at {parameters:,} parameters too large to build "
                          f"for its scale (limit {MAX_PARAMETERS:,})")
        zeros = {name: _zeros_or_biases(name, shape, shapes) for name, shape in shapes.items()}
        try:
            return registry.load(zeros), "from shapes, built with zero weights"
        except Exception as error:  # noqa: BLE001 -- spandrel raises plain errors for shapes it cannot place
            message = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            return None, f"spandrel knows the key layout but cannot place its shapes: {message}"


class _NumbersOnCpu(TorchFunctionMode):
    """Inside a meta-device build, makes the number sequences a constructor reads back (Swin-style
    drop-path rates: ``torch.linspace(...)`` then ``.item()``) real CPU tensors; all else stays meta."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _NUMBER_SEQUENCES and kwargs.get("device") is None:
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


def _zeros_or_biases(name: str, shape: tuple[int, ...], shapes: Mapping[str, tuple[int, ...]]) -> Any:
    biases = _position_biases(name, shape, shapes)
    return torch.zeros(shape) if biases is None else biases


def _position_biases(name: str, shape: tuple[int, ...], shapes: Mapping[str, tuple[int, ...]]) -> Any:
    """DAT's relative-position bias table, rebuilt from shapes: spandrel reads the window split from its
    last row. A window of H x W gives (2H-1)(2W-1) rows and an index of (HW, HW); published models all
    have H <= W (split sizes 8x16, 8x32), the order shapes cannot tell."""
    if not name.endswith(".rpe_biases") or len(shape) != 2:
        return None
    index = shapes.get(name[: -len("rpe_biases")] + "relative_position_index")
    if index is None or len(index) != 2:
        return None
    area = index[0]
    for height in range(1, int(area ** 0.5) + 1):
        width, rest = divmod(area, height)
        if rest == 0 and (2 * height - 1) * (2 * width - 1) == shape[0]:
            grid = torch.meshgrid(torch.arange(1 - height, height), torch.arange(1 - width, width), indexing="ij")
            return torch.stack(grid).flatten(1).transpose(0, 1).float()
    return None


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _by_names(shapes: Mapping[str, tuple[int, ...]]) -> Detection | None:
    """Without spandrel: the ESRGAN layouts by name, so the kind is still right."""
    names = set(shapes)
    if {"model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"} <= names or \
            {"conv_first.weight", "body.0.rdb1.conv1.weight"} <= names or \
            {"conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight"} <= names:
        return Detection("upscaler", variant="ESRGAN",
                         evidence=["ESRGAN residual-in-residual blocks (RRDB) by name",
                                   f"scale unknown: {_SPANDREL_MISSING}"])
    return None


def spandrel_version() -> str | None:
    """The spandrel version in use, or None when it cannot be imported."""
    spandrel = _spandrel()
    return None if spandrel is None else str(spandrel.__version__)


def _spandrel() -> Any:
    global _SPANDREL, _SPANDREL_MISSING
    if _SPANDREL is not None or _SPANDREL_MISSING is not None:
        return _SPANDREL
    with _LOCK:
        if _SPANDREL is None and _SPANDREL_MISSING is None:
            if importlib.util.find_spec("spandrel") is None:
                _SPANDREL_MISSING = "spandrel is not installed (pip install --no-deps 'spandrel>=0.4.2,<0.5')"
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    stand_ins = _stand_in_torchvision()
                    try:
                        _SPANDREL = importlib.import_module("spandrel")
                    except Exception as error:  # noqa: BLE001 -- any import failure leaves names-only detection
                        _SPANDREL_MISSING = f"spandrel cannot be imported ({type(error).__name__}: {error})"
                    finally:
                        for name in stand_ins:
                            sys.modules.pop(name, None)
    return _SPANDREL


def _stand_in_torchvision() -> list[str]:
    """Put stand-ins for the torchvision names spandrel imports when torchvision cannot be imported."""
    if importlib.util.find_spec("torchvision") is not None:
        try:
            importlib.import_module("torchvision.transforms.functional")
            return []
        except Exception:  # noqa: BLE001 -- a torchvision built for another torch fails in many ways
            for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
                del sys.modules[name]

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not available; sdhub only reads upscalers' layouts")

    modules = {name: types.ModuleType(name) for name in _TORCHVISION_STAND_INS}
    functional = modules["torchvision.transforms.functional"]
    functional.InterpolationMode = type("InterpolationMode", (), {})  # type: ignore[attr-defined]
    functional.rotate = functional.normalize = unavailable  # type: ignore[attr-defined]
    modules["torchvision"].transforms = modules["torchvision.transforms"]  # type: ignore[attr-defined]
    modules["torchvision.transforms"].functional = functional  # type: ignore[attr-defined]
    sys.modules.update(modules)
    return list(modules)
