"""The catalog: every asset of a home indexed in SQLite (``catalog/sdhub.db``).

``Catalog(home)`` is the one entry point: scan the home's folders, look assets up by any
reference, list and search them, find and free duplicates, and record what sources, tests and
conversions learn about a file. An asset is one model file, or one diffusers pipeline folder.
The tables are documented in docs/catalog.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from sdhub.catalog import dedupe, kind_choice, queries, store
from sdhub.catalog.analysis import (
    PIPELINE_INDEX,
    FileAnalysis,
    FileIdentity,
    analyse_file,
    analyse_folder,
    is_model_file_name,
    is_pipeline_folder,
    path_identity,
)
from sdhub.catalog.db import connect, write_transaction
from sdhub.catalog.records import (
    Asset,
    AssetDetails,
    DedupeReport,
    DuplicatesReport,
    RemoveReport,
    Root,
    ScanReport,
    json_list,
)
from sdhub.catalog.moving import MoveReport, move_asset
from sdhub.catalog.remote import SOURCES, remote_fields
from sdhub.catalog.scanner import Scanner
from sdhub.catalog.schema import migrate
from sdhub.catalog.sidecars import plan_sidecars, sd_version
from sdhub.catalog.walker import FoundFile, sidecar_stamps
from sdhub.config import Home, as_home, recorded_layout, write_home_settings
from sdhub.errors import NotFoundError, SdhubError, UsageError, VerificationError
from sdhub.ops.leftovers import CleanReport, Leftover, clean_leftovers, find_leftovers
from sdhub.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from sdhub.catalog.generation_defaults import DefaultsUpdate
    from sdhub.ops.hashing import FileHashes
    from sdhub.catalog.wildcard_files import WildcardFile

__all__ = ["Asset", "AssetDetails", "Catalog", "DedupeReport", "DuplicatesReport", "MoveReport", "RemoveReport",
           "Root", "ScanReport", "SidecarExportReport"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class SidecarExportReport:
    """Which sidecar files ``export_sidecars`` wrote (files already up to date are not rewritten); with
    ``dry_run`` nothing is written and ``changes`` holds each file's diff."""

    written: list[str] = field(default_factory=list)
    models: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    dry_run: bool = False
    changes: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_sha256(value: str, what: str) -> str:
    value = str(value).strip().lower()
    if not _SHA256.match(value):
        raise UsageError(f"{what} must be a 64-character SHA-256, got {value!r}")
    return value


