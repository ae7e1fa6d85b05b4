"""What catalog queries return: plain dataclasses whose ``to_dict()`` is the ``--json`` output."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from sdhub.catalog.analysis import FOLDER_FORMAT

#: Test verdicts that say a model works (``sdhub.generate.verdicts``); any other is a failed test.
PASSING_VERDICTS = ("pass",)


def json_list(text: str | None) -> list[Any]:
    """A JSON list column as a Python list (empty for NULL or bad JSON written by hand)."""
    if not text or text == "[]":
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def json_dict(text: str | None) -> dict[str, Any]:
    """A JSON object column as a dict (empty for NULL or bad JSON)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class FileRecord:
    """One place on disk where an asset's content lives."""

    id: int
    path: str
    size: int
    mtime_ns: int
    inode: int
    device: int
    folder_kind: str | None
    missing: bool
    seen_at: str | None
    added_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "FileRecord":
        return cls(id=row["id"], path=row["path"], size=row["size"], mtime_ns=row["mtime_ns"],
                   inode=row["inode"], device=row["device"], folder_kind=row["folder_kind"],
                   missing=bool(row["missing"]), seen_at=row["seen_at"], added_at=row["added_at"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Asset:
    """One distinct file content (keyed by SHA-256) and everything the catalog knows about it."""

    id: int
    sha256: str
    kind: str
    architecture: str | None
    base_model: str | None
    format: str | None
    dtype: str | None
    size: int
    name: str
    name_source: str | None
    description: str | None
    trigger_words: list[str]
    tags: list[str]
    nsfw: bool | None
    notes: str | None
    preferred_weight: float | None
    status: str | None
    status_at: str | None
    problems: list[str]
    source_sha256: str | None
    added_at: str
    updated_at: str
    files: list[FileRecord] = field(default_factory=list)
    defect: str | None = None
    #: Where ``base_model`` (the family: sd1, sd2, sdxl, sd3, flux1) came from: "detection" (the
    #: tensors) or "label" (the tensors prove none; the label names one).
    base_model_from: str | None = None
    #: What Civitai or the file's metadata calls its base model ("SD 1.5", "Pony", "sdxl_base_v1-0").
    base_label: str | None = None
    #: Where ``base_label`` came from: "civitai", "metadata" (the file's own), "detection".
    base_label_from: str | None = None
    #: A1111's ``negative text``: what to add to the negative prompt with this model.
    negative_text: str | None = None
    #: A1111's ``sd version`` as the user set it (SD1, SD2, SDXL); None when only derived.
    sd_version: str | None = None
    #: The fields the user set (in a peer's sidecar): nothing sdhub derives replaces them.
    user_fields: list[str] = field(default_factory=list)
    #: Every name the asset is known by: file names old and new, Civitai's model, version and file names, AIR.
    aliases: list[str] = field(default_factory=list)
    #: The newer Civitai version the last ``sdhub outdated`` found (``version_id``, ``version_name``,
    #: ``early_access``, ``early_access_ends_at``, ``checked_at``); None when up to date or never checked.
    newer_version: dict[str, Any] | None = None
    #: A1111's preferred VAE of a checkpoint (its ``.json`` ``vae``): a VAE file name, or "None" for the baked-in one.
    preferred_vae: str | None = None
    #: The checkpoint's generation defaults A1111 keeps nowhere (``clip_skip``, ``sampler``, ``schedule``,
    #: ``cfg_scale``), set with ``sdhub set``; {} when none.
    generation_defaults: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any], files: list[FileRecord] | None = None) -> "Asset":
        return cls(
            id=row["id"], sha256=row["sha256"], kind=row["kind"], architecture=row["architecture"],
            base_model=row["base_model"], format=row["format"], dtype=row["dtype"], size=row["size"],
            name=row["name"], name_source=row["name_source"], description=row["description"],
            trigger_words=json_list(row["trigger_words"]), tags=json_list(row["tags"]),
            nsfw=None if row["nsfw"] is None else bool(row["nsfw"]), notes=row["notes"],
            preferred_weight=row["preferred_weight"], status=row["status"], status_at=row["status_at"],
            problems=json_list(row["problems"]), source_sha256=row["source_sha256"],
            added_at=row["added_at"], updated_at=row["updated_at"], files=list(files or []),
            defect=row.get("defect"), base_model_from=row.get("base_model_from"),
            base_label=row.get("base_label"), base_label_from=row.get("base_label_from"),
            negative_text=row.get("negative_text"), sd_version=row.get("sd_version"),
            user_fields=json_list(row.get("user_fields")),
            aliases=[line for line in (row.get("aliases") or "").split("\n") if line],
            newer_version=json_dict(row.get("newer_version")) or None,
            preferred_vae=row.get("preferred_vae"), generation_defaults=json_dict(row.get("generation_defaults")),
        )

    @property
    def shown_label(self) -> str | None:
        """The label worth showing beside the family: a source's ("Pony"), not a training tool's
        metadata value ("sdxl_base_v1-0", kept in ``base_label`` and shown by ``show``)."""
        return self.base_label if self.base_label and self.base_label_from != "metadata" else None

    @property
    def base_text(self) -> str:
        """The base model in one short phrase for listings: "sdxl (Pony)", "sd1", "Wan Video"."""
        label = self.shown_label
        if self.base_model and label and label.lower() != self.base_model:
            return f"{self.base_model} ({label})"
        return self.base_model or label or self.architecture or ""

    @property
    def outdated(self) -> bool:
        """True when the last check found a newer version on Civitai (even one still in early access)."""
        return self.newer_version is not None

    @property
    def autov2(self) -> str:
        """The A1111 short hash (first 10 hex of the SHA-256)."""
        return self.sha256[:10]

    @property
    def is_folder(self) -> bool:
        """True for a diffusers pipeline folder (its paths are folders, its SHA-256 is of its file list)."""
        return self.format == FOLDER_FORMAT

    @property
    def present_files(self) -> list[FileRecord]:
        return [f for f in self.files if not f.missing]

    @property
    def missing(self) -> bool:
        """True when every known copy of this content is gone from disk."""
        return not self.present_files

    @property
    def file_name(self) -> str:
        """The file name (a folder's name) of its first copy on disk, or of a missing one: how A1111
        and ComfyUI list it, and what tells apart assets of the same name."""
        records = self.present_files or self.files
        return os.path.basename(records[0].path) if records else ""

    @property
    def condition(self) -> str:
        """One word for listings: its defect (broken, unsafe), "missing", the latest test verdict,
        "problems" when inspection found some, or "" when nothing is known to be wrong."""
        if self.defect:
            return self.defect
        if self.files and self.missing:
            return "missing"
        if self.status:
            return self.status
        return "problems" if self.problems else ""

    @property
    def has_problems(self) -> bool:
        """True when something is wrong with it: a defect, every copy gone, a failed test, or a problem."""
        return bool(self.defect or (self.files and self.missing) or self.problems
                    or (self.status and self.status not in PASSING_VERDICTS))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["autov2"] = self.autov2
        data["missing"] = self.missing
        data["file_name"] = self.file_name
        data["condition"] = self.condition
        data["outdated"] = self.outdated
        return data


