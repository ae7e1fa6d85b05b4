"""Hugging Face Hub downloads through ``huggingface_hub`` (its cache, its protocol, its errors).

The endpoint, token and cache folder are read through ``sdhub.config`` (``HF_ENDPOINT``,
``HF_TOKEN``, ``HF_HUB_CACHE``/``HF_HOME``) at call time and passed explicitly, so they apply even
when ``huggingface_hub`` was imported before they were set. Hub errors become sdhub errors that
say what to do (a gated repo needs access granted on its page and ``HF_TOKEN``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sdhub.atomic import create_temp, fsync_directory
from sdhub.config import env
from sdhub.errors import AuthError, NetworkError, NotFoundError, SdhubError, VerificationError
from sdhub.ops.hashing import FileHashes, hash_file
from sdhub.progress import NULL_PROGRESS, Progress
from sdhub.sources.placing import PART_PREFIX, place_file, sha256_file
from sdhub.sources.filenames import sanitize_filename
from sdhub.sources.refs import HubRef, hf_endpoint

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class HubFiles:
    """What the Hub gave: the repo at a commit and the cached files fetched from it."""

    repo_id: str
    revision: str
    root: Path
    files: list[str] = field(default_factory=list)
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
                "root": str(self.root), "files": self.files}


def hub_cache_dir() -> Path:
    """The Hub cache folder: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ~/.cache/huggingface/hub."""
    explicit = env("HF_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    hf_home = env("HF_HOME") or os.path.join(env("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(hf_home).expanduser() / "hub"


def hub_page(repo_path: str) -> str:
    """The web page of a repo (``repo_path`` as ``HubRef.repo_path`` spells it)."""
    return f"{hf_endpoint()}/{repo_path}"


def _progress_bar_class(progress: Progress, label: str | None = None) -> type:
    """A tqdm class that reports to sdhub's progress protocol instead of drawing on the terminal."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class ProgressBar(hub_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            unit = kwargs.get("unit", "")
            description = f"Downloading {label}" if label else kwargs.get("desc") or "Hugging Face download"
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._task = progress.task(str(description), total=kwargs.get("total"),
                                       unit="bytes" if unit == "B" else str(unit))
            if kwargs.get("initial"):
                self._task.update(completed=kwargs["initial"])

        def update(self, n: float | None = 1) -> bool | None:
            self._task.advance(n or 0)
            return super().update(n)

        def close(self) -> None:
            self._task.finish()
            super().close()

    return ProgressBar


