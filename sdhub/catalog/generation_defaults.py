"""A checkpoint's generation defaults (``sdhub set``): kept in the catalog and, where A1111 keeps them, in its
``<base>.json`` user metadata beside the file.

A1111 1.10's checkpoint metadata editor keeps ``description``, ``notes`` and ``vae`` (the preferred VAE:
a file name from its VAE list, ``None`` for the baked-in VAE, ``Automatic`` for no preference); its LoRA
editor's ``negative text`` is where sdhub keeps a checkpoint's default negative prompt too (A1111 keeps
unknown keys). Clip skip, sampler, schedule and CFG live only in the catalog (``assets.generation_defaults``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import sqlite_utils

from sdhub.catalog import store
from sdhub.catalog.db import write_transaction
from sdhub.catalog.records import Asset, json_dict, json_list
from sdhub.catalog.sidecars import set_user_metadata
from sdhub.errors import NotFoundError, UsageError

#: The defaults a user can set, in the order ``show`` lists them.
DEFAULT_FIELDS = ("vae", "clip_skip", "sampler", "schedule", "cfg_scale", "negative")
#: Defaults that are catalog columns (and A1111 ``.json`` keys); the others are keys of ``generation_defaults``.
COLUMNS = {"vae": "preferred_vae", "negative": "negative_text"}
A1111_KEYS = {"vae": "vae", "negative": "negative text"}
#: The kinds a default applies to: checkpoints, and files whose kind the tensors did not tell.
DEFAULTS_KINDS = ("checkpoint", "other")


@dataclass
class GenerationDefaults:
    """What a checkpoint generates with unless told otherwise; None where it has no default."""

    vae: str | None = None
    clip_skip: int | None = None
    sampler: str | None = None
    schedule: str | None = None
    cfg_scale: float | None = None
    negative: str | None = None

    @classmethod
    def of(cls, asset: Asset) -> "GenerationDefaults":
        stored = asset.generation_defaults
        return cls(vae=asset.preferred_vae, negative=asset.negative_text,
                   clip_skip=_int(stored.get("clip_skip")), sampler=stored.get("sampler") or None,
                   schedule=stored.get("schedule") or None, cfg_scale=_float(stored.get("cfg_scale")))

    @property
    def empty(self) -> bool:
        return all(value is None for value in asdict(self).values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DefaultsUpdate:
    """``sdhub set``'s result: the asset, its defaults now, and the A1111 ``.json`` files written."""

    asset: Asset
    defaults: GenerationDefaults
    sidecars: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.asset.name, "sha256": self.asset.sha256, "defaults": self.defaults.to_dict(),
                "sidecars": self.sidecars}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_values(values: Mapping[str, Any], clear: Iterable[str]) -> list[str]:
    """Refuse unknown fields and impossible values (one line each); returns the fields to clear."""
    cleared = [name.strip().replace("-", "_") for name in clear]
    cleared = ["cfg_scale" if name == "cfg" else name for name in cleared]
    for name in [*values, *cleared]:
        if name not in DEFAULT_FIELDS:
            raise UsageError(f"{name!r} is not a generation default; choose from: {', '.join(DEFAULT_FIELDS)}")
    both = set(values) & set(cleared)
    if both:
        raise UsageError(f"{', '.join(sorted(both))}: set or cleared, not both")
    clip_skip = values.get("clip_skip")
    if clip_skip is not None and not 1 <= int(clip_skip) <= 12:
        raise UsageError(f"clip skip is 1 to 12, not {clip_skip}")
    cfg = values.get("cfg_scale")
    if cfg is not None and not 0 < float(cfg) <= 100:
        raise UsageError(f"the CFG scale is above 0 and at most 100, not {cfg}")
    return cleared


def write_generation_defaults(db: sqlite_utils.Database, asset: Asset, values: Mapping[str, Any],
                              clear: Iterable[str] = ()) -> list[str]:
    """Set (``values``) and clear (``clear``) an asset's defaults in the catalog and in the A1111 ``.json`` of
    each copy on disk (the keys A1111 keeps); what the user sets is marked theirs (``user_fields``).
    Returns the ``.json`` files written."""
    cleared = check_values(values, clear)
    if asset.kind not in DEFAULTS_KINDS:
        raise UsageError(f"{asset.name} is a {asset.kind}; generation defaults are for checkpoints")
    with write_transaction(db):
        row = store.asset_row(db, asset_id=asset.id)
        if row is None:
            raise NotFoundError(f"asset {asset.id} was removed meanwhile")
        update: dict[str, Any] = {}
        stored = dict(json_dict(row.get("generation_defaults")))
        mine = json_list(row.get("user_fields"))
        for name in [*values, *cleared]:
            value = values.get(name)
            if name in COLUMNS:
                column = COLUMNS[name]
                update[column] = value
                mine = [c for c in mine if c != column] + ([column] if value is not None else [])
            elif value is None:
                stored.pop(name, None)
            else:
                stored[name] = value
        update["generation_defaults"] = stored
        if mine != json_list(row.get("user_fields")):
            update["user_fields"] = mine
        store.update_asset(db, asset.id, update)
    a1111 = {A1111_KEYS[name]: values.get(name) for name in [*values, *cleared] if name in A1111_KEYS}
    written = []
    if a1111 and not asset.is_folder:  # a diffusers folder has no sidecars
        for record in asset.present_files:
            path = set_user_metadata(record.path, a1111)
            if path is not None:
                written.append(path)
    return written



#: How ``show`` and the TUI name each default.
LABELS = {"vae": "VAE", "clip_skip": "clip skip", "sampler": "sampler", "schedule": "schedule",
          "cfg_scale": "CFG scale", "negative": "negative prompt"}


def defaults_rows(defaults: GenerationDefaults) -> list[tuple[str, str]]:
    """(label, value) of each default set, for ``show`` and the TUI's detail pane."""
    values = defaults.to_dict()
    rows = []
    for name in DEFAULT_FIELDS:
        value = values[name]
        if value is None:
            continue
        if name == "vae" and value == "None":
            value = "None (the baked-in VAE)"
        rows.append((LABELS[name], f"{value:g}" if isinstance(value, float) else str(value)))
    return rows