@dataclass
class AssetLink:
    """A short reference to a related asset (an ancestor or a derived copy)."""

    sha256: str
    relation: str | None
    id: int | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AssetDetails:
    """Everything known about one asset: ``sdhub show``."""

    asset: Asset
    hashes: dict[str, str]
    remote: list[dict[str, Any]]
    previews: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    ancestors: list[AssetLink]
    derived: list[AssetLink]
    inspect: dict[str, Any]
    folder_files: list[dict[str, Any]] = field(default_factory=list)
    #: What sdhub reads from the Civitai record (``civitai_record.CivitaiRecord``), None without one.
    civitai: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = self.asset.to_dict()
        data.update(
            hashes=self.hashes, remote=self.remote, previews=self.previews, tests=self.tests,
            ancestors=[a.to_dict() for a in self.ancestors], derived=[d.to_dict() for d in self.derived],
            inspect=self.inspect, folder_files=self.folder_files, civitai=self.civitai,
        )
        from sdhub.catalog.generation_defaults import GenerationDefaults  # it builds on this module

        data["defaults"] = GenerationDefaults.of(self.asset).to_dict()  # what `sdhub set` set
        return data


@dataclass
class ScanReport:
    """What a scan did; ``files_read``/``bytes_read`` count file contents actually read."""

    roots: list[str] = field(default_factory=list)
    files_seen: int = 0
    files_unchanged: int = 0
    files_read: int = 0
    bytes_read: int = 0
    files_added: int = 0
    files_changed: int = 0
    files_moved: int = 0
    files_missing: int = 0
    assets_added: int = 0
    #: Every file of the scanned library that is not a usable model (see ``analysis.DEFECTS``),
    #: read in this scan or before: ``{"path", "defect", "reason"}``.
    broken: list[dict[str, str]] = field(default_factory=list)
    sidecars_read: int = 0
    #: Wildcard files listed in the wildcards folders (``Catalog.wildcard_files``).
    wildcard_files: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    #: Temporary files and download ``.part`` files found in the home (``sdhub.ops.leftovers``).
    leftovers: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DuplicateGroup:
    """One content stored at several paths; ``wasted_bytes`` counts copies that are not hard links."""

    asset: Asset
    wasted_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.asset.id, "sha256": self.asset.sha256, "name": self.asset.name,
                "kind": self.asset.kind, "size": self.asset.size, "wasted_bytes": self.wasted_bytes,
                "paths": [f.path for f in self.asset.present_files]}


@dataclass
class DuplicatesReport:
    groups: list[DuplicateGroup]

    @property
    def wasted_bytes(self) -> int:
        return sum(group.wasted_bytes for group in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"wasted_bytes": self.wasted_bytes, "groups": [g.to_dict() for g in self.groups]}


@dataclass
class DedupeReport:
    """What ``link_duplicates``/``delete_duplicates`` changed on disk."""

    action: str
    changed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    bytes_freed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RemoveReport:
    asset: Asset
    files_deleted: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.asset.to_dict(), "files_deleted": self.files_deleted}


@dataclass
class Root:
    """A scanned folder: one of the home's layout folders or an extra root the user added."""

    path: str
    kind: str | None
    source: str
    exists: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
