"""The public API's own entry points: the calls that are more than one core function taking paths.

``import sdhub`` offers these beside the core functions that already take paths and plain values
(``convert``, ``inspect``, ``hash``, ``scan_pickle``). Each one here accepts a home as a ``Home``,
a folder path or None, and plain keyword choices instead of option objects. The CLI and the TUI
call these, or the one core function each wraps, so a script does exactly what the commands do.

Heavy modules (torch, diffusers, sqlite-utils, requests) are imported inside the functions, so
importing this module costs next to nothing.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, TypeVar

from sdhub import config
from sdhub.config import Home, as_home
from sdhub.errors import UsageError
from sdhub.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from sdhub.catalog.moving import MoveReport
    from sdhub.catalog.records import ScanReport
    from sdhub.generate.generate import GenerationResult
    from sdhub.generate.pipeline import GenerationParams
    from sdhub.generate.reference_tests import ReferenceTestResult
    from sdhub.ops.prune import PruneOptions, PruneReport
    from sdhub.sources.from_image import FromImageReport
    from sdhub.sources.get import GetOptions, GetResult, SyncResult
    from sdhub.sources.get_listing import ListingGetReport
    from sdhub.sources.updates import OutdatedReport, UpdateResult

__all__ = ["HomeLike", "civitai_sync", "generate", "get", "get_from_images", "get_from_listing", "move", "open_home", "outdated", "prune", "scan", "smoke_test",
           "update"]

#: A home as the API takes it: a ``Home``, a home folder's path, or None for the home sdhub would pick.
HomeLike = Home | str | os.PathLike[str] | None

_Choices = TypeVar("_Choices")


def with_choices(base: _Choices, choices: dict[str, Any]) -> _Choices:
    """A copy of the options dataclass ``base`` with ``choices`` set; an unknown name is a usage error."""
    known = {f.name for f in dataclasses.fields(base)}  # type: ignore[arg-type]
    unknown = sorted(set(choices) - known)
    if unknown:
        raise UsageError(f"unknown {type(base).__name__} choice {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted(known))}")
    return dataclasses.replace(base, **choices)  # type: ignore[type-var]


def open_home(path: str | os.PathLike[str] | None = None, *, layout: str | None = None) -> Home:
    """The home at ``path`` (or the one sdhub would pick: ``SDHUB_HOME``, a parent with ``catalog/``,
    the user data dir), resolved without creating anything."""
    return config.open_home(path, layout=layout)


def prune(src: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
          options: PruneOptions | None = None, overwrite: bool = False, progress: Progress = NULL_PROGRESS,
          **choices: Any) -> PruneReport:
    """Write the inference-only ``.safetensors`` of ``src`` (default ``<stem>-pruned.safetensors``).

    ``choices`` are ``PruneOptions`` fields: ``ema`` ("use", "drop", "keep"), ``dtype`` ("fp16",
    "bf16", "fp32", "keep"; default fp16), ``vae`` ("keep", "drop", "bake" with ``vae_file``),
    ``vae_dtype``, ``fix_clip``, ``keep_training_state``, ``force``.
    """
    from sdhub.ops import prune as ops_prune

    chosen = with_choices(options or ops_prune.PruneOptions(), choices)
    return ops_prune.prune(src, out, chosen, progress, overwrite=overwrite)


def scan(home: HomeLike = None, *, full: bool = False, check_values: bool = False,
         progress: Progress = NULL_PROGRESS) -> ScanReport:
    """Bring the home's catalog up to date with its folders (only new or changed files are read)."""
    from sdhub.catalog import Catalog

    with Catalog(as_home(home)) as catalog:
        return catalog.scan(progress, full, check_values=check_values)


def get(ref: str, home: HomeLike = None, *, options: GetOptions | None = None,
        progress: Progress = NULL_PROGRESS, **choices: Any) -> GetResult:
    """Fetch one model (Civitai page or AIR, ``hf:org/repo[/file]``, URL) into the home: verified,
    in its folder, catalogued. ``choices`` are ``GetOptions`` fields (``kind``, ``format``, ``fp``...)."""
    from sdhub.sources import get as sources_get

    return sources_get.get(as_home(home), ref, options=options, progress=progress, **choices)


def get_from_images(images: list[str | os.PathLike[str]], home: HomeLike = None, *, dry_run: bool = False,
                    options: GetOptions | None = None, progress: Progress = NULL_PROGRESS,
                    **choices: Any) -> FromImageReport:
    """Every model the images' metadata names (A1111 infotext hashes, Civitai resources, ComfyUI loaders):
    found in the catalog, else fetched from Civitai by hash or version id (``dry_run``: only said)."""
    from sdhub.sources import from_image
    from sdhub.sources.get import options_from

    chosen = options_from(options, choices) if choices else options
    return from_image.get_from_images(as_home(home), [os.fspath(i) for i in images], dry_run=dry_run,
                                      options=chosen, progress=progress)


def get_from_listing(url: str, home: HomeLike = None, *, pick: list[int] | None = None, everything: bool = False,
                     limit: int = 20, nsfw: bool | None = None, options: GetOptions | None = None,
                     progress: Progress = NULL_PROGRESS, **choices: Any) -> ListingGetReport:
    """Fetch models from a Civitai collection or search page: ``pick`` (numbers as ``civitai_browse`` lists
    them) or ``everything``; each goes through ``get``."""
    from sdhub.sources import get_listing

    return get_listing.get_from_listing(as_home(home), url, pick=pick, everything=everything, limit=limit, nsfw=nsfw,
                                        options=options, progress=progress, **choices)


