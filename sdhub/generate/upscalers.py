"""A1111's upscalers by name: latent modes, plain resamplers and model files (ESRGAN, SwinIR, DAT...).

Latent upscalers ("Latent", "Latent (bicubic antialiased)"...) are ``torch.nn.functional.interpolate``
modes applied to the latents (A1111's ``latent_upscale_modes``). "None", "Lanczos" and "Nearest" resize
pixels. A model upscaler is a file in the home's upscaler folders named by its stem (A1111's name for
it), built by spandrel from tensors sdhub's own safe reader took out of the file (never ``torch.load``),
and run as A1111 1.10 runs it: BGR input in [0, 1], 192-pixel tiles overlapping by 8, blended back, then
repeated (at most three passes) until the image reaches the asked size, and Lanczos-resized to it
rounded down to a multiple of 8.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdhub.errors import BadInputError, MissingDependencyError, NotFoundError

#: A1111's latent upscalers: name -> (torch interpolate mode, antialias).
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
#: A1111's built-in pixel upscalers.
PIXEL_UPSCALERS = ("None", "Lanczos", "Nearest")
#: A1111 1.10's defaults for model upscalers (``ESRGAN_tile``, ``ESRGAN_tile_overlap``).
MODEL_TILE, MODEL_TILE_OVERLAP = 192, 8
UPSCALER_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")


@dataclass(frozen=True)
class LatentUpscaler:
    """A latent upscale mode (no model): the first pass's latents are interpolated."""

    name: str

    @property
    def mode(self) -> str:
        return LATENT_UPSCALE_MODES[self.name][0]

    @property
    def antialias(self) -> bool:
        return LATENT_UPSCALE_MODES[self.name][1]

    def upscale_latents(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Latents interpolated to ``height`` x ``width`` latent pixels."""
        return torch.nn.functional.interpolate(latents, size=(height, width), mode=self.mode,
                                               antialias=self.antialias)


class ImageUpscaler:
    """A pixel upscaler under its A1111 name: "None", "Lanczos", "Nearest" or a model file."""

    def __init__(self, name: str, path: Path | None = None, device: torch.device | str = "cpu") -> None:
        self.name = name
        self.path = path
        self.device = torch.device(device)
        self._model: Any = None

    @property
    def is_model(self) -> bool:
        return self.path is not None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path) if self.path else None}

    def upscale(self, image: Any, scale: float) -> Any:
        """A1111's ``Upscaler.upscale``: up to three passes until ``scale`` is reached, then a Lanczos
        resize to the size rounded down to a multiple of 8."""
        from PIL import Image

        target_width = int((image.width * scale) // 8 * 8)
        target_height = int((image.height * scale) // 8 * 8)
        for _ in range(3):
            if image.width >= target_width and image.height >= target_height and scale != 1:
                break
            before = image.size
            image = self.upscale_once(image, scale)
            if image.size == before:
                break
        if image.size != (target_width, target_height):
            image = image.resize((target_width, target_height), resample=Image.LANCZOS)
        return image

    def upscale_once(self, image: Any, scale: float) -> Any:
        """One pass: the model's own factor, or a resample by ``scale``."""
        from PIL import Image

        if self.name == "None":
            return image
        if self.name in ("Lanczos", "Nearest"):
            resample = Image.LANCZOS if self.name == "Lanczos" else Image.NEAREST
            return image.resize((int(image.width * scale), int(image.height * scale)), resample=resample)
        return self._upscale_with_model(image)

    def _upscale_with_model(self, image: Any) -> Any:
        from sdhub.generate.image_grid import combine_grid, split_grid

        model = self.model()
        grid = split_grid(image.convert("RGB"), MODEL_TILE, MODEL_TILE, MODEL_TILE_OVERLAP)
        factor = 1
        for tile in grid.tiles:
            tile.image = self._run_model(model, tile.image)
            factor = tile.image.width // MODEL_TILE
        return combine_grid(grid.scaled(factor))

    @torch.inference_mode()
    def _run_model(self, model: Any, image: Any) -> Any:
        from PIL import Image

        # A1111 feeds model upscalers BGR and reads BGR back
        array = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1].transpose(2, 0, 1)) / 255
        tensor = torch.from_numpy(array).unsqueeze(0).to(self.device, torch.float32)
        output = model(tensor)[0].float().cpu().clamp_(0, 1).numpy()
        pixels = (255.0 * np.moveaxis(output, 0, 2)).round().astype(np.uint8)[:, :, ::-1]
        return Image.fromarray(np.ascontiguousarray(pixels), "RGB")

    def model(self) -> Any:
        """The spandrel model, built once from the file's tensors."""
        if self._model is None:
            self._model = load_upscaler_model(self.path, self.device)
        return self._model


