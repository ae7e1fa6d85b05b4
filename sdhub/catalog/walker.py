"""Finding model files under the scanned folders without reading them.

Symbolic links are followed, but every directory is entered once (tracked by device and inode),
so a link loop or two links to one folder cannot make the walk endless or count files twice.
A folder holding ``model_index.json`` is a diffusers pipeline, not a set of loose models: it is
found as one whole (a folder asset) and the files inside it are not looked at one by one.
"""

from __future__ import annotations

import os
import stat as stat_mode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from sdhub.catalog.analysis import PIPELINE_INDEX, FileIdentity, folder_listing, is_model_file_name, model_stem
from sdhub.progress import NULL_PROGRESS, Progress

#: Preview pictures A1111, Civitai Helper, StabilityMatrix and LoRA Manager look for, in the order preferred.
PREVIEW_SUFFIXES = (".preview.png", ".png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".preview.gif",
                    ".jpg", ".jpeg", ".webp", ".gif")
#: Sidecar files other tools keep next to a model: Civitai Helper's, A1111's metadata and description
#: files, StabilityMatrix's and LoRA Manager's records, then the previews.
SIDECAR_SUFFIXES = (".civitai.info", ".json", ".cm-info.json", ".metadata.json", ".txt", ".description.txt",
                    *PREVIEW_SUFFIXES)


@dataclass
class FoundFile:
    """A model file (or diffusers folder) seen on disk: its path, identity, the kind of the folder it
    was found in, its sidecars (a folder has none)."""

    path: str
    identity: FileIdentity
    folder_kind: str | None
    sidecars: dict[str, str] = field(default_factory=dict)
    folder: bool = False

    @property
    def sidecar_signature(self) -> str:
        """Changes whenever a sidecar appears, disappears or is edited."""
        return ";".join(f"{suffix}={stamp}" for suffix, stamp in sorted(self.sidecars.items()))


@dataclass
class WalkResult:
    files: list[FoundFile] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def walk_roots(roots: Iterable[tuple[Path, str | None]], *, exclude: Iterable[Path] = (),
               progress: Progress = NULL_PROGRESS) -> WalkResult:
    """Every model file under ``roots`` (path, kind hint); nested roots keep their own kind."""
    roots = [(Path(path), kind) for path, kind in roots]
    root_paths = {os.path.abspath(path) for path, _ in roots}
    excluded = {os.path.abspath(path) for path in exclude}
    visited: set[tuple[int, int]] = set()
    result = WalkResult()
    task = progress.task("Looking for model files", total=None, unit="files")
    for root, kind in roots:
        _walk_one(os.path.abspath(root), kind, root_paths, excluded, visited, result, task)
    task.finish()
    return result


def _walk_one(root: str, kind: str | None, root_paths: set[str], excluded: set[str],
              visited: set[tuple[int, int]], result: WalkResult, task) -> None:
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            stat = os.stat(folder)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) in visited:
            continue
        visited.add((stat.st_dev, stat.st_ino))
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as error:
            result.skipped.append({"path": folder, "reason": error.strerror or str(error)})
            continue
        names = {entry.name for entry in entries}
        if PIPELINE_INDEX in names and folder != root:
            try:
                identity, _ = folder_listing(folder)
            except OSError as error:
                result.skipped.append({"path": folder, "reason": error.strerror or str(error)})
                continue
            result.files.append(FoundFile(folder, identity, kind, folder=True))
            task.advance(1)
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    if not entry.name.startswith(".") and entry.path not in root_paths \
                            and entry.path not in excluded:
                        pending.append(entry.path)
                elif is_model_file_name(entry.name) and entry.is_file():
                    found = FoundFile(entry.path, FileIdentity.of(entry.stat()), kind,
                                      _sidecars(folder, entry.name, names))
                    result.files.append(found)
                    task.advance(1)
                elif is_model_file_name(entry.name):
                    _skip_irregular(entry, result)
            except OSError:
                # Vanished between listing and stat, or a dangling link: nothing to catalog.
                continue


def _skip_irregular(entry: os.DirEntry, result: WalkResult) -> None:
    """A FIFO, socket or device named like a model is listed as skipped: reading it would hang the scan."""
    from sdhub.formats.regular_file import irregular_kind

    kind = irregular_kind(entry.stat().st_mode)
    if kind is not None:
        result.skipped.append({"path": entry.path, "reason": f"{kind}, not a model file; not read"})


def sidecar_stamps(model_path: str | Path) -> dict[str, str]:
    """For each sidecar of ``model_path`` that exists: its suffix and an mtime/size stamp."""
    folder, name = os.path.split(os.fspath(model_path))
    return _sidecars(folder, name, None)


def _sidecars(folder: str, name: str, names: set[str] | None) -> dict[str, str]:
    stem = model_stem(name)
    stamps = {}
    for suffix in SIDECAR_SUFFIXES:
        if names is None or stem + suffix in names:
            try:
                stat = os.stat(os.path.join(folder, stem + suffix))
            except OSError:
                continue
            if not stat_mode.S_ISREG(stat.st_mode):
                continue  # a FIFO or device named like a sidecar: reading it would hang the scan
            stamps[suffix] = f"{stat.st_mtime_ns}:{stat.st_size}"
    return stamps
