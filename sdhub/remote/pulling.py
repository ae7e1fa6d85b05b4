"""``pull``: bring assets from a remote's index into this home: each into its kind's folder in the home's
layout, verified while received, catalogued with everything its manifest carries."""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sdhub.catalog import Catalog
from sdhub.catalog.analysis import is_model_file_name
from sdhub.config import Home
from sdhub.errors import NotFoundError, UsageError
from sdhub.progress import NULL_PROGRESS, Progress, reporting_stop
from sdhub.remote.download import download_blob
from sdhub.remote.index import fetch_manifest, read_index
from sdhub.remote.manifest import apply_manifest
from sdhub.remote.pushing import open_bucket
from sdhub.sources.placing import PART_PREFIX, exclusive_lock, place_file
from sdhub.text import printable


@dataclass
class PullReport:
    """Each asset pulled: where it landed, the bytes received, where a killed pull resumed, fields updated."""

    remote: str
    assets: list[dict[str, Any]] = field(default_factory=list)
    bytes_received: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _matches(entry: dict[str, Any], ref: str) -> tuple[bool, bool]:
    """(exact, prefix) match of ``ref`` against an index entry's hashes and names."""
    low = ref.lower()
    hashes = [entry.get("sha256", ""), *(entry.get("hashes") or {}).values()]
    names = [str(n).lower() for n in [entry.get("file_name"), (entry.get("user") or {}).get("name"),
                                      *(entry.get("names") or [])] if n]
    exact = low in hashes or low in names
    prefix = (len(low) >= 6 and re.fullmatch(r"[0-9a-f]+", low) is not None
              and any(str(h).startswith(low) for h in hashes)) or any(n.startswith(low) for n in names)
    return exact, prefix


def resolve(assets: dict[str, dict[str, Any]], ref: str, remote: str) -> dict[str, Any]:
    """The one index entry ``ref`` names (a name, file name, or any hash or hash prefix)."""
    ref = ref.strip()
    matches = {sha: _matches(entry, ref) for sha, entry in assets.items()}
    for pick in (0, 1):
        found = [assets[sha] for sha, match in matches.items() if match[pick]]
        if len(found) == 1:
            return found[0]
        if found:
            listing = "; ".join(f"{printable(e.get('file_name'))} ({e['sha256'][:10]})" for e in found[:8])
            raise UsageError(f"{ref!r} matches {len(found)} assets on the remote {remote}: {listing}; "
                             "use a longer hash or the file name")
    raise NotFoundError(f"nothing on the remote {remote} matches {ref!r}; `sdhub ls --remote {remote}` lists it")


def read_list_file(path: str | os.PathLike[str]) -> list[str]:
    """References from a file, one a line; blank lines and ``#`` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UsageError(f"cannot read the list {path}: {error.strerror or error}") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _safe_file_name(entry: dict[str, Any]) -> str:
    """The manifest's file name if it is a plain model file name, else one made from the hash."""
    name = str(entry.get("file_name") or "")
    if (name and name == os.path.basename(name) and not name.startswith(".") and name.isprintable()
            and "\\" not in name and is_model_file_name(name)):
        return name
    extension = {"safetensors": ".safetensors", "gguf": ".gguf"}.get(str(entry.get("file_format")), ".safetensors")
    return f"{entry['sha256'][:16]}{extension}"


def _file_hashes(path: Path, manifest: dict[str, Any]) -> Any:
    """The file's hashes as the catalog takes them, from the manifest (its bytes were just verified against the
    SHA-256, so they are these bytes' hashes); None when the manifest lacks one (the file is then read)."""
    from sdhub.ops.hashing import FileHashes

    hashes = {str(k): str(v) for k, v in (manifest.get("hashes") or {}).items()}
    required = ("sha256", "autov2", "legacy_model_hash", "crc32", "blake3")
    if not all(hashes.get(name) for name in required) or hashes["sha256"] != manifest["sha256"]:
        return None
    return FileHashes(path=str(path), size=int(manifest["size"]), sha256=hashes["sha256"], autov2=hashes["autov2"],
                      legacy_model_hash=hashes["legacy_model_hash"], autov1=hashes.get("autov1"),
                      addnet_hash=hashes.get("addnet_hash"), autov3=hashes.get("autov3"), crc32=hashes["crc32"],
                      crc32_zlib=hashes.get("crc32_zlib", ""), blake3=hashes["blake3"])


def _folder(home: Home, kind: str) -> Path:
    try:
        return home.folder(kind)
    except UsageError:  # a kind this sdhub does not know: kept with the unfiled downloads
        return home.downloads_dir


def pull(home: Home, name: str, refs: Iterable[str] = (), *, all_assets: bool = False,
         list_file: str | os.PathLike[str] | None = None, progress: Progress = NULL_PROGRESS) -> PullReport:
    """Fetch the named assets (or all) from the remote into the home and catalog them; present ones get only the
    remote's newer metadata."""
    started = time.monotonic()
    wanted = [*refs, *(read_list_file(list_file) if list_file else [])]
    if not wanted and not all_assets:
        raise UsageError("say what to pull: NAME..., --all or --list FILE")
    bucket = open_bucket(home, name)
    index = read_index(bucket)
    entries = list(index.assets.values()) if all_assets else [resolve(index.assets, ref, name) for ref in wanted]
    entries = list({entry["sha256"]: entry for entry in entries}.values())
    report = PullReport(name)
    with Catalog(home) as catalog:
        missing = [e for e in entries if not ((a := catalog.get(e["sha256"])) and a.present_files)]
        task = progress.task(f"Pulling from {name}", total=sum(int(e["size"]) for e in missing), unit="bytes")
        with reporting_stop(lambda: f"{len(report.assets)} of {len(entries)} assets pulled; "
                                    "`sdhub pull` again resumes"):
            for entry in entries:
                manifest = fetch_manifest(bucket, entry["sha256"], entry)
                asset = catalog.get(entry["sha256"])
                item: dict[str, Any] = {"name": (manifest.get("user") or {}).get("name"), "sha256": entry["sha256"],
                                        "size": int(entry["size"]), "fetched": False, "resumed_from": 0}
                if asset is None or not asset.present_files:
                    folder = _folder(home, str(manifest.get("kind") or "other"))
                    folder.mkdir(parents=True, exist_ok=True)
                    with exclusive_lock(folder / f"{PART_PREFIX}pull-{entry['sha256'][:16]}.lock", progress):
                        part, item["resumed_from"] = download_blob(bucket, entry["sha256"], item["size"], folder,
                                                                   task)
                        path, _ = place_file(part, folder, _safe_file_name(manifest), entry["sha256"], item["size"])
                    hashes = _file_hashes(path, manifest)
                    asset = catalog.add_file(path, progress, hashes=hashes,
                                             expected_sha256=None if hashes else entry["sha256"])
                    item.update(fetched=True, path=str(path))
                    report.bytes_received += item["size"] - item["resumed_from"]
                else:
                    item["path"] = asset.present_files[0].path
                item["fields_updated"] = apply_manifest(catalog.db, asset.id, manifest)
                report.assets.append(item)
            task.finish()
    report.seconds = round(time.monotonic() - started, 3)
    return report
