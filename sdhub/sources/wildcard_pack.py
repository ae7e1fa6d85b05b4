"""Installing a wildcard pack (a ``.txt`` list, or a ``.zip`` of ``.txt``/``.yaml``/``.json`` files) safely.

A pack is someone else's archive, so nothing in it is trusted: every member must be a regular file
with a relative name that stays inside the wildcards folder (no absolute paths, drive letters or
``..``), not a link or device, of a text type and valid UTF-8, and the archive must stay within
limits on file count, per-file size, total size and compression ratio (zip bombs). Everything is
unpacked into a temporary folder inside the wildcards folder first and renamed into place only
when the whole pack passed, so a refused pack leaves nothing behind. ``__MACOSX/`` and ``.DS_Store``
entries (Finder's metadata, not wildcards) are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sdhub.atomic import TEMP_PREFIX, fsync_directory
from sdhub.errors import BadInputError, UnsafeFileError
from sdhub.text import printable

#: Wildcard file types: what Dynamic Prompts reads (.txt, .yaml, .json) and .yml, YAML's other ending.
TEXT_SUFFIXES = (".txt", ".yaml", ".yml", ".json")
_SKIPPED_PARTS = ("__MACOSX", ".DS_Store")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class PackLimits:
    """What a pack may hold. The biggest community packs are a few thousand lists of a few MB in all."""

    max_files: int = 5000
    max_file_bytes: int = 32 << 20
    max_total_bytes: int = 256 << 20
    #: Text compresses well (wordlists ~5-10x), never 100x unless it is one line repeated: a bomb.
    max_ratio: float = 100.0
    #: Members smaller than this are not held to the ratio (a tiny file of repeats is harmless).
    ratio_floor_bytes: int = 1 << 20


@dataclass
class InstalledPack:
    """Where a pack went and what it holds (paths relative to the wildcards folder)."""

    path: Path
    files: list[str] = field(default_factory=list)
    size: int = 0
    already_present: bool = False


def install_pack(source: Path, folder: Path, *, name: str | None = None,
                 limits: PackLimits = PackLimits()) -> InstalledPack:
    """Put the pack ``source`` into the wildcards ``folder``: a text file as it is, a zip unpacked into a folder
    named after the zip (or its one top-level folder); refused with an ``UnsafeFileError``/``BadInputError``."""
    name = name or source.name
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}wildcards-", dir=folder))
    try:
        if zipfile.is_zipfile(source):
            try:
                files = _unpack_zip(source, staging, limits, name)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
                raise BadInputError(f"{printable(name)} is a damaged zip ({printable(error)}); not installed") from None
            top = _single_top_folder(files)
            target_name = top or _safe_stem(name)
            content = staging / top if top else staging
        elif name.lower().endswith(TEXT_SUFFIXES):
            _check_size(source.stat().st_size, name, limits)
            content = staging / "pack"
            content.mkdir()
            target_name = _safe_file_name(name)
            _copy_checked(source, content / target_name, name, limits)
            files = [target_name]
            return _place_file(content / target_name, folder / target_name, files)
        else:
            raise BadInputError(f"{printable(name)} is neither a zip nor a wildcard file "
                                f"({', '.join(TEXT_SUFFIXES)}); not installed")
        return _place_folder(content, folder / target_name, [f[len(top) + 1:] if top else f for f in files],
                             target_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack_zip(source: Path, staging: Path, limits: PackLimits, pack: str) -> list[str]:
    """Check every member, then extract into ``staging``; the relative names extracted."""
    with zipfile.ZipFile(source) as archive:
        members = [info for info in archive.infolist() if not _skipped(info.filename)]
        files = [info for info in members if not info.is_dir()]
        if len(files) > limits.max_files:
            raise UnsafeFileError(f"{printable(pack)} holds {len(files)} files, more than the "
                                  f"{limits.max_files} a wildcard pack may; not installed")
        if not files:
            raise BadInputError(f"{printable(pack)} holds no wildcard files; not installed")
        names: dict[str, str] = {}
        declared = 0
        for info in members:
            relative = _checked_name(info, pack)
            if info.is_dir():
                continue
            key = relative.lower()
            if key in names:
                raise UnsafeFileError(f"{printable(pack)} holds {printable(relative)} twice; not installed")
            names[key] = relative
            _check_member(info, relative, pack, limits)
            declared += info.file_size
            if declared > limits.max_total_bytes:
                raise UnsafeFileError(f"{printable(pack)} unpacks to more than {limits.max_total_bytes >> 20} MiB, "
                                      "the limit for a wildcard pack; not installed")
        written = 0
        for info in files:
            relative = names[_checked_name(info, pack).lower()]
            target = staging.joinpath(*PurePosixPath(relative).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as member:
                written += _write_checked(member, target, f"{pack}: {relative}", limits, info.file_size)
            if written > limits.max_total_bytes:
                raise UnsafeFileError(f"{printable(pack)} unpacks to more than {limits.max_total_bytes >> 20} MiB; "
                                      "not installed")
        return sorted(names.values())


def _skipped(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return parts[0] == _SKIPPED_PARTS[0] or parts[-1] == _SKIPPED_PARTS[1]


def _checked_name(info: zipfile.ZipInfo, pack: str) -> str:
    """The member's name as a safe relative path, or a refusal saying why."""
    raw = info.filename
    shown = printable(raw)
    name = raw.replace("\\", "/")
    if "\x00" in name or name.startswith("/") or _DRIVE.match(name):
        raise UnsafeFileError(f"{printable(pack)}: {shown} is an absolute path; not installed")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise UnsafeFileError(f"{printable(pack)}: {shown} points outside the wildcards folder; not installed")
    if not parts:
        raise UnsafeFileError(f"{printable(pack)}: a member has an empty name; not installed")
    return "/".join(parts)


