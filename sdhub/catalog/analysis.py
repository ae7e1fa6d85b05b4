"""Reading one model file or diffusers folder for the catalog: its hashes plus what it is.

The hashing and the detection live in ``sdhub.ops``; this module only decides which files count
as model files, what a diffusers folder is made of, and bundles the results with the identity
of the file (or folder) on disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat as stat_mode
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from sdhub.ops.hashing import FileHashes

from sdhub.errors import BadInputError, Interrupted, SdhubError, UnsafeFileError
from sdhub.progress import NULL_PROGRESS, Progress, QuietProgress

#: File name endings the catalog treats as model files (lower case).
MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin")

#: Names of files still being written or left behind by interrupted writers.
_TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", "~")
_TEMPORARY_PREFIXES = (".sdhub-tmp", ".")

_HEX = re.compile(r"^[0-9a-f]+$")

#: safetensors ``__metadata__`` key naming the file a converted/pruned file was made from
#: (written by ``sdhub.ops.prune`` and ``sdhub.ops.convert``).
SOURCE_SHA256_KEY = "sdhub.source_sha256"
#: Metadata keys that say which operation made the file, in the order they are checked.
_RELATION_KEYS = (("sdhub.pruned", "prune"), ("sdhub.converted_from", "convert"), ("sdhub.dtype", "cast"))

#: The file that makes a folder a diffusers pipeline, catalogued as one asset.
PIPELINE_INDEX = "model_index.json"
#: ``assets.format`` of a diffusers pipeline folder: the one kind of asset that is a folder.
FOLDER_FORMAT = "diffusers"

#: ``assets.defect``: why a file cannot be used at all. "broken": not a readable model (an HTML
#: page saved as .safetensors, an empty or truncated file); "unsafe": a pickle sdhub refuses to read.
DEFECTS = ("broken", "unsafe")


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


def is_pipeline_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder holding ``model_index.json``: a diffusers pipeline."""
    return os.path.isfile(os.path.join(path, PIPELINE_INDEX))


@dataclass
class FolderMember:
    """One file of a diffusers folder: its path inside the folder ('/'-separated) and its content."""

    path: str
    size: int
    mtime_ns: int
    sha256: str | None = None


def folder_listing(folder: str | os.PathLike[str]) -> tuple[FileIdentity, list[FolderMember]]:
    """The files a folder asset is made of, by path, and the folder's identity.

    Hidden files and folders (``.gitattributes``, ``.cache/``, temporary files) are not part of
    it. The identity is the folder's inode and device, the total size of its files and the
    newest modification time among them and its subfolders, so adding, removing or changing a
    file changes it.
    """
    root = os.fspath(folder)
    top = os.stat(root)
    newest = top.st_mtime_ns
    members = []
    for current, folders, names in os.walk(root):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in folders:
            try:
                newest = max(newest, os.stat(os.path.join(current, name)).st_mtime_ns)
            except OSError:
                continue
        for name in names:
            if name.startswith("."):
                continue
            full = os.path.join(current, name)
            try:
                info = os.stat(full)
            except OSError:  # a dangling link, or removed meanwhile
                continue
            if stat_mode.S_ISREG(info.st_mode):
                relative = os.path.relpath(full, root).replace(os.sep, "/")
                members.append(FolderMember(relative, info.st_size, info.st_mtime_ns))
                newest = max(newest, info.st_mtime_ns)
    members.sort(key=lambda member: member.path)
    return FileIdentity(sum(m.size for m in members), newest, top.st_ino, top.st_dev), members


def path_identity(path: str | os.PathLike[str]) -> FileIdentity:
    """The identity of a file, or of a folder asset as ``folder_listing`` defines it."""
    if os.path.isdir(path):
        return folder_listing(path)[0]
    return FileIdentity.of(os.stat(path))


def manifest_sha256(members: Iterable[FolderMember]) -> str:
    """A folder asset's identity: the SHA-256 of ``sha256sum``'s output for its files, sorted by path.

    That is ``<sha256>  <path>\n`` per file, so for ordinary file names
    ``find . -type f ! -path '*/.*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum``
    run inside the folder gives the same value.
    """
    digest = hashlib.sha256()
    for member in sorted(members, key=lambda m: m.path):
        digest.update(f"{member.sha256}  {member.path}\n".encode("utf-8"))
    return digest.hexdigest()


