"""Reading one model file for the catalog: every hash in one pass plus what the file is.

The hashing and the detection live in ``sdhub.ops``; this module only decides which files count
as model files and bundles the two results with the file's identity on disk.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdhub.errors import BadInputError, SdhubError
from sdhub.progress import NULL_PROGRESS, Progress

#: File name endings the catalog treats as model files (lower case).
MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")

#: Names of files still being written or left behind by interrupted writers.
_TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", "~")
_TEMPORARY_PREFIXES = (".sdhub-tmp", ".")

_HEX = re.compile(r"^[0-9a-f]+$")

#: safetensors ``__metadata__`` key naming the file a converted/pruned file was made from
#: (written by ``sdhub.ops.prune`` and ``sdhub.ops.convert``).
SOURCE_SHA256_KEY = "sdhub.source_sha256"
#: Metadata keys that say which operation made the file, in the order they are checked.
_RELATION_KEYS = (("sdhub.pruned", "prune"), ("sdhub.converted_from", "convert"), ("sdhub.dtype", "cast"))


def is_model_file_name(name: str) -> bool:
    """True for a model file name; False for temporary, partial and hidden files."""
    lower = name.lower()
    if lower.startswith(_TEMPORARY_PREFIXES) or lower.endswith(_TEMPORARY_SUFFIXES):
        return False
    return lower.endswith(MODEL_EXTENSIONS)


def model_stem(path: str | Path) -> str:
    """The file name without its model extension: the ``<base>`` of sidecar files."""
    name = os.path.basename(os.fspath(path))
    lower = name.lower()
    for extension in MODEL_EXTENSIONS:
        if lower.endswith(extension):
            return name[: -len(extension)]
    return os.path.splitext(name)[0]


@dataclass
class FileIdentity:
    """A file's identity on disk: if all four are unchanged, its content is taken as unchanged."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, stat: os.stat_result) -> "FileIdentity":
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)


@dataclass
class FileAnalysis:
    """One model file read once: its hashes (lowercase hex by scheme) and its inspect report."""

    path: str
    identity: FileIdentity
    hashes: dict[str, str]
    inspect: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    bytes_read: int = 0

    @property
    def sha256(self) -> str:
        return self.hashes["sha256"]

    @property
    def source_sha256(self) -> str | None:
        """The SHA-256 of the file this one was made from, when its metadata records it."""
        value = str(self.metadata.get(SOURCE_SHA256_KEY, "")).strip().lower()
        return value if len(value) == 64 and _HEX.match(value) else None

    @property
    def relation(self) -> str | None:
        """How this file was made from its source: prune, convert or cast (None if unknown)."""
        return next((relation for key, relation in _RELATION_KEYS if key in self.metadata), None)

    @property
    def metadata(self) -> dict[str, Any]:
        metadata = self.inspect.get("metadata")
        return metadata if isinstance(metadata, dict) else {}


def normalise_hashes(raw: dict[str, Any]) -> dict[str, str]:
    """Keep the hex-valued schemes of a ``FileHashes.to_dict()``, lower-cased."""
    hashes = {}
    for scheme, value in raw.items():
        if isinstance(value, str) and value and _HEX.match(value.lower()):
            hashes[scheme.lower()] = value.lower()
    return hashes


def _problem_text(problem: Any) -> str:
    if isinstance(problem, dict):
        return str(problem.get("message") or problem.get("code") or problem)
    return str(problem)


def analyse_file(path: str | Path, progress: Progress = NULL_PROGRESS, *, check_values: bool = False) -> FileAnalysis:
    """Hash and inspect one model file. Raises BadInputError if it changes while being read.

    Inspection reads tensor names, shapes and metadata; ``check_values`` also streams every
    tensor to find NaN/Inf weights and broken CLIP position ids (a second full read).
    """
    from sdhub.ops.hashing import hash_file
    from sdhub.ops.inspect import inspect_file

    path = Path(path)
    try:
        before = FileIdentity.of(path.stat())
        hashes = normalise_hashes(hash_file(path, progress=progress).to_dict())
    except OSError as error:
        raise BadInputError(f"cannot read {path}: {error.strerror or error}") from None
    if "sha256" not in hashes:
        raise BadInputError(f"hashing {path} gave no SHA-256")
    problems: list[str] = []
    try:
        inspect = inspect_file(path, check_values=check_values).to_dict()
    except SdhubError as error:
        # A file we cannot understand is still catalogued (it takes space, it may be a duplicate).
        inspect, problems = {}, [str(error)]
    after = FileIdentity.of(path.stat())
    if after != before:
        raise BadInputError(f"{path} changed while it was being read; scan again when it is complete")
    problems += [_problem_text(p) for p in inspect.get("problems") or []]
    return FileAnalysis(str(path), before, hashes, inspect, problems, bytes_read=before.size)