class Catalog:
    """The catalog of one home. Open it, use it, ``close()`` it (or use ``with``).

    ``home`` is a ``Home``, a home folder's path, or None for the home sdhub would pick
    (``SDHUB_HOME``, a parent folder holding ``catalog/``, the user data dir).
    """

    def __init__(self, home: Home | str | os.PathLike[str] | None = None) -> None:
        home = as_home(home)
        self.home = home
        try:
            self.db = connect(home.database_path)
            migrate(self.db)
            if recorded_layout(home.root) is None:  # the first scan of a folder records its layout
                write_home_settings(home.root, {"layout": home.layout})
        except (OSError, sqlite3.DatabaseError) as error:
            raise SdhubError(f"cannot open the catalog {home.database_path}: "
                             f"{getattr(error, 'strerror', None) or error}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- folders --------------------------------------------------------------------------------

    def roots(self) -> list[Root]:
        """Every folder a scan walks: the layout's folders, then the extra roots added by the user."""
        roots = []
        listed: set[Path] = set()
        for kind in self.home.folders:
            # A layout may name several folders for a kind (A1111's Lora and LyCORIS): scan each that
            # exists. A folder two kinds share (A1111's ControlNet holds IP-Adapters too) is listed once.
            for number, path in enumerate(self.home.candidate_folders(kind)):
                if path not in listed and (number == 0 or path.is_dir()):
                    listed.add(path)
                    roots.append(Root(str(path), kind, "layout", path.is_dir()))
        for row in self.db.query("SELECT path, kind FROM roots ORDER BY path"):
            roots.append(Root(row["path"], row["kind"], "added", os.path.isdir(row["path"])))
        return roots

    def add_root(self, path: str | os.PathLike[str], kind: str | None = None) -> Root:
        """Add a folder to scan besides the layout's own (a download folder, another install)."""
        folder = Path(path).expanduser().absolute()
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a folder")
        with write_transaction(self.db):
            self.db.execute("INSERT INTO roots (path, kind, added_at) VALUES (?, ?, ?) "
                            "ON CONFLICT(path) DO UPDATE SET kind = excluded.kind", [str(folder), kind, store.now()])
        return Root(str(folder), kind, "added", True)

    def remove_root(self, path: str | os.PathLike[str]) -> Root:
        """Stop scanning an extra root. Files found there stay in the catalog (``remove`` forgets them)."""
        folder = str(Path(path).expanduser().absolute())
        row = self.db.execute("SELECT kind FROM roots WHERE path = ?", [folder]).fetchone()
        if row is None:
            raise NotFoundError(f"{folder} is not an added root; see `sdhub roots`")
        with write_transaction(self.db):
            self.db.execute("DELETE FROM roots WHERE path = ?", [folder])
        return Root(folder, row[0], "added", os.path.isdir(folder))

    # -- scanning -------------------------------------------------------------------------------

    def scan(self, progress: Progress = NULL_PROGRESS, full: bool = False, *, check_values: bool = False,
             workers: int | None = None) -> ScanReport:
        """Bring the catalog up to date with the files on disk, reading only new or changed files.

        ``full`` reads every file again; ``check_values`` also looks for NaN/Inf weights and broken
        CLIP position ids in the files it reads (a second read of each).
        """
        roots = [(Path(root.path), root.kind) for root in self.roots()]
        exclude = [self.home.catalog_dir, self.home.outputs_dir]
        scanner = Scanner(self.db, progress=progress, full=full, check_values=check_values, workers=workers)
        report = scanner.scan(roots, exclude)
        report.wildcard_files = len(self.wildcard_files(refresh=True))
        report.leftovers = [item.to_dict() for item in self.leftovers()]
        return report

    def wildcard_files(self, *, refresh: bool = False) -> list["WildcardFile"]:
        """Every wildcard file in the home's wildcards folders with its entry count (``refresh``: read changes first)."""
        from sdhub.catalog import wildcard_files

        if refresh:
            return wildcard_files.refresh(self.db, wildcard_files.wildcard_roots(self.home))
        return wildcard_files.list_wildcard_files(self.db)

    def leftover_folders(self) -> list[Path]:
        """Where interrupted writers may have left files: every scanned folder, downloads/, the catalog and outputs."""
        return [Path(root.path) for root in self.roots() if root.exists] + [
            self.home.downloads_dir, self.home.catalog_dir, self.home.outputs_dir]

    def leftovers(self) -> list[Leftover]:
        """Temporary files and stopped downloads' ``.part`` files in the home, stale or not."""
        return find_leftovers(self.leftover_folders())

    def clean(self, *, dry_run: bool = False, partials: bool = False) -> CleanReport:
        """Remove the home's stale temporary files (and resumable download ``.part`` files with ``partials``)."""
        return clean_leftovers(self.leftover_folders(), dry_run=dry_run, partials=partials)

    def _folder_kind(self, path: Path) -> str | None:
        best: tuple[int, str | None] = (-1, None)
        for root in self.roots():
            root_path = Path(root.path)
            if path.is_relative_to(root_path) and len(root_path.parts) > best[0]:
                best = (len(root_path.parts), root.kind)
        return best[1]

    def add_file(self, path: str | os.PathLike[str], progress: Progress = NULL_PROGRESS, *,
                 check_values: bool = False, hashes: FileHashes | None = None,
                 expected_sha256: str | None = None) -> Asset:
        """Catalog one file now (a download that just landed); unchanged files are not read again.

        ``hashes``: every hash of the file, computed by the caller from these bytes in a pass it
        made anyway (while copying it); they are stored as given and the file is not read for
        them. ``expected_sha256``: the SHA-256 the caller verified (a download checked against its
        published hash); the file is read once for the other hashes, and a file whose SHA-256
        differs has changed since: refused with VerificationError, nothing recorded.
        """
        file = Path(path).expanduser().absolute()
        if not file.is_file():
            raise NotFoundError(f"{file} does not exist or is not a file")
        if not is_model_file_name(file.name):
            raise UsageError(f"{file.name} is not a model file name (or is a temporary/partial file)")

        def read() -> FileAnalysis:
            analysis = analyse_file(file, progress, check_values=check_values, hashes=hashes)
            if expected_sha256 and analysis.sha256 != expected_sha256.lower():
                raise VerificationError(f"{file} has SHA-256 {analysis.sha256[:16]}..., not the "
                                        f"{expected_sha256[:16].lower()}... it was verified with: it changed since")
            return analysis

        return self._add(file, FileIdentity.of(file.stat()), read, sidecar_stamps(file), folder=False)

    def add_folder(self, path: str | os.PathLike[str], progress: Progress = NULL_PROGRESS, *,
                   check_values: bool = False, known_sha256: Mapping[str, str] | None = None) -> Asset:
        """Catalog a diffusers pipeline folder now, as one asset; an unchanged folder is not read again.

        ``known_sha256`` maps paths inside the folder ('/'-separated) to the SHA-256 the caller
        computed while writing those files (a Hugging Face repo just placed); only the other files
        are read. When the folder changed, only the files that changed are read.
        """
        folder = Path(path).expanduser().absolute()
        if not folder.is_dir():
            raise NotFoundError(f"{folder} does not exist or is not a folder")
        if not is_pipeline_folder(folder):
            raise UsageError(f"{folder} is not a diffusers pipeline folder (it has no {PIPELINE_INDEX})")
        cached = store.folder_files(self.db, str(folder))

        def read() -> FileAnalysis:
            return analyse_folder(folder, progress, check_values=check_values, known_sha256=known_sha256,
                                  cached=cached)

        return self._add(folder, path_identity(folder), read, {}, folder=True)

    def _add(self, path: Path, identity: FileIdentity, read: Callable[[], FileAnalysis],
             sidecars: dict[str, str], *, folder: bool) -> Asset:
        row = self.db.execute("SELECT asset_id, size, mtime_ns, inode, device FROM files WHERE path = ?",
                              [str(path)]).fetchone()
        if row is not None and FileIdentity(*row[1:]) == identity:
            return queries.get_asset(self.db, row[0])
        analysis = read()
        found = FoundFile(str(path), analysis.identity, self._folder_kind(path), sidecars, folder=folder)
        with write_transaction(self.db):
            asset_id = Scanner(self.db).record_analysis(found, analysis, row is not None, {})
        return queries.get_asset(self.db, asset_id)

    # -- looking things up ----------------------------------------------------------------------

    def find(self, ref: str) -> Asset:
        """The asset named by an id, a path, a name or name prefix, or any hash or hash prefix."""
        return queries.find_asset(self.db, ref)

    def origin_hashes(self, sha256: str) -> list[str]:
        """The asset's SHA-256, then those of the files it was made from, nearest first (what a lookup
        by hash on Civitai should try: it knows the published file, not a local conversion)."""
        return queries.origin_hashes(self.db, str(sha256).lower())

    def get(self, sha256: str) -> Asset | None:
        """The asset with this SHA-256, or None."""
        row = self.db.execute("SELECT id FROM assets WHERE sha256 = ?", [str(sha256).lower()]).fetchone()
        return queries.get_asset(self.db, row[0]) if row else None

    def local_copy(self, sha256: str) -> Path | None:
        """A file of the library holding this content or, failing that, one made from it (the
        safetensors conversion of a pickle), as the catalog last saw it; None when there is none."""
        sha256 = str(sha256).lower()
        assets = queries.load_assets(self.db, "a.sha256 = ? OR a.source_sha256 = ?", [sha256, sha256], "a.id")
        for asset in sorted(assets, key=lambda a: a.sha256 != sha256):
            for record in asset.present_files:
                try:
                    unchanged = path_identity(record.path) == FileIdentity(record.size, record.mtime_ns,
                                                                           record.inode, record.device)
                except OSError:
                    continue
                if unchanged and os.path.isfile(record.path):
                    return Path(record.path)
        return None

    def without_remote(self, source: str) -> list[Asset]:
        """Model-file assets that no record from ``source`` describes, oldest first (what
        ``civitai sync`` looks up by hash; folder assets are left out: sources know files)."""
        if source not in SOURCES:
            raise UsageError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")
        return queries.without_remote(self.db, source)

    def civitai_versions(self, sha256: str | None = None) -> list[tuple[Asset, str, str]]:
        """(asset, Civitai model id, version id) for every asset with its own Civitai record (or the one
        with ``sha256``): the versions a library holds, for ``outdated`` and ``get --update``."""
        where = "r.source = 'civitai' AND r.inherited_from IS NULL AND r.model_id IS NOT NULL " \
                "AND r.version_id IS NOT NULL" + (" AND a.sha256 = ?" if sha256 else "")
        rows = self.db.execute(f"SELECT a.id, r.model_id, r.version_id FROM remote r JOIN assets a ON a.id = r.asset_id "
                               f"WHERE {where} ORDER BY a.id", [str(sha256).lower()] if sha256 else []).fetchall()
        return [(queries.get_asset(self.db, asset_id), model_id, version_id) for asset_id, model_id, version_id in rows]

    def set_newer_version(self, sha256: str, newer: dict[str, Any] | None) -> None:
        """Record the newer Civitai version found for an asset (None: it is up to date)."""
        asset = self._require(sha256)
        with write_transaction(self.db):
            self.db.execute("UPDATE assets SET newer_version = ? WHERE id = ?",
                            [None if newer is None else json.dumps(newer, ensure_ascii=False), asset.id])

    def list_assets(self, kind: str | None = None, base: str | None = None, sort: str = "name", *,
                    problems: bool = False) -> list[Asset]:
        """All assets, optionally of one kind and base model, sorted by name, size or date added;
        ``problems`` keeps only those with something wrong (broken, unsafe, missing, failed test, problems).

        ``base`` takes either vocabulary: a family (``sdxl``: Pony and Illustrious LoRAs included), an
        architecture (``sd2-v``) or a label (``Pony``: only what carries it; ``SD 1.5`` means sd1).
        """
        return queries.list_assets(self.db, kind=kind, base=base, sort=sort, problems=problems)

    def search(self, text: str, limit: int = 100, *, kind: str | None = None, base: str | None = None) -> list[Asset]:
        """Full-text search over names, tags, trigger words, descriptions, notes and base models;
        ``kind`` and ``base`` narrow it as in ``list_assets``."""
        return queries.search(self.db, text, limit, kind=kind, base=base)

    def show(self, ref: str) -> AssetDetails:
        """Everything known about one asset, including every copy's path, ancestors and derived copies."""
        return queries.asset_details(self.db, self.find(ref))

    # -- duplicates -----------------------------------------------------------------------------

    def duplicates(self) -> DuplicatesReport:
        """Contents present at more than one path, with the bytes the extra copies waste."""
        return queries.duplicates(self.db)

    def link_duplicates(self) -> DedupeReport:
        """Replace extra copies with hard links to one copy (same filesystem only); no path is lost."""
        return dedupe.link_duplicates(self.db, self.duplicates())

    def delete_duplicates(self) -> DedupeReport:
        """Delete every copy of each duplicated content but one."""
        return dedupe.delete_duplicates(self.db, self.duplicates())

    # -- changing assets ------------------------------------------------------------------------

    def remove(self, ref: str, files: bool = False) -> RemoveReport:
        """Forget an asset; with ``files`` also delete its files. A later scan re-adds files still on disk."""
        asset = self.find(ref)
        deleted = []
        if files:
            for record in asset.present_files:
                try:
                    if asset.is_folder and not os.path.islink(record.path):
                        shutil.rmtree(record.path)
                    else:
                        os.unlink(record.path)
                except FileNotFoundError:
                    continue
                except OSError as error:
                    raise SdhubError(f"cannot delete {record.path}: {error.strerror or error}") from None
                deleted.append(record.path)
        with write_transaction(self.db):
            for table in ("files", "hashes", "remote", "previews", "tests"):
                self.db.execute(f"DELETE FROM {table} WHERE asset_id = ?", [asset.id])
            self.db.execute("DELETE FROM assets WHERE id = ?", [asset.id])
        return RemoveReport(asset, deleted)

    def tag(self, ref: str, tags: Iterable[str]) -> Asset:
        """Add tags to an asset; a tag written ``-name`` removes ``name``."""
        asset = self.find(ref)
        with write_transaction(self.db):
            # Read under the write lock so a tag added by another process at the same time is kept.
            row = store.asset_row(self.db, asset_id=asset.id)
            if row is None:
                raise NotFoundError(f"asset {asset.id} was removed meanwhile")
            current = json_list(row["tags"])
            for tag in tags:
                tag = tag.strip()
                if tag.startswith("-") and len(tag) > 1:
                    current = [t for t in current if t.lower() != tag[1:].lower()]
                elif tag and tag.lower() not in (t.lower() for t in current):
                    current.append(tag)
            store.update_asset(self.db, asset.id, {"tags": current})
        return queries.get_asset(self.db, asset.id)

    def set_kind(self, ref: str, kind: str, *, by: str = kind_choice.USER, evidence: str | None = None) -> Asset:
        """File an asset as ``kind``. The user's choice (the default) wins over what its tensors say and
        survives rescans; a source's (``by="civitai"``) fills in only where the tensors cannot tell."""
        from sdhub.models.kinds import kind_named

        kind = kind_named(kind)
        asset = self.find(ref)
        with write_transaction(self.db):
            row = store.asset_row(self.db, asset_id=asset.id)
            if row is None:
                raise NotFoundError(f"asset {asset.id} was removed meanwhile")
            new_kind, inspect = kind_choice.choose(row["inspect"], kind, by, evidence or kind_choice.SET_BY_USER)
            store.update_asset(self.db, asset.id, {"kind": new_kind, "inspect": inspect})
        return queries.get_asset(self.db, asset.id)

    def set_generation_defaults(self, ref: str, values: Mapping[str, Any],
                                clear: Iterable[str] = ()) -> "DefaultsUpdate":
        """Set or clear a checkpoint's generation defaults (``vae``, ``clip_skip``, ``sampler``, ``schedule``,
        ``cfg_scale``, ``negative``); the VAE and negative prompt also go to A1111's ``.json`` beside each copy.
        Values are taken as given: ``sdhub.generate.model_defaults.set_model_defaults`` checks them first."""
        from sdhub.catalog.generation_defaults import DefaultsUpdate, GenerationDefaults, write_generation_defaults

        asset = self.find(ref)
        written = write_generation_defaults(self.db, asset, values, clear)
        asset = queries.get_asset(self.db, asset.id)
        return DefaultsUpdate(asset, GenerationDefaults.of(asset), written)

    def move(self, ref: str, *, kind: str | None = None, to: str | os.PathLike[str] | None = None) -> MoveReport:
        """Move an asset's files (with their sidecars) into the folder of ``kind`` or into ``to``; ``kind``
        is recorded as the user's choice. ``sdhub mv NAME --kind controlnet`` files a kept download."""
        return move_asset(self, ref, kind=kind, to=to)

    def _require(self, sha256: str) -> Asset:
        sha256 = _check_sha256(sha256, "sha256")
        asset = self.get(sha256)
        if asset is None:
            raise NotFoundError(f"no asset with SHA-256 {sha256} in the catalog; add the file first")
        return asset

    def set_remote(self, sha256: str, source: str, data: dict[str, Any]) -> Asset:
        """Record what Civitai or Hugging Face says about a file; derived copies inherit it."""
        asset = self._require(sha256)
        fields = remote_fields(source, data, asset.sha256)
        with write_transaction(self.db):
            store.put_remote(self.db, asset.id, fields, data)
            store.propagate_to_derived(self.db, asset.sha256)
        return queries.get_asset(self.db, asset.id)

    def add_preview(self, sha256: str, *, source: str, path: str | os.PathLike[str] | None = None,
                    url: str | None = None, nsfw_level: int | None = None) -> Asset:
        """Remember a preview image of an asset: a local file (``catalog/previews/...``), its URL, or both;
        ``nsfw_level`` is Civitai's rating of it (1 PG ... 32 Blocked) when known."""
        asset = self._require(sha256)
        if path is None and url is None:
            raise UsageError("a preview needs a path or a URL")
        with write_transaction(self.db):
            store.add_preview(self.db, asset.id, source=source, path=None if path is None else str(path), url=url,
                              nsfw_level=nsfw_level)
        return queries.get_asset(self.db, asset.id)

    def record_test(self, sha256: str, result: Any) -> Asset:
        """Store a reference-generation result; its verdict becomes the asset's status."""
        asset = self._require(sha256)
        data = _plain(result)
        verdict = data.get("verdict")
        if not verdict:
            raise UsageError("a test result needs a 'verdict'")
        image = data.get("image_path") or data.get("image")
        seconds = data.get("seconds")
        details = {k: v for k, v in data.items() if k not in ("verdict", "kind", "image_path", "image", "seconds")}
        stamp = store.now()
        with write_transaction(self.db):
            self.db.execute(
                "INSERT INTO tests (asset_id, kind, verdict, details, image_path, seconds, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [asset.id, str(data.get("kind") or "reference"), str(verdict),
                 json.dumps(details, ensure_ascii=False, default=str), None if image is None else str(image),
                 None if seconds is None else float(seconds), stamp])
            self.db.execute("UPDATE assets SET status = ?, status_at = ?, updated_at = ? WHERE id = ?",
                            [str(verdict), stamp, stamp, asset.id])
        return queries.get_asset(self.db, asset.id)

    def record_lineage(self, child_sha256: str, parent_sha256: str, relation: str | None = None) -> None:
        """Record that one file was made from another (convert, prune, cast); the child inherits metadata."""
        child = _check_sha256(child_sha256, "child sha256")
        parent = _check_sha256(parent_sha256, "parent sha256")
        if child == parent:
            raise UsageError("a file cannot be made from itself")
        with write_transaction(self.db):
            store.link_lineage(self.db, child, parent, relation)

    # -- sidecars -------------------------------------------------------------------------------

    def export_sidecars(self, progress: Progress = NULL_PROGRESS, *, dry_run: bool = False) -> SidecarExportReport:
        """Write A1111 ``.json``, Civitai Helper ``.civitai.info``, StabilityMatrix ``.cm-info.json`` and preview
        sidecars next to every present model file. Values a file holds are kept (only empty keys are
        filled); a file that would not change is not written; ``dry_run`` writes nothing and reports diffs."""
        report = SidecarExportReport(dry_run=dry_run)
        # Sidecars are a convention for model files; a diffusers folder has none.
        assets = [a for a in self.list_assets() if a.present_files and not a.is_folder]
        task = progress.task("Writing sidecars", total=len(assets), unit="models")
        for asset in assets:
            civitai, fetched_at = self._civitai_record(asset.id)
            user = _user_metadata(asset)
            preview = self._local_preview(asset)
            for record in asset.present_files:
                report.models += 1
                try:
                    changes = plan_sidecars(record.path, civitai=civitai, user=user, preview=preview,
                                            stability_matrix=self._stability_matrix(asset, civitai, fetched_at),
                                            fetched_at=fetched_at)
                    for change in changes:
                        if dry_run:
                            report.changes.append({"path": str(change.path), "diff": change.diff})
                        else:
                            change.apply()
                            report.written.append(str(change.path))
                except OSError as error:
                    report.errors.append({"path": record.path, "error": error.strerror or str(error)})
            task.advance(1)
        task.finish()
        return report

    def _civitai_record(self, asset_id: int) -> tuple[dict[str, Any] | None, str | None]:
        """The asset's Civitai record and when it was fetched (None, None without one)."""
        row = self.db.execute("SELECT json, fetched_at FROM remote WHERE asset_id = ? AND source = 'civitai'",
                              [asset_id]).fetchone()
        if row is None:
            return None, None
        value = json.loads(row[0])
        return (value, row[1]) if isinstance(value, dict) and value else (None, None)

    def _stability_matrix(self, asset: Asset, civitai: dict[str, Any] | None,
                          fetched_at: str | None) -> dict[str, Any] | None:
        """StabilityMatrix's ``ConnectedModelInfo`` fields for an asset Civitai knows (None otherwise)."""
        from sdhub.catalog.remote import civitai_fields

        if not civitai:
            return None
        try:
            fields = civitai_fields(civitai, asset.sha256)
        except SdhubError:
            return None
        if fields.model_id is None or not fields.model_id.isdigit():
            return None
        model = civitai.get("model") if isinstance(civitai.get("model"), dict) else {}
        files = [f for f in civitai.get("files") or [] if isinstance(f, dict)]
        file = next((f for f in files if str((f.get("hashes") or {}).get("SHA256", "")).lower() == asset.sha256),
                    files[0] if len(files) == 1 else {})
        hashes = dict(self.db.execute("SELECT scheme, value FROM hashes WHERE asset_id = ?", [asset.id]).fetchall())
        version_id = civitai.get("id")
        return {
            "ModelId": int(fields.model_id), "ModelName": fields.name, "ModelDescription": model.get("description") or "",
            "Nsfw": bool(model.get("nsfw")), "Tags": [t for t in model.get("tags") or [] if isinstance(t, str)],
            "ModelType": model.get("type"), "VersionId": version_id if isinstance(version_id, int) else None,
            "VersionName": civitai.get("name"), "VersionDescription": civitai.get("description"),
            "BaseModel": civitai.get("baseModel"), "FileMetadata": file.get("metadata"), "ImportedAt": fetched_at,
            # StabilityMatrix's CivitFileHashes: Civitai's upper-case hex.
            "Hashes": {"SHA256": asset.sha256.upper(), "CRC32": (hashes.get("crc32") or "").upper() or None,
                       "BLAKE3": (hashes.get("blake3") or "").upper() or None},
            "TrainedWords": asset.trigger_words, "Stats": model.get("stats") or civitai.get("stats"),
            "Source": 0,  # ConnectedModelSource.Civitai, written as its number (the enum has no converter)
        }

    def _local_preview(self, asset: Asset) -> str | None:
        """A preview file of the asset that the user's NSFW setting lets through (one of unknown level is the
        user's own file beside the model, or one saved before levels were recorded)."""
        from sdhub.config import preview_nsfw_max

        highest = preview_nsfw_max()
        for path, level in self.db.execute("SELECT path, nsfw_level FROM previews WHERE asset_id = ? AND path IS NOT NULL "
                                           "ORDER BY id", [asset.id]).fetchall():
            if (level is None or level <= highest) and os.path.isfile(path):
                return path
        return None


def _user_metadata(asset: Asset) -> dict[str, Any]:
    """A1111 ``<base>.json`` keys for an asset, or {} when the catalog knows nothing worth writing. The
    ``sd version`` is the user's when they set one, else derived from the base model."""
    if not (asset.description or asset.trigger_words or asset.preferred_weight or asset.notes or asset.negative_text
            or asset.preferred_vae):
        return {}
    values = {
        "description": asset.description or "",
        "sd version": asset.sd_version or sd_version(asset.base_model, asset.architecture),
        "activation text": ", ".join(asset.trigger_words),
        "preferred weight": asset.preferred_weight or 0,
        "negative text": asset.negative_text or "",
        "notes": asset.notes or "",
    }
    if asset.preferred_vae:
        values["vae"] = asset.preferred_vae
    return values


def _plain(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return dict(result)
    if hasattr(result, "to_dict"):
        return dict(result.to_dict())
    if is_dataclass(result) and not isinstance(result, type):
        return asdict(result)
    raise UsageError(f"cannot record a test result of type {type(result).__name__}")