def _translate(error: Exception, ref: HubRef, token: str | None) -> SdhubError:
    """A ``huggingface_hub`` failure as an sdhub error with a message a user can act on."""
    from huggingface_hub import errors as hub_errors

    repo = ref.repo_path
    what = f"{repo}" + (f"/{ref.path}" if ref.path else "") + f" at {ref.revision}"
    if isinstance(error, hub_errors.GatedRepoError):
        if token:
            return AuthError(f"Hugging Face repo {repo} is gated and your HF_TOKEN has no access yet: "
                             f"request access at {hub_page(repo)} with that account")
        return AuthError(f"Hugging Face repo {repo} is gated: request access at {hub_page(repo)}, "
                         "then set HF_TOKEN to a token of that account")
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return NotFoundError(f"Hugging Face repo {repo} has no revision {ref.revision!r}")
    if isinstance(error, hub_errors.RemoteEntryNotFoundError):
        return NotFoundError(f"Hugging Face repo {repo} has no file {ref.path!r} at {ref.revision}")
    if isinstance(error, hub_errors.RepositoryNotFoundError):
        hint = "" if token else "; if it is private, set HF_TOKEN"
        return NotFoundError(f"Hugging Face repo {repo} does not exist{hint}")
    if isinstance(error, hub_errors.OfflineModeIsEnabled) or isinstance(error, hub_errors.LocalEntryNotFoundError):
        offline = " (HF_HUB_OFFLINE is set)" if env("HF_HUB_OFFLINE") not in (None, "0", "false") else ""
        return NetworkError(f"cannot reach the Hugging Face Hub at {hf_endpoint()}{offline} and {what} is not "
                            "in the local cache")
    if isinstance(error, hub_errors.HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        return NetworkError(f"the Hugging Face Hub refused {what} (HTTP {status})")
    return NetworkError(f"downloading {what} from {hf_endpoint()} failed: {type(error).__name__}")


#: How long the reachability probe waits for a TCP connection to the Hub.
REACH_TIMEOUT_SECONDS = 3.0


def unreachable_reason(endpoint: str, timeout: float = REACH_TIMEOUT_SECONDS) -> str | None:
    """Why the Hub at ``endpoint`` cannot be reached (its name does not resolve, the connection is refused
    or times out), or None when a TCP connection opens or a proxy is configured (the proxy decides).

    ``huggingface_hub`` retries a failed connection five times over 23 seconds, logging each retry;
    this one quick look lets an offline machine hear it once, at once.
    """
    import socket
    from urllib.parse import urlsplit

    if any(env(name) or env(name.lower()) for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")):
        return None
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"the name {host} does not resolve"
    except (OSError, ValueError) as error:  # refused, timed out, no route; a bad port number
        return str(getattr(error, "strerror", None) or error or type(error).__name__).lower()


def _offline_error(ref: HubRef, why: str) -> NetworkError:
    from urllib.parse import urlsplit

    what = f"{ref.repo_path}" + (f"/{ref.path}" if ref.path else "") + f" at {ref.revision}"
    host = urlsplit(hf_endpoint()).netloc or hf_endpoint()
    return NetworkError(f"cannot reach {host} ({why}): offline? {what} is not in the local Hugging Face cache either")


def _hub_offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def list_files(ref: HubRef) -> dict[str, int]:
    """Every file of a Hub repo at ``ref``'s revision: path -> size in bytes (one API call)."""
    import huggingface_hub

    token = env("HF_TOKEN")
    if not _hub_offline_mode() and (why := unreachable_reason(hf_endpoint())):
        raise _offline_error(ref, why)
    api = huggingface_hub.HfApi(endpoint=hf_endpoint(), token=token if token else None)
    try:
        # The same two calls snapshot_download makes: the revision's commit, then its file tree.
        commit = api.repo_info(ref.repo_id, revision=ref.revision, repo_type=ref.repo_type).sha
        entries = api.list_repo_tree(ref.repo_id, recursive=True, revision=commit, repo_type=ref.repo_type)
        return {entry.path: int(getattr(entry, "size", 0) or 0) for entry in entries
                if isinstance(entry, huggingface_hub.hf_api.RepoFile)}
    except Exception as error:  # the same translations as downloads
        raise _translate(error, ref, token) from None


def fetch(ref: HubRef, *, allow_patterns: Iterable[str] | None = None, progress: Progress = NULL_PROGRESS) -> HubFiles:
    """Bring a Hub file (or a whole repo, filtered by ``allow_patterns``) into the Hub cache."""
    import huggingface_hub

    token = env("HF_TOKEN")
    options: dict[str, Any] = {
        "revision": ref.revision, "endpoint": hf_endpoint(), "cache_dir": str(hub_cache_dir()),
        "token": token if token else None, "repo_type": ref.repo_type,
    }
    why = None if _hub_offline_mode() else unreachable_reason(hf_endpoint())
    if why:
        options["local_files_only"] = True  # what the cache holds still works offline
    try:
        if ref.path is not None:
            cached = huggingface_hub.hf_hub_download(ref.repo_id, ref.path, tqdm_class=_progress_bar_class(progress, ref.path),
                                                     **options)
            root = Path(cached)
            for _ in ref.path.split("/"):
                root = root.parent
            files = [ref.path]
        else:
            patterns = list(allow_patterns) if allow_patterns else None
            root = Path(huggingface_hub.snapshot_download(ref.repo_id, allow_patterns=patterns,
                                                          tqdm_class=_progress_bar_class(progress), **options))
            files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
            if not files:
                raise NotFoundError(f"Hugging Face repo {ref.repo_path} has no files matching "
                                    f"{', '.join(patterns or ['*'])} at {ref.revision}")
    except SdhubError:
        raise
    except Exception as error:  # huggingface_hub raises many kinds; each becomes one clear message
        if why:
            raise _offline_error(ref, why) from None
        raise _translate(error, ref, token) from None
    return HubFiles(repo_id=ref.repo_id, revision=ref.revision, root=root, files=files, commit=root.name)


def _hashed(files: HubFiles, relative: str, progress: Progress) -> tuple[FileHashes, os.stat_result]:
    """Every hash of a cached Hub file, checked against its LFS SHA-256 when the Hub published one.

    Blobs in the Hub cache are never rewritten in place, so these are the hashes of the copy made
    from it next (``_copy_into`` checks the blob did not change meanwhile).
    """
    cached = files.root / relative
    before = os.stat(cached)
    hashes = hash_file(cached, progress)
    blob_etag = Path(os.path.realpath(cached)).name
    if _SHA256.match(blob_etag) and blob_etag != hashes.sha256:
        raise VerificationError(f"{files.repo_id}/{relative} in the Hugging Face cache does not match its "
                                f"published SHA-256; delete {cached} and download again")
    return hashes, before


def _copy_into(source: Path, target: Path, before: os.stat_result) -> None:
    """Copy ``source`` to ``target`` (the kernel copies, nothing is hashed again) and fsync it."""
    shutil.copyfile(source, target)
    with open(target, "rb") as handle:
        os.fsync(handle.fileno())
    after = os.stat(source)
    if (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
        raise VerificationError(f"{source} changed in the Hugging Face cache while it was being copied; try again")


def place_hub_file(files: HubFiles, relative: str, folder: Path,
                   progress: Progress = NULL_PROGRESS) -> tuple[Path, FileHashes, bool]:
    """Copy one cached Hub file into a library folder, verified against its LFS SHA-256 when known.

    Returns (path, hashes, reused): every hash of the placed bytes, from the one read of the
    cached file; ``reused`` when identical bytes were already there.
    """
    hashes, before = _hashed(files, relative, progress)
    folder.mkdir(parents=True, exist_ok=True)
    name = sanitize_filename(Path(relative).name)
    fd, temp = create_temp(folder / name)  # locked while we copy: `sdhub clean` leaves it alone
    try:
        _copy_into(files.root / relative, temp, before)
        path, reused = place_file(temp, folder, name, hashes.sha256, hashes.size)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return path, hashes, reused


@dataclass
class PlacedFolder:
    """A Hub repo copied into the library as one folder, with every hash of each file copied."""

    path: Path
    reused: bool
    hashes: dict[str, FileHashes]


def place_hub_folder(files: HubFiles, folder: Path, name: str, progress: Progress = NULL_PROGRESS) -> PlacedFolder:
    """Copy a fetched repo snapshot into ``folder/name`` as a whole (a diffusers folder), atomically.

    Each file is read once, from the Hub cache, for its hashes; a folder already holding exactly
    these files is reused without copying anything.
    """
    hashed = {relative: _hashed(files, relative, progress) for relative in files.files}
    hashes = {relative: value for relative, (value, _) in hashed.items()}
    folder.mkdir(parents=True, exist_ok=True)
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._-") or "hub-model"
    staging: Path | None = None
    number = 1
    try:
        while True:
            candidate = folder / (base if number == 1 else f"{base}-{number}")
            if candidate.exists():
                if _holds(candidate, hashes):
                    return PlacedFolder(candidate, True, hashes)
                number += 1
                continue
            if staging is None:
                staging = Path(tempfile.mkdtemp(prefix=PART_PREFIX, suffix=".part", dir=folder))
                for relative, (_, before) in hashed.items():
                    target = staging / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _copy_into(files.root / relative, target, before)
            try:
                os.rename(staging, candidate)
            except OSError:
                if candidate.exists():  # another process placed a folder there meanwhile: look at it
                    continue
                raise
            staging = None
            fsync_directory(folder)
            return PlacedFolder(candidate, False, hashes)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _holds(candidate: Path, hashes: dict[str, FileHashes]) -> bool:
    """True when ``candidate`` is a folder holding exactly these files with these contents."""
    if not candidate.is_dir():
        return False
    present = sorted(str(p.relative_to(candidate)) for p in candidate.rglob("*") if p.is_file())
    if present != sorted(hashes) or any((candidate / r).stat().st_size != h.size for r, h in hashes.items()):
        return False
    return all(sha256_file(candidate / relative) == value.sha256 for relative, value in hashes.items())
