"""Filing a catalogued file: move it (with its sidecars) into its kind's folder and record the move.

``sdhub mv NAME --kind controlnet`` is how a download kept in ``downloads/`` (a kind sdhub could
not tell) reaches its folder; ``--to FOLDER`` moves it anywhere. A move within one file system is
a rename; across file systems the file is copied next to its destination, fsynced, and only then
placed under its name (never over another file) and the original removed, so a stop at any point
leaves a whole file at one of the two places.
"""

from __future__ import annotations

import errno
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdhub.catalog import store
from sdhub.catalog.analysis import FileIdentity, path_identity
from sdhub.catalog.db import write_transaction
from sdhub.catalog.records import json_dict
from sdhub.catalog.sidecars import move_sidecars
from sdhub.catalog.walker import FoundFile, sidecar_stamps
from sdhub.errors import NotFoundError, SdhubError, UsageError
from sdhub.models.kinds import kind_named

if TYPE_CHECKING:
    from sdhub.catalog import Catalog
    from sdhub.catalog.records import Asset, FileRecord


@dataclass
class MoveReport:
    """What ``move`` did: the files moved (from, to), their sidecars, and the asset's kind before and after."""

    sha256: str
    name: str
    kind: str
    previous_kind: str
    kind_set_by_user: bool
    folder: str
    moved: list[dict[str, str]] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def move_asset(catalog: Catalog, ref: str, *, kind: str | None = None,
               to: str | os.PathLike[str] | None = None) -> MoveReport:
    """Move the files of the asset ``ref`` into the folder of ``kind`` (or into ``to``) and update the
    catalog; ``kind`` is also recorded as the user's choice of kind ("set by the user")."""
    if kind is None and to is None:
        raise UsageError("say where to: --kind KIND (its folder in this home) or --to FOLDER")
    chosen = kind_named(kind) if kind is not None else None
    asset = catalog.find(ref)
    if to is not None:
        folder = Path(to).expanduser().absolute()
    else:
        assert chosen is not None
        folder = _kind_folder(catalog, asset, chosen)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder")
    present = _copies_to_move(asset, ref)
    report = MoveReport(sha256=asset.sha256, name=asset.name, kind=asset.kind, previous_kind=asset.kind,
                        kind_set_by_user=False, folder=str(folder))
    for record in present:
        source = Path(record.path)
        if source.parent.resolve() == folder.resolve():
            report.already_there.append(str(source))
            continue
        target = _move_one(source, folder, asset)
        report.moved.append({"from": str(source), "to": str(target)})
        report.sidecars += [str(p) for p in move_sidecars(source, target)]
        _record_move(catalog, record.id, asset, target)
    if chosen is not None:
        updated = catalog.set_kind(asset.sha256, chosen)
        report.kind, report.kind_set_by_user = updated.kind, True
    return report


def _kind_folder(catalog: Catalog, asset: Asset, kind: str) -> Path:
    """The home's folder for ``kind``; for the kind its tensors show, the one its variant names if any
    (an upscaler's architecture: A1111's models/DAT, models/HAT...)."""
    row = store.asset_row(catalog.db, asset_id=asset.id)
    report = json_dict(row["inspect"]) if row else {}
    variant = report.get("variant") if report.get("kind") == kind else None
    return catalog.home.folder_for(kind, variant if isinstance(variant, str) else None)


def _copies_to_move(asset: Asset, ref: str) -> list[FileRecord]:
    """The copy ``ref`` names by its path, else the asset's one copy on disk; several copies must be
    told apart by path (moving them all into one folder would only make duplicates)."""
    present = asset.present_files
    if not present:
        raise NotFoundError(f"{asset.name}: no copy of it is on disk any more (`sdhub scan` to look again)")
    named = str(Path(ref).expanduser().absolute())
    chosen = [record for record in present if record.path == named]
    if chosen or len(present) == 1:
        return chosen or present
    listing = "; ".join(record.path for record in present[:8])
    raise UsageError(f"{asset.name} has {len(present)} copies ({listing}): name the one to move by its path")


def _move_one(source: Path, folder: Path, asset: Asset) -> Path:
    """Move one file (or a diffusers folder) into ``folder`` under its own name, or the next free
    ``name-2``...; never over another file."""
    from sdhub.sources.placing import place_file

    try:
        folder.mkdir(parents=True, exist_ok=True)
        if asset.is_folder:
            return _move_folder(source, folder)
        target, _ = place_file(source, folder, source.name, asset.sha256, asset.size, reuse_identical=False)
        return target
    except OSError as error:
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        raise SdhubError(f"cannot move {source} to {folder}: {error.strerror or error}{where}") from None


def _move_folder(source: Path, folder: Path) -> Path:
    """A diffusers folder moves by rename only (same file system); across file systems the user moves it."""
    from sdhub.sources.filenames import numbered_name

    number = 1
    while True:
        target = folder / (source.name if number == 1 else numbered_name(source.name, number))
        if not target.exists():
            break
        number += 1
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno == errno.EXDEV:
            raise UsageError(f"{source} is a diffusers folder on another file system than {folder}: move it "
                             "yourself (cp -r, then rm -r) and run `sdhub scan`") from None
        raise
    return target


def _record_move(catalog: Catalog, file_id: int, asset: Asset, target: Path) -> None:
    identity: FileIdentity = path_identity(str(target))
    stamps = FoundFile(str(target), identity, None, sidecar_stamps(target)).sidecar_signature
    with write_transaction(catalog.db):
        store.move_file(catalog.db, file_id, asset.id, str(target), identity, catalog._folder_kind(target), stamps)


__all__ = ["MoveReport", "move_asset"]