def _check_member(info: zipfile.ZipInfo, relative: str, pack: str, limits: PackLimits) -> None:
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type == stat.S_IFLNK:
        raise UnsafeFileError(f"{printable(pack)}: {printable(relative)} is a symbolic link; not installed")
    if file_type not in (0, stat.S_IFREG):
        raise UnsafeFileError(f"{printable(pack)}: {printable(relative)} is not a regular file; not installed")
    if not relative.lower().endswith(TEXT_SUFFIXES):
        raise UnsafeFileError(f"{printable(pack)}: {printable(relative)} is not a wildcard file "
                              f"({', '.join(TEXT_SUFFIXES)}); not installed")
    _check_size(info.file_size, f"{pack}: {relative}", limits)
    if info.file_size >= limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        raise UnsafeFileError(f"{printable(pack)}: {printable(relative)} expands {info.file_size // max(info.compress_size, 1)}"
                              f" times (a zip bomb); not installed")


def _check_size(size: int, what: str, limits: PackLimits) -> None:
    if size > limits.max_file_bytes:
        raise UnsafeFileError(f"{printable(what)} is {size >> 20} MiB, more than the {limits.max_file_bytes >> 20} MiB "
                              "a wildcard file may be; not installed")


def _write_checked(reader, target: Path, what: str, limits: PackLimits, declared: int) -> int:
    """Copy at most the declared size (the zip reader enforces it), then check the text; the bytes written."""
    written = 0
    with open(target, "xb") as out:
        while chunk := reader.read(_CHUNK):
            written += len(chunk)
            if written > min(limits.max_file_bytes, max(declared, 0)):
                raise UnsafeFileError(f"{printable(what)} is bigger than its archive says; not installed")
            out.write(chunk)
    _check_text(target, what)
    return written


def _copy_checked(source: Path, target: Path, what: str, limits: PackLimits) -> None:
    with open(source, "rb") as reader:
        _write_checked(reader, target, what, limits, limits.max_file_bytes)


def _check_text(path: Path, what: str) -> None:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnsafeFileError(f"{printable(what)} is not UTF-8 text (byte {error.start}); not installed") from None
    if "\x00" in text:
        raise UnsafeFileError(f"{printable(what)} holds NUL bytes, so it is not text; not installed")


def _single_top_folder(files: list[str]) -> str | None:
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1 and all("/" in name for name in files):
        return tops.pop()
    return None


def _safe_stem(name: str) -> str:
    stem = Path(name).stem if name.lower().endswith(".zip") else Path(name).name
    return _safe_file_name(stem)


def _safe_file_name(name: str) -> str:
    cleaned = re.sub(r"[\x00-\x1f\x7f/\\:]", "_", Path(name.replace("\\", "/")).name).strip(" .")
    return cleaned or "wildcards"


def _same_tree(left: Path, right: Path) -> bool:
    def listing(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return right.is_dir() and listing(left) == listing(right)


def _place_folder(content: Path, target: Path, files: list[str], shown: str) -> InstalledPack:
    size = sum(p.stat().st_size for p in content.rglob("*") if p.is_file())
    if target.exists() or target.is_symlink():
        if _same_tree(content, target):
            return InstalledPack(target, files, size, already_present=True)
        raise UnsafeFileError(f"{printable(target)} already exists with other files; move it away to install "
                              f"{printable(shown)} again")
    os.rename(content, target)
    fsync_directory(target.parent)
    return InstalledPack(target, files, size)


def _place_file(content: Path, target: Path, files: list[str]) -> InstalledPack:
    size = content.stat().st_size
    if target.exists() or target.is_symlink():
        if target.is_file() and not target.is_symlink() and target.read_bytes() == content.read_bytes():
            return InstalledPack(target, files, size, already_present=True)
        raise UnsafeFileError(f"{printable(target)} already exists with other content; move it away to install it")
    os.rename(content, target)
    fsync_directory(target.parent)
    return InstalledPack(target, files, size)
