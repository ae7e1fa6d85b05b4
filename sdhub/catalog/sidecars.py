"""Sidecar files other tools keep next to a model, read into the catalog and written back.

Read: ``<base>.civitai.info`` (Civitai Helper's copy of the Civitai version answer; ``{}`` means
"looked up, not on Civitai"), ``<base>.json`` (A1111's "Edit metadata": ``description``,
``activation text``, ``preferred weight``, ``negative text``, ``notes``, ``sd version``, and a checkpoint's
preferred ``vae``),
``<base>.txt`` / ``<base>.description.txt`` (A1111's description files), ``<base>.cm-info.json``
(StabilityMatrix's ConnectedModelInfo), ``<base>.metadata.json`` (LoRA Manager's record) and the
previews A1111 looks for (``<base>.png/.jpg/.jpeg/.webp/.gif`` and ``<base>.preview.*``).

Written: A1111's ``.json``, Civitai Helper's ``.civitai.info`` and StabilityMatrix's ``.cm-info.json``.
A value a file already holds is never changed (only empty keys are filled: the user's edits in any
of those tools stay theirs), keys sdhub does not know are kept, and a file whose content would not
change is not written.
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sdhub.atomic import atomic_output
from sdhub.catalog.analysis import model_stem
from sdhub.catalog.walker import PREVIEW_SUFFIXES, SIDECAR_SUFFIXES

CIVITAI_INFO = ".civitai.info"
A1111_JSON = ".json"
STABILITY_MATRIX = ".cm-info.json"
LORA_MANAGER = ".metadata.json"
#: A1111 reads a description from these, the first that exists; its ``.json`` ``description`` wins.
DESCRIPTION_FILES = (".txt", ".description.txt")
#: A1111 ``.json`` key of each catalog field the user can set there.
A1111_KEYS = {"description": "description", "trigger_words": "activation text",
              "preferred_weight": "preferred weight", "negative_text": "negative text", "notes": "notes",
              "sd_version": "sd version", "preferred_vae": "vae"}
#: Keys of A1111's ``<base>.json`` that the catalog reads and writes.
USER_METADATA_KEYS = tuple(A1111_KEYS.values())
#: Catalog fields a user can set in a sidecar; nothing sdhub derives replaces them.
USER_COLUMNS = (*A1111_KEYS, "name")

#: Civitai Helper's "refetch old" rewrites a ``.civitai.info`` whose ``extensions.sd_civitai_helper.version``
#: is missing or older than the oldest format it accepts (1.7.2), and an A1111 ``.json`` older than 1.8.0.
CIVITAI_HELPER_KEY = "sd_civitai_helper"
CIVITAI_HELPER_FORMATS = {CIVITAI_INFO: "1.7.2", A1111_JSON: "1.8.0"}
_DESCRIPTION_LIMIT = 1 << 20


@dataclass
class SidecarData:
    """What the sidecars of one model file say.

    ``user``: catalog fields the user set in a sidecar (A1111's metadata, LoRA Manager's notes and
    weight, StabilityMatrix's title), the highest-ranked file's value for each; ``cleared``: user
    fields a sidecar holds empty; ``derived``: fields peers took from Civitai, which only fill what
    is empty; ``peer_civitai``: a Civitai version record rebuilt from StabilityMatrix or LoRA Manager.
    """

    civitai: dict[str, Any] | None = None
    peer_civitai: dict[str, Any] | None = None
    user: dict[str, Any] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)
    derived: dict[str, Any] = field(default_factory=dict)
    preview: str | None = None
    preview_nsfw_level: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.civitai or self.peer_civitai or self.user or self.cleared or self.derived or self.preview)


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


def _read_text(path: Path, problems: list[str]) -> str | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_DESCRIPTION_LIMIT + 1)
    except OSError as error:
        problems.append(f"{path.name}: unreadable sidecar ({error.strerror or error})")
        return None
    if len(data) > _DESCRIPTION_LIMIT:
        problems.append(f"{path.name}: description longer than 1 MB; not read")
        return None
    return data.decode("utf-8", errors="replace").strip() or None


def read_sidecars(model_path: str | Path, present: set[str] | None = None) -> SidecarData:
    """Read the sidecars of ``model_path``; ``present`` (suffixes known to exist) saves stat calls."""
    data = SidecarData()
    found: dict[str, Any] = {}
    for suffix in SIDECAR_SUFFIXES:
        path = sidecar_path(model_path, suffix)
        if present is not None and suffix not in present:
            continue
        if present is None and not path.is_file():
            continue
        if suffix in PREVIEW_SUFFIXES:
            data.preview = data.preview or str(path)
        elif suffix in DESCRIPTION_FILES:
            found.setdefault("text", _read_text(path, data.problems))
        else:
            found[suffix] = _read_json(path, data.problems)
    # An empty object means "Civitai does not know this file": nothing to record.
    data.civitai = found.get(CIVITAI_INFO) or None
    # Lowest rank first: a later file's value wins (A1111's own metadata over the others).
    ranked = [_stability_matrix_fields(found.get(STABILITY_MATRIX)),
              ({"description": found["text"]}, {}) if found.get("text") else ({}, {}),
              _lora_manager_fields(found.get(LORA_MANAGER), data),
              (_a1111_fields(found.get(A1111_JSON)), {})]
    given: set[str] = set()
    for user, derived in ranked:
        for column, value in user.items():
            if _blank(column, value):
                data.cleared.add(column)
            else:
                data.user[column] = value
                given.add(column)
        for column, value in derived.items():
            if column == "tags" and value:
                data.derived["tags"] = [*data.derived.get("tags", []),
                                        *(t for t in value if t not in data.derived.get("tags", []))]
            elif not _blank(column, value):
                data.derived.setdefault(column, value)
    data.cleared -= given
    data.peer_civitai = _peer_civitai(found.get(LORA_MANAGER), found.get(STABILITY_MATRIX))
    return data


def _blank(column: str, value: Any) -> bool:
    """Whether a value means "not set": nothing, blank text, A1111's weight 0, its sd version "Unknown" and
    its preferred VAE "Automatic" (no preference; "None" is one: the baked-in VAE)."""
    if value is None or value == [] or (isinstance(value, str) and not value.strip()):
        return True
    if column == "preferred_weight":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0
    if column == "preferred_vae":
        return str(value).strip() == "Automatic"
    return column == "sd_version" and str(value).strip().lower() == "unknown"


def _a1111_fields(user: dict[str, Any] | None) -> dict[str, Any]:
    """Catalog fields from A1111's ``<base>.json`` (only the keys it has, blanks included)."""
    fields: dict[str, Any] = {}
    for column, key in A1111_KEYS.items():
        if key not in (user or {}):
            continue
        value = user[key]
        if column == "trigger_words" and isinstance(value, str):
            fields[column] = [w.strip() for w in value.split(",") if w.strip()]
        elif column == "preferred_weight":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                fields[column] = float(value)
        elif isinstance(value, str):
            fields[column] = value.strip()
    return fields


def user_metadata_fields(user: dict[str, Any]) -> dict[str, Any]:
    """Catalog fields from A1111's ``<base>.json``, blanks as None."""
    return {column: None if _blank(column, value) else value for column, value in _a1111_fields(user).items()}


def _lora_manager_fields(record: dict[str, Any] | None, data: SidecarData) -> tuple[dict[str, Any], dict[str, Any]]:
    """(user, derived) fields of LoRA Manager's ``<base>.metadata.json``: its notes and the strength of
    its usage tips are the user's; its description, trigger words and tags came from Civitai."""
    if not record:
        return {}, {}
    user: dict[str, Any] = {}
    if isinstance(record.get("notes"), str):
        user["notes"] = record["notes"].strip()
    tips = record.get("usage_tips")
    try:
        tips = json.loads(tips) if isinstance(tips, str) else tips
    except ValueError:
        tips = None
    strength = tips.get("strength") if isinstance(tips, dict) else None
    if isinstance(strength, (int, float)) and not isinstance(strength, bool):
        user["preferred_weight"] = float(strength)
    civitai = record.get("civitai") if isinstance(record.get("civitai"), dict) else {}
    words = record.get("trainedWords") or civitai.get("trainedWords") or []
    derived = {"description": _text(record.get("modelDescription")),
               "trigger_words": [str(w).strip() for w in words if isinstance(w, str) and w.strip()],
               "tags": [t for t in record.get("tags") or [] if isinstance(t, str)]}
    level = record.get("preview_nsfw_level")
    preview = record.get("preview_url")
    if data.preview and isinstance(level, int) and level > 0 and isinstance(preview, str) \
            and os.path.basename(preview.replace("\\", "/")) == os.path.basename(data.preview):
        data.preview_nsfw_level = level
    return user, derived


def _stability_matrix_fields(record: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(user, derived) fields of StabilityMatrix's ``<base>.cm-info.json``: its ``UserTitle`` is the
    user's name for the model; the rest is Civitai's."""
    if not record:
        return {}, {}
    user = {"name": record["UserTitle"].strip()} if isinstance(record.get("UserTitle"), str) else {}
    words = record.get("TrainedWords") or []
    derived = {"description": _text(record.get("ModelDescription")),
               "trigger_words": [str(w).strip() for w in words if isinstance(w, str) and w.strip()],
               "tags": [t for t in record.get("Tags") or [] if isinstance(t, str)]}
    return user, derived


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _peer_civitai(lora_manager: dict[str, Any] | None, stability_matrix: dict[str, Any] | None,
                  ) -> dict[str, Any] | None:
    """A Civitai version record from LoRA Manager's copy of it, else rebuilt from StabilityMatrix's fields."""
    civitai = (lora_manager or {}).get("civitai")
    if isinstance(civitai, dict) and civitai.get("id") and (civitai.get("modelId") or civitai.get("model")):
        return civitai
    record = stability_matrix or {}
    source = record.get("Source", 0)
    if not record.get("ModelId") or source not in (0, "Civitai"):
        return None
    hashes = record.get("Hashes") if isinstance(record.get("Hashes"), dict) else {}
    return {
        "id": record.get("VersionId"), "modelId": record["ModelId"], "name": record.get("VersionName"),
        "description": record.get("VersionDescription"), "baseModel": record.get("BaseModel"),
        "trainedWords": record.get("TrainedWords") or [],
        "model": {"name": record.get("ModelName"), "type": record.get("ModelType"), "nsfw": record.get("Nsfw"),
                  "tags": record.get("Tags") or [], "description": record.get("ModelDescription")},
        "files": [{"hashes": {k: v for k, v in hashes.items() if v}, "metadata": record.get("FileMetadata")}]
        if any(hashes.values()) else [],
    }


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


def _json_text(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=4, ensure_ascii=False) + "\n"


@dataclass
class SidecarChange:
    """One sidecar export would write: its path, what it holds now (None: no file; JSON laid out as sdhub
    writes it) and what it would hold (``copy_of``: a preview copied there)."""

    path: Path
    before: str | None
    after: str | None = None
    copy_of: Path | None = None

    @property
    def diff(self) -> str:
        """The change as a unified diff (a copied preview: one line naming its source)."""
        if self.copy_of is not None:
            return f"+ new preview {self.path.name}, a copy of {self.copy_of}\n"
        return "".join(difflib.unified_diff((self.before or "").splitlines(keepends=True),
                                            (self.after or "").splitlines(keepends=True),
                                            fromfile=f"{self.path} (now)" if self.before is not None else "/dev/null",
                                            tofile=f"{self.path} (exported)"))

    def apply(self) -> None:
        if self.copy_of is not None:
            copy_file_atomic(self.copy_of, self.path)
        else:
            write_file_atomic(self.path, (self.after or "").encode("utf-8"))


def _existing(path: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The text of a sidecar and its JSON object; (None, None) when there is none, (text, None) when broken."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return (None, None) if not path.exists() else ("", None)
    try:
        value = json.loads(text)
    except ValueError:
        return text, None
    return text, value if isinstance(value, dict) else None


def _helper_block(extensions: Any, suffix: str, stamp: int) -> dict[str, Any]:
    """``extensions`` with a Civitai Helper entry that its "refetch old" takes as current; one that already
    is (or any newer) is left as it is."""
    from packaging.version import InvalidVersion, Version

    extensions = dict(extensions) if isinstance(extensions, dict) else {}
    entry = extensions.get(CIVITAI_HELPER_KEY)
    try:
        current = isinstance(entry, dict) and Version(str(entry.get("version"))) >= Version(CIVITAI_HELPER_FORMATS[suffix])
    except InvalidVersion:
        current = False
    if not current:
        extensions[CIVITAI_HELPER_KEY] = {"version": CIVITAI_HELPER_FORMATS[suffix], "last_update": stamp,
                                          "skeleton_file": False}
    return extensions


def _fill(existing: dict[str, Any], values: dict[str, Any], blank) -> dict[str, Any]:
    """``existing`` with the keys it lacks or holds empty taken from ``values``; nothing it holds changes."""
    merged = dict(existing)
    for key, value in values.items():
        if key not in merged or (blank(key, merged[key]) and not blank(key, value)):
            merged[key] = value
    return merged


def _a1111_blank(key: str, value: Any) -> bool:
    column = next((c for c, k in A1111_KEYS.items() if k == key), key)
    return _blank(column, value)


def _sm_blank(key: str, value: Any) -> bool:
    return value is None or value == "" or value == []


def _plan_json(path: Path, merge, suffix: str | None, stamp: int, *, stamp_always: bool = False,
               ) -> SidecarChange | None:
    """The change that writes ``merge(existing object)`` to ``path``, or None when nothing changes.
    ``suffix``: mark the file current for Civitai Helper (when it changes, or always with ``stamp_always``)."""
    before, existing = _existing(path)
    if before is not None and existing is None:
        return None  # a file we cannot read as a JSON object is left as it is (scan reports it)
    merged = merge(existing or {})
    if suffix is not None and (stamp_always or merged != existing):
        merged["extensions"] = _helper_block(merged.get("extensions"), suffix, stamp)
    if existing is not None and merged == existing:
        return None
    # Diffed as laid out the same way, so only the keys that change show (the file may be on one line).
    return SidecarChange(path, None if existing is None else _json_text(existing), _json_text(merged))


def plan_sidecars(model_path: str | Path, *, civitai: dict[str, Any] | None, user: dict[str, Any],
                  preview: str | None, stability_matrix: dict[str, Any] | None = None,
                  fetched_at: str | None = None) -> list[SidecarChange]:
    """The sidecars of one model file that would change, with their new content.

    ``civitai``: the Civitai version record (``.civitai.info``, replaced when Civitai's answer is
    newer; its ``extensions`` are kept). ``user``: A1111 ``.json`` keys; ``stability_matrix``:
    ``.cm-info.json`` keys; both only fill keys the file lacks or holds empty. A preview is copied
    only when the model has none yet.
    """
    stamp = _unix_time(fetched_at)
    changes: list[SidecarChange] = []
    if civitai:
        def with_extensions(existing: dict[str, Any]) -> dict[str, Any]:
            merged = dict(civitai)
            extensions = dict(existing.get("extensions")) if isinstance(existing.get("extensions"), dict) else {}
            extensions.update(civitai.get("extensions") if isinstance(civitai.get("extensions"), dict) else {})
            if extensions:
                merged["extensions"] = extensions
            return merged

        # Stamped even when the record is unchanged: Civitai Helper's "refetch old" overwrites files without.
        change = _plan_json(sidecar_path(model_path, CIVITAI_INFO), with_extensions, CIVITAI_INFO, stamp,
                            stamp_always=True)
        if change is not None:
            changes.append(change)
    if user:
        change = _plan_json(sidecar_path(model_path, A1111_JSON), lambda e: _fill(e, user, _a1111_blank),
                            A1111_JSON, stamp)
        if change is not None:
            changes.append(change)
    if stability_matrix:
        change = _plan_json(sidecar_path(model_path, STABILITY_MATRIX),
                            lambda e: _fill(e, stability_matrix, _sm_blank), None, stamp)
        if change is not None:
            changes.append(change)
    if preview and Path(preview).is_file():
        if not any(sidecar_path(model_path, suffix).is_file() for suffix in PREVIEW_SUFFIXES):
            target = sidecar_path(model_path, ".preview" + (Path(preview).suffix.lower() or ".png"))
            changes.append(SidecarChange(target, None, copy_of=Path(preview)))
    return changes


def _unix_time(stamp: str | None) -> int:
    try:
        return int(datetime.fromisoformat(stamp).timestamp()) if stamp else int(datetime.now().timestamp())
    except ValueError:
        return int(datetime.now().timestamp())


def set_user_metadata(model_path: str | Path, values: dict[str, Any]) -> str | None:
    """Set keys of A1111's ``<base>.json`` (None removes one), keeping every other key: what the user sets
    with ``sdhub set`` replaces the file's value. Returns the path when the file changed."""
    path = sidecar_path(model_path, A1111_JSON)
    if not path.exists() and all(value is None for value in values.values()):
        return None

    def merge(existing: dict[str, Any]) -> dict[str, Any]:
        merged = dict(existing)
        for key, value in values.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    change = _plan_json(path, merge, A1111_JSON, _unix_time(None))
    if change is None:
        return None
    change.apply()
    return str(change.path)


def write_sidecars(model_path: str | Path, *, civitai: dict[str, Any] | None, user: dict[str, Any],
                   preview: str | None, stability_matrix: dict[str, Any] | None = None,
                   fetched_at: str | None = None) -> list[str]:
    """Write the sidecars of one model file that would change (see ``plan_sidecars``); returns their paths."""
    changes = plan_sidecars(model_path, civitai=civitai, user=user, preview=preview,
                            stability_matrix=stability_matrix, fetched_at=fetched_at)
    for change in changes:
        change.apply()
    return [str(change.path) for change in changes]
