"""Sidecar files other tools keep next to a model, read into the catalog and written back.

* ``<base>.civitai.info``: Civitai Helper's copy of the Civitai model-version answer (``{}`` means
  "looked up, not on Civitai").
* ``<base>.json``: A1111's "Edit metadata" (``description``, ``activation text``, ``preferred
  weight``, ``notes``, ``sd version``; extensions add keys of their own, which we keep).
* ``<base>.preview.png`` (or ``.png``, ``.preview.jpg/.jpeg/.webp``): the preview image.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdhub.atomic import atomic_output
from sdhub.catalog.analysis import model_stem
from sdhub.catalog.walker import SIDECAR_SUFFIXES

PREVIEW_SUFFIXES = tuple(s for s in SIDECAR_SUFFIXES if s not in (".civitai.info", ".json"))
#: Keys of A1111's ``<base>.json`` that the catalog reads and writes.
USER_METADATA_KEYS = ("description", "activation text", "preferred weight", "notes", "sd version")


@dataclass
class SidecarData:
    """What the sidecars of one model file say."""

    civitai: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    preview: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.civitai is None and self.user is None and self.preview is None


def sidecar_path(model_path: str | Path, suffix: str) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_stem(model_path) + suffix)


def move_sidecars(old_model_path: str | Path, new_model_path: str | Path) -> list[Path]:
    """Rename the sidecars of a model file that was renamed or moved so they follow it; one the new
    name already has is left where it is (``sdhub clean`` reports it). Returns the new paths."""
    moved = []
    for suffix in SIDECAR_SUFFIXES:
        old, new = sidecar_path(old_model_path, suffix), sidecar_path(new_model_path, suffix)
        if old == new or not old.is_file() or new.exists() or Path(old_model_path).exists():
            continue
        try:
            os.rename(old, new)
        except OSError as error:
            if error.errno != errno.EXDEV or not _copy_across(old, new):
                continue  # no permission, or the copy failed: the old one stays, as before
        moved.append(new)
    return moved


def _copy_across(old: Path, new: Path) -> bool:
    """Move a sidecar to another file system: a whole copy under the new name first, then the old one goes."""
    try:
        copy_file_atomic(old, new, overwrite=False)
        old.unlink()
    except OSError:
        return False
    return True


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        problems.append(f"{path.name}: unreadable sidecar ({error})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name}: sidecar is not a JSON object")
        return None
    return value


def read_sidecars(model_path: str | Path, present: set[str] | None = None) -> SidecarData:
    """Read the sidecars of ``model_path``; ``present`` (suffixes known to exist) saves stat calls."""
    data = SidecarData()
    for suffix in SIDECAR_SUFFIXES:
        path = sidecar_path(model_path, suffix)
        if present is not None and suffix not in present:
            continue
        if present is None and not path.is_file():
            continue
        if suffix == ".civitai.info":
            info = _read_json(path, data.problems)
            # An empty object means "Civitai does not know this file": nothing to record.
            data.civitai = info or None
        elif suffix == ".json":
            user = _read_json(path, data.problems)
            if user is not None and any(key in user for key in USER_METADATA_KEYS):
                data.user = user
        elif data.preview is None:
            data.preview = str(path)
    return data


def user_metadata_fields(user: dict[str, Any]) -> dict[str, Any]:
    """Catalog fields from A1111's ``<base>.json`` (only the keys it has)."""
    fields: dict[str, Any] = {}
    if isinstance(user.get("description"), str):
        fields["description"] = user["description"].strip() or None
    if isinstance(user.get("activation text"), str):
        fields["trigger_words"] = [w.strip() for w in user["activation text"].split(",") if w.strip()]
    weight = user.get("preferred weight")
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        fields["preferred_weight"] = float(weight) or None
    if isinstance(user.get("notes"), str):
        fields["notes"] = user["notes"].strip() or None
    return fields


def sd_version(base_model: str | None, architecture: str | None) -> str:
    """A1111's ``sd version`` value (SD1, SD2, SDXL, Unknown) for a base model/architecture."""
    text = f"{base_model or ''} {architecture or ''}".lower().replace(" ", "")
    if "xl" in text:
        return "SDXL"
    if "sd2" in text or "sd2." in text or "2.1" in text or "2.0" in text:
        return "SD2"
    if "sd1" in text or "1.5" in text or "1.4" in text:
        return "SD1"
    return "Unknown"


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsynced and renamed."""
    with atomic_output(path) as stream:
        stream.write(data)


def copy_file_atomic(source: Path, target: Path, *, overwrite: bool = True) -> None:
    """Copy ``source`` to ``target`` atomically (temporary name, fsync, rename)."""
    with atomic_output(target, overwrite=overwrite) as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)


def _json_bytes(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=4, ensure_ascii=False) + "\n").encode("utf-8")


def write_sidecars(model_path: str | Path, *, civitai: dict[str, Any] | None, user: dict[str, Any],
                   preview: str | None) -> list[str]:
    """Write the sidecars of one model file; files whose content would not change are left alone.

    ``user`` holds the A1111 ``<base>.json`` keys sdhub knows; other keys already in the file stay.
    A preview is copied only when the model has none yet. Returns the paths written.
    """
    written = []
    if civitai:
        path = sidecar_path(model_path, ".civitai.info")
        content = _json_bytes(civitai)
        if not path.is_file() or path.read_bytes() != content:
            write_file_atomic(path, content)
            written.append(str(path))
    if user:
        path = sidecar_path(model_path, ".json")
        existing = {}
        if path.is_file():
            existing = _read_json(path, []) or {}
        merged = {**existing, **user}
        if merged != existing or not path.is_file():
            write_file_atomic(path, _json_bytes(merged))
            written.append(str(path))
    if preview and Path(preview).is_file():
        if not any(sidecar_path(model_path, suffix).is_file() for suffix in PREVIEW_SUFFIXES):
            target = sidecar_path(model_path, ".preview" + (Path(preview).suffix.lower() or ".png"))
            copy_file_atomic(Path(preview), target)
            written.append(str(target))
    return written