@dataclass
class FileAnalysis:
    """One model file (or diffusers folder) read: its hashes (lowercase hex by scheme) and inspect report.

    ``members`` lists a folder's files with their SHA-256s; it is None for a file. ``defect`` is
    one of ``DEFECTS`` when the file could not be read as a model (its ``problems`` say why).
    """

    path: str
    identity: FileIdentity
    hashes: dict[str, str]
    inspect: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    bytes_read: int = 0
    members: list[FolderMember] | None = None
    defect: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.members is not None

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


def _inspect(path: Path, check_values: bool, progress: Progress = NULL_PROGRESS
             ) -> tuple[dict[str, Any], list[str], str | None]:
    """The inspect report of a file or folder, its problems, and its defect (see ``DEFECTS``).

    A file sdhub cannot understand is still catalogued (it takes space, it may be a duplicate),
    marked broken or unsafe, with the reason as its problem. Notes of severity "info" (harmless
    training objects left out of a pickle) are not problems: they stay in the report only.
    """
    from sdhub.ops.inspect import inspect_file

    try:
        report = inspect_file(path, check_values=check_values, progress=progress).to_dict()
    except Interrupted:
        raise  # a stop, not a defect of the file
    except UnsafeFileError as error:
        return {}, [str(error)], "unsafe"
    except SdhubError as error:
        return {}, [str(error)], "broken"
    problems = [p for p in report.get("problems") or [] if not (isinstance(p, dict) and p.get("severity") == "info")]
    return report, [_problem_text(p) for p in problems], None


def analyse_file(path: str | Path, progress: Progress = NULL_PROGRESS, *, check_values: bool = False,
                 hashes: FileHashes | None = None) -> FileAnalysis:
    """Hash and inspect one model file. Raises BadInputError if it changes while being read.

    Inspection reads tensor names, shapes and metadata; ``check_values`` also streams every
    tensor to find NaN/Inf weights and broken CLIP position ids (a second full read).
    ``hashes`` are every hash of the file computed by the caller from the same bytes (while
    copying it): taken as they are, so the file is not read for them. Hashes of a file of
    another size are ignored and the file is hashed.
    """
    from sdhub.ops.hashing import hash_file

    path = Path(path)
    try:
        before = FileIdentity.of(path.stat())
        if hashes is not None and hashes.size == before.size:
            values, bytes_read = normalise_hashes(hashes.to_dict()), 0
        else:
            values, bytes_read = normalise_hashes(hash_file(path, progress=progress).to_dict()), before.size
    except OSError as error:
        raise BadInputError(f"cannot read {path}: {error.strerror or error}") from None
    if "sha256" not in values:
        raise BadInputError(f"hashing {path} gave no SHA-256")
    inspect, problems, defect = _inspect(path, check_values, QuietProgress(progress))
    after = FileIdentity.of(path.stat())
    if after != before:
        raise BadInputError(f"{path} changed while it was being read; scan again when it is complete")
    return FileAnalysis(str(path), before, values, inspect, problems, bytes_read=bytes_read, defect=defect)


def analyse_folder(path: str | Path, progress: Progress = NULL_PROGRESS, *, check_values: bool = False,
                   known_sha256: Mapping[str, str] | None = None,
                   cached: Iterable[FolderMember] = ()) -> FileAnalysis:
    """Hash and inspect a diffusers pipeline folder as one asset (see ``manifest_sha256``).

    Only the SHA-256 of each file is needed. ``known_sha256`` (path inside the folder -> hex) are
    the hashes of files the caller has just written or copied; ``cached`` are the files as an
    earlier read found them: a file with the same size and modification time is not read again.
    """
    from sdhub.ops.hashing import sha256_file

    path = Path(path)
    if not is_pipeline_folder(path):
        raise BadInputError(f"{path} is not a diffusers pipeline folder (no {PIPELINE_INDEX})")
    known = dict(known_sha256 or {})
    earlier = {(m.path, m.size, m.mtime_ns): m.sha256 for m in cached if m.sha256}
    try:
        before, members = folder_listing(path)
        bytes_read = 0
        for member in members:
            member.sha256 = known.get(member.path) or earlier.get((member.path, member.size, member.mtime_ns))
            if member.sha256 is None:
                member.sha256 = sha256_file(path / member.path, progress)
                bytes_read += member.size
    except OSError as error:
        raise BadInputError(f"cannot read {path}: {error.strerror or error}") from None
    inspect, problems, defect = _inspect(path, check_values, QuietProgress(progress))
    if folder_listing(path)[0] != before:
        raise BadInputError(f"{path} changed while it was being read; scan again when it is complete")
    return FileAnalysis(str(path), before, {"sha256": manifest_sha256(members)}, inspect, problems,
                        bytes_read=bytes_read, members=members, defect=defect)