def move(ref: str, home: HomeLike = None, *, kind: str | None = None,
         to: str | os.PathLike[str] | None = None) -> MoveReport:
    """Move a catalogued model (with its sidecars) into the folder of ``kind`` in the home, or into
    ``to``, and update the catalog; ``kind`` is kept as the user's choice (what ``sdhub mv`` does)."""
    from sdhub.catalog import Catalog

    with Catalog(as_home(home)) as catalog:
        return catalog.move(ref, kind=kind, to=to)


def outdated(home: HomeLike = None, *, progress: Progress = NULL_PROGRESS) -> OutdatedReport:
    """Assets whose Civitai model has a newer version (one still in early access is listed as such)."""
    from sdhub.sources import updates

    return updates.outdated(as_home(home), progress=progress)


def update(ref: str, home: HomeLike = None, *, replace: bool = False, options: GetOptions | None = None,
           progress: Progress = NULL_PROGRESS) -> UpdateResult:
    """Fetch the newest version of an asset's Civitai model; the old file stays unless ``replace``."""
    from sdhub.sources import updates

    return updates.update(as_home(home), ref, replace=replace, options=options, progress=progress)


def civitai_sync(home: HomeLike = None, *, sidecars: bool = True, progress: Progress = NULL_PROGRESS) -> SyncResult:
    """Look up every catalogued asset without Civitai metadata by its SHA-256 and fill it in."""
    from sdhub.sources import get as sources_get

    return sources_get.civitai_sync(as_home(home), sidecars=sidecars, progress=progress)


def generate(model: str | os.PathLike[str], prompt: str | None = None, *, home: HomeLike = None,
             params: GenerationParams | None = None, vae: str | os.PathLike[str] | None = None,
             out_dir: str | os.PathLike[str] | None = None, device: str | None = None, dtype: str | None = None,
             vae_dtype: str | None = None, progress: Progress = NULL_PROGRESS, hires: Any = None,
             img2img: Any = None, **settings: Any) -> GenerationResult:
    """Draw images with ``model`` (a path, catalog name or hash) as A1111 would, and write PNGs with infotext.

    ``hires`` (``sdhub.HiresParams``) adds the hires fix; ``img2img`` (``sdhub.Img2ImgParams``) starts
    from an init image.

    ``settings`` are ``GenerationParams`` fields named as in A1111 (``negative_prompt``, ``steps``,
    ``sampler``, ``cfg_scale``, ``seed``, ``width``, ``height``, ``clip_skip``, ``batch_size``...).
    Images go to ``out_dir``, else the home's ``outputs/``; LoRA tags and embeddings come from the home.
    """
    from sdhub.generate import generate as generation
    from sdhub.generate.pipeline import GenerationParams

    if prompt is not None:
        settings["prompt"] = prompt
    chosen = with_choices(params or GenerationParams(prompt=""), settings)
    return generation.generate(as_home(home), os.fspath(model), chosen, progress,
                               vae_ref=os.fspath(vae) if vae is not None else None, out_dir=out_dir,
                               device=device, dtype=dtype, vae_dtype=vae_dtype, hires=hires, img2img=img2img)


def sd_upscale(image: str | os.PathLike[str], model: str | os.PathLike[str], prompt: str = "", *,
               home: HomeLike = None, scale: float = 2.0, upscaler: str = "None", overlap: int = 64,
               denoising_strength: float = 0.75, tile_size: int | None = None, params: GenerationParams | None = None,
               vae: str | os.PathLike[str] | None = None, out_dir: str | os.PathLike[str] | None = None,
               device: str | None = None, dtype: str | None = None, progress: Progress = NULL_PROGRESS,
               **settings: Any) -> GenerationResult:
    """Enlarge ``image`` as A1111's "SD upscale" script: ``upscaler`` (None, Lanczos, Nearest or an upscaler
    file) by ``scale``, then img2img of overlapping tiles of the model's native size with ``model``.

    ``settings`` are ``GenerationParams`` fields (``steps``, ``sampler``, ``cfg_scale``, ``seed``...).
    """
    from sdhub.generate.pipeline import GenerationParams
    from sdhub.generate.sd_upscale import sd_upscale as run

    settings["prompt"] = prompt
    chosen = with_choices(params or GenerationParams(prompt=""), settings)
    return run(as_home(home), image, os.fspath(model), chosen, scale=scale, upscaler=upscaler, overlap=overlap,
               denoising_strength=denoising_strength, tile_size=tile_size,
               vae_ref=os.fspath(vae) if vae is not None else None, out_dir=out_dir, device=device, dtype=dtype,
               progress=progress)


def smoke_test(model: str | os.PathLike[str], home: HomeLike = None, *, steps: int | None = None,
               size: int | None = None, progress: Progress = NULL_PROGRESS) -> ReferenceTestResult:
    """A quick generation with ``model`` and a verdict on the image (fine, black, washed out...),
    recorded in the home's catalog when the model is catalogued."""
    from sdhub.generate.reference_tests import run_smoke

    return run_smoke(as_home(home), [os.fspath(model)], steps=steps, size=size, progress=progress)[0]
