"""Per-model generation defaults: set them (``sdhub set``), read them for a checkpoint, and lay them under
what the user asked for: an explicit option wins over the model's default, which wins over sdhub's own.

The defaults live in the catalog (``sdhub.catalog.generation_defaults``); a checkpoint the catalog does not
know still has A1111's ``<base>.json`` beside it, whose ``vae`` and ``negative text`` are read as A1111 reads
them. A preferred VAE is a file name as A1111 keeps it (found in the catalog, else in the home's VAE folder),
or ``None``: the checkpoint's baked-in VAE, even when a VAE is named like it beside it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Collection

from sdhub.catalog.generation_defaults import DefaultsUpdate, GenerationDefaults
from sdhub.config import Home
from sdhub.errors import NotFoundError, UsageError
from sdhub.generate.generate import GenerationResult, ResolvedFile, generate, resolve_file
from sdhub.generate.pipeline import GenerationParams
from sdhub.progress import NULL_PROGRESS, Progress

#: A1111's preferred-VAE value for "the checkpoint's own VAE".
BAKED_IN = "None"
#: ``generate``'s ``vae_ref`` that means the baked-in VAE (no VAE file, not even one beside the checkpoint).
BAKED_IN_REF = ""
#: The ``GenerationParams`` field each default fills; ``vae`` is ``generate``'s ``vae_ref``.
PARAM_FIELDS = {"clip_skip": "clip_skip", "sampler": "sampler", "schedule": "schedule_type",
                "cfg_scale": "cfg_scale", "negative": "negative_prompt"}


def set_model_defaults(home: Home, ref: str, *, vae: str | None = None, clip_skip: int | None = None,
                       sampler: str | None = None, schedule: str | None = None, cfg_scale: float | None = None,
                       negative: str | None = None, clear: Collection[str] = ()) -> DefaultsUpdate:
    """Set (and ``clear``) the generation defaults of the checkpoint ``ref``, checked first: the VAE must be a
    VAE file (kept by its file name, as A1111 does) or ``None``, the sampler and schedule A1111's."""
    from sdhub.catalog import Catalog
    from sdhub.generate.samplers import resolve_sampler

    values: dict[str, Any] = {}
    if vae is not None:
        values["vae"] = BAKED_IN if vae.strip().lower() == "none" else resolve_file(home, vae, "vae").path.name
    if sampler is not None or schedule is not None:
        if sampler is None:
            raise UsageError("--schedule goes with --sampler (a schedule type belongs to a sampler)")
        choice = resolve_sampler(sampler, schedule)
        values["sampler"] = choice.label
        if schedule is not None or choice.schedule_type != "Automatic":
            values["schedule"] = choice.schedule_type
        elif "schedule" not in clear:
            clear = [*clear, "schedule"]  # a new sampler without a schedule: its own (Automatic)
    if clip_skip is not None:
        values["clip_skip"] = int(clip_skip)
    if cfg_scale is not None:
        values["cfg_scale"] = float(cfg_scale)
    if negative is not None:
        values["negative"] = negative
    if not values and not clear:
        raise UsageError("give a default to set (--vae, --clip-skip, --sampler, --cfg, --negative) or --clear FIELD")
    if not home.database_path.is_file():
        raise NotFoundError(f"the home {home.root} has no catalog to keep defaults in; run `sdhub scan` first")
    with Catalog(home) as catalog:
        return catalog.set_generation_defaults(ref, values, clear)


def model_defaults(home: Home, model: ResolvedFile) -> GenerationDefaults:
    """The defaults of a checkpoint: the catalog's, else what A1111's ``.json`` beside it says."""
    from sdhub.catalog import Catalog

    if model.sha256 and home.database_path.is_file():
        with Catalog(home) as catalog:
            asset = catalog.get(model.sha256)
        if asset is not None:
            return GenerationDefaults.of(asset)
    return _a1111_json_defaults(model.path)


def _a1111_json_defaults(model_path: Path) -> GenerationDefaults:
    from sdhub.catalog.sidecars import A1111_JSON, sidecar_path

    path = sidecar_path(model_path, A1111_JSON)
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return GenerationDefaults()  # an unreadable sidecar: `sdhub scan` reports it
    if not isinstance(data, dict):
        return GenerationDefaults()
    vae, negative = data.get("vae"), data.get("negative text")
    return GenerationDefaults(
        vae=vae.strip() if isinstance(vae, str) and vae.strip() not in ("", "Automatic") else None,
        negative=negative if isinstance(negative, str) and negative.strip() else None)


def preferred_vae_ref(home: Home, name: str) -> str | None:
    """The ``vae_ref`` for a preferred VAE: ``BAKED_IN_REF`` for ``None``, the catalog's or the VAE folder's file
    of that name, or None when neither has it."""
    from sdhub.catalog import Catalog

    if name == BAKED_IN:
        return BAKED_IN_REF
    if home.database_path.is_file():
        with Catalog(home) as catalog:
            try:
                asset = catalog.find(name)
            except (NotFoundError, UsageError):
                asset = None
        if asset is not None and asset.kind == "vae" and asset.present_files:
            return asset.present_files[0].path
    folder = home.folder("vae")
    found = sorted(folder.rglob(name)) if folder.is_dir() else []
    return str(found[0]) if found else None


def apply_model_defaults(home: Home, params: GenerationParams, defaults: GenerationDefaults,
                         explicit: Collection[str], vae_ref: str | None) -> tuple[GenerationParams, str | None,
                                                                                      list[str]]:
    """``params`` and ``vae_ref`` with the model's defaults where the user gave nothing (``explicit`` names the
    ``GenerationParams`` fields and ``vae`` they gave); sampler and schedule go together. Returns the notes."""
    changes: dict[str, Any] = {}
    used: list[str] = []
    sampler_given = {"sampler", "schedule_type"} & set(explicit)
    for name, param in PARAM_FIELDS.items():
        value = getattr(defaults, name)
        if value is None or param in explicit or (name in ("sampler", "schedule") and sampler_given):
            continue
        changes[param] = value
        used.append(f"{name.replace('_', ' ')} {value}" if name != "negative" else "its negative prompt")
    if defaults.sampler and not sampler_given and defaults.schedule is None:
        changes["schedule_type"] = "Automatic"
    notes = []
    if defaults.vae is not None and vae_ref is None and "vae" not in explicit:
        found = preferred_vae_ref(home, defaults.vae)
        if found is None:
            notes.append(f"the model's preferred VAE {defaults.vae} is not in the catalog or {home.folder('vae')}; "
                         "generated without it")
        else:
            vae_ref = found
            used.append("the baked-in VAE" if found == BAKED_IN_REF else f"VAE {defaults.vae}")
    if used:
        notes.insert(0, "the model's defaults (sdhub set): " + ", ".join(used))
    return replace(params, **changes), vae_ref, notes


def generate_with_defaults(home: Home, model_ref: str | ResolvedFile, params: GenerationParams,
                           progress: Progress = NULL_PROGRESS, *, explicit: Collection[str] = (),
                           vae_ref: str | None = None, **options: Any) -> GenerationResult:
    """``generate`` with the checkpoint's defaults filling what the user did not give (``explicit``)."""
    model = model_ref if isinstance(model_ref, ResolvedFile) else resolve_file(home, model_ref, "checkpoint")
    params, vae_ref, notes = apply_model_defaults(home, params, model_defaults(home, model), explicit, vae_ref)
    result = generate(home, model, params, progress, vae_ref=vae_ref, **options)
    result.notes[:0] = notes
    return result
