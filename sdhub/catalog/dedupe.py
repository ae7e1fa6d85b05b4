"""Freeing the space duplicates take: hard-link copies together, or delete the extra copies.

Before touching a copy, its size, mtime and inode must still be what the catalog recorded, so a
file changed since the last scan is never replaced on the strength of a stale hash. Linking
never removes a path: a temporary hard link to the kept copy is made next to the duplicate and
renamed over it in one atomic step. Diffusers folders are never linked (hard links join files);
deleting a folder copy removes the whole folder.
"""

from __future__ import annotations

import os
import secrets
import shutil

import sqlite_utils

from sdhub.catalog.analysis import FileIdentity, path_identity
from sdhub.catalog.db import write_transaction
from sdhub.catalog.records import Asset, DedupeReport, DuplicatesReport, FileRecord


def _unchanged(record: FileRecord) -> os.stat_result | None:
    """The file's (or folder's) stat if it still matches the catalog row, else None."""
    try:
        stat = os.stat(record.path)
        identity = path_identity(record.path)
    except OSError:
        return None
    if identity != FileIdentity(record.size, record.mtime_ns, record.inode, record.device):
        return None
    return stat


def _keeper_order(asset: Asset, record: FileRecord) -> tuple[bool, int]:
    # Keep the copy in the folder meant for its kind, then the one catalogued first.
    return (record.folder_kind != asset.kind, record.id)


def _real_copies(asset: Asset) -> tuple[list[FileRecord], list[FileRecord]]:
    """Present copies split into real files and symbolic links (which are left alone: they take no space,
    a hard link cannot be made from them, and deleting a link's target would break it)."""
    real, links = [], []
    for record in sorted(asset.present_files, key=lambda r: _keeper_order(asset, r)):
        (links if os.path.islink(record.path) else real).append(record)
    return real, links


def _link_targets(links: list[FileRecord]) -> set[str]:
    return {os.path.realpath(link.path) for link in links}


def link_duplicates(db: sqlite_utils.Database, report: DuplicatesReport) -> DedupeReport:
    """Replace every extra copy with a hard link to one kept copy on the same filesystem."""
    result = DedupeReport(action="link")
    for group in report.groups:
        real, _ = _real_copies(group.asset)
        if group.asset.is_folder:
            result.skipped += [{"path": copy.path, "reason": "a diffusers folder; hard links join files, not folders"}
                               for copy in real[1:]]
            continue
        by_device: dict[int, list[FileRecord]] = {}
        for record in real:
            by_device.setdefault(record.device, []).append(record)
        for copies in by_device.values():
            if len(by_device) > 1 and len({c.inode for c in copies}) == 1:
                for copy in copies:
                    result.skipped.append({"path": copy.path,
                                           "reason": "the only copy on its filesystem; hard links cannot cross"})
            keeper = next((c for c in copies if _unchanged(c) is not None), None)
            for copy in copies:
                if keeper is None or copy.inode == keeper.inode:
                    continue
                stat = _unchanged(copy)
                if stat is None:
                    result.skipped.append({"path": copy.path, "reason": "changed since the last scan; scan again"})
                    continue
                try:
                    _replace_with_link(keeper.path, copy.path)
                except OSError as error:
                    result.skipped.append({"path": copy.path, "reason": error.strerror or str(error)})
                    continue
                if stat.st_nlink == 1:
                    result.bytes_freed += copy.size
                result.changed.append({"path": copy.path, "kept": keeper.path})
            if keeper is not None:
                _follow_keeper(db, group.asset, keeper)
    return result


def _follow_keeper(db: sqlite_utils.Database, asset: Asset, keeper: FileRecord) -> None:
    """Point the rows of paths that now lead to the kept inode (the replaced copies, symbolic links
    to them) at it, so the next scan sees them unchanged instead of reading them again."""
    updates = []
    for record in asset.present_files:
        try:
            stat = os.stat(record.path)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) == (keeper.device, keeper.inode) and record.inode != keeper.inode:
            updates.append((stat.st_ino, stat.st_dev, stat.st_mtime_ns, stat.st_size, record.id))
    if updates:
        with write_transaction(db):
            db.conn.executemany("UPDATE files SET inode = ?, device = ?, mtime_ns = ?, size = ? WHERE id = ?",
                                updates)


def _replace_with_link(keep: str, replace: str) -> None:
    folder, name = os.path.split(replace)
    temporary = os.path.join(folder, f".sdhub-tmp-{secrets.token_hex(4)}-{name}")
    os.link(keep, temporary)
    try:
        os.replace(temporary, replace)
    except OSError:
        os.unlink(temporary)
        raise


def delete_duplicates(db: sqlite_utils.Database, report: DuplicatesReport) -> DedupeReport:
    """Delete every copy but one (the one in its kind's folder, else the first catalogued)."""
    result = DedupeReport(action="delete")
    for group in report.groups:
        copies, links = _real_copies(group.asset)
        targets = _link_targets(links)
        keeper = next((c for c in copies if _unchanged(c) is not None), None)
        if keeper is None:
            for copy in copies:
                result.skipped.append({"path": copy.path, "reason": "changed since the last scan; scan again"})
            continue
        for copy in copies:
            if copy.id == keeper.id:
                continue
            if copy.inode == keeper.inode and copy.device == keeper.device:
                result.skipped.append({"path": copy.path, "reason": "a hard link to the kept copy; frees nothing"})
                continue
            if os.path.realpath(copy.path) in targets:
                result.skipped.append({"path": copy.path, "reason": "symbolic links point to it"})
                continue
            stat = _unchanged(copy)
            if stat is None:
                result.skipped.append({"path": copy.path, "reason": "changed since the last scan; scan again"})
                continue
            try:
                if group.asset.is_folder:
                    shutil.rmtree(copy.path)
                else:
                    os.unlink(copy.path)
            except OSError as error:
                result.skipped.append({"path": copy.path, "reason": error.strerror or str(error)})
                continue
            if group.asset.is_folder or stat.st_nlink == 1:  # a folder's link count counts its subfolders
                result.bytes_freed += copy.size
            with write_transaction(db):
                db.execute("DELETE FROM files WHERE id = ?", [copy.id])
            result.changed.append({"path": copy.path, "kept": keeper.path})
    return result