_MODEL_LOCK = threading.Lock()
_MODEL_CACHE: dict[tuple[str, int, int, str], Any] = {}


def load_upscaler_model(path: Path, device: torch.device | str = "cpu") -> Any:
    """A spandrel image model from ``path``'s tensors (read safely), in eval mode on ``device``."""
    from sdhub.generate.tensor_files import read_tensors
    from sdhub.models.detect_upscaler import _spandrel, strip_wrapper_prefixes

    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, str(device))
    with _MODEL_LOCK:
        if key in _MODEL_CACHE:
            return _MODEL_CACHE[key]
    spandrel = _spandrel()
    if spandrel is None:
        raise MissingDependencyError("model upscalers need spandrel (pip install --no-deps 'spandrel>=0.4.2,<0.5')")
    tensors, _ = read_tensors(path)
    state = strip_wrapper_prefixes(tensors)
    try:
        descriptor = spandrel.MAIN_REGISTRY.load(state)
    except Exception as error:  # noqa: BLE001 -- spandrel raises plain errors for layouts it does not know
        first_line = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise BadInputError(f"{path.name} is not an upscaler spandrel can build: {first_line}") from None
    if str(descriptor.purpose) not in ("SR", "Restoration"):
        raise BadInputError(f"{path.name} is a {descriptor.purpose} model, not an upscaler")
    descriptor.to(device).eval()
    with _MODEL_LOCK:
        _MODEL_CACHE.clear()  # keep one: upscalers can be large
        _MODEL_CACHE[key] = descriptor
    return descriptor


def upscaler_files(home: Any) -> dict[str, Path]:
    """The model upscalers in the home's upscaler folders by A1111 name (the file stem)."""
    found: dict[str, Path] = {}
    for folder in home.candidate_folders("upscaler"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in UPSCALER_SUFFIXES:
                found.setdefault(path.stem, path)
    return found


def find_upscaler(home: Any, name: str, device: torch.device | str = "cpu", *,
                  latent: bool = True) -> LatentUpscaler | ImageUpscaler:
    """The upscaler A1111 calls ``name``: a latent mode, None/Lanczos/Nearest, a file in the home's
    upscaler folders (by stem, any case), a path, or a catalogued upscaler (name or hash)."""
    wanted = name.strip()
    if latent:
        for label in LATENT_UPSCALE_MODES:
            if label.lower() == wanted.lower():
                return LatentUpscaler(label)
    for label in PIXEL_UPSCALERS:
        if label.lower() == wanted.lower():
            return ImageUpscaler(label, device=device)
    files = upscaler_files(home)
    for stem, path in files.items():
        if stem.lower() == wanted.lower():
            return ImageUpscaler(stem, path, device)
    candidate = Path(wanted).expanduser()
    if candidate.is_file():
        return ImageUpscaler(candidate.stem, candidate.absolute(), device)
    if home.database_path.is_file():
        from sdhub.generate.generate import resolve_file

        try:
            resolved = resolve_file(home, wanted, "upscaler")
            return ImageUpscaler(resolved.path.stem, resolved.path, device)
        except NotFoundError:
            pass
    choices = [*(LATENT_UPSCALE_MODES if latent else ()), *PIXEL_UPSCALERS, *files]
    raise NotFoundError(f"unknown upscaler {name!r}; choose one of: {', '.join(choices)}")
