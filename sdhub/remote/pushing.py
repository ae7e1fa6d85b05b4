"""``push``: send a home's assets to a remote: blobs the remote lacks, then manifests and the index."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sdhub.catalog import Catalog
from sdhub.catalog.records import Asset
from sdhub.config import Home
from sdhub.errors import UsageError
from sdhub.progress import NULL_PROGRESS, Progress, reporting_stop
from sdhub.remote.bucket import Bucket
from sdhub.remote.index import commit
from sdhub.remote.manifest import build_manifest
from sdhub.remote.settings import get_remote, record_conditional_writes
from sdhub.remote.upload import BlobUpload, upload_blob


@dataclass
class PushReport:
    """What a push did: each asset's blob upload, what was left out (and why), the index writes that lost a race."""

    remote: str
    assets: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    bytes_sent: int = 0
    index_retries: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_bucket(home: Home, name: str) -> Bucket:
    """The remote's bucket, checked reachable; the first use probes whether the store honours conditional writes."""
    remote = get_remote(home, name)
    bucket = Bucket(remote)
    bucket.check()
    if remote.conditional_writes is None:
        supported = bucket.probe_conditional_writes()
        record_conditional_writes(home, name, supported)
        bucket = Bucket(get_remote(home, name), bucket.transfer)
    return bucket


def choose_assets(catalog: Catalog, refs: Iterable[str], *, all_assets: bool, kind: str | None) -> list[Asset]:
    """The assets named (any reference ``sdhub show`` takes), or all of them (of ``kind``)."""
    refs = list(refs)
    if refs and (all_assets or kind):
        raise UsageError("name assets or use --all/--kind, not both")
    if refs:
        chosen = [catalog.find(ref) for ref in refs]
    elif all_assets or kind:
        chosen = catalog.list_assets(kind=kind)
    else:
        raise UsageError("say what to push: NAME..., --all or --kind KIND")
    return list({asset.id: asset for asset in chosen}.values())


def push(home: Home, name: str, refs: Iterable[str] = (), *, all_assets: bool = False, kind: str | None = None,
         progress: Progress = NULL_PROGRESS) -> PushReport:
    """Upload what the remote lacks of the chosen assets and merge their manifests into the remote's index."""
    started = time.monotonic()
    report = PushReport(name)
    with Catalog(home) as catalog:
        assets = choose_assets(catalog, refs, all_assets=all_assets, kind=kind)
        bucket = open_bucket(home, name)
        chosen: list[tuple[Asset, Path]] = []
        for asset in assets:
            if asset.is_folder:
                report.skipped.append({"name": asset.name, "reason": "diffusers folders are not pushed yet"})
            elif not asset.present_files:
                report.skipped.append({"name": asset.name, "reason": "no copy on disk"})
            else:
                chosen.append((asset, Path(asset.present_files[0].path)))
        task = progress.task(f"Pushing to {name}", total=sum(a.size for a, _ in chosen), unit="bytes")
        manifests: dict[str, dict[str, Any]] = {}
        with reporting_stop(lambda: f"{len(manifests)} of {len(chosen)} files sent; `sdhub push` again resumes"):
            for asset, path in chosen:
                sent: BlobUpload = upload_blob(bucket, path, asset.sha256, asset.size, task)
                report.assets.append({"name": asset.name, **asdict(sent)})
                report.bytes_sent += sent.bytes_sent
                manifests[asset.sha256] = build_manifest(catalog.db, catalog.get(asset.sha256) or asset)
            task.finish()
            _, report.index_retries = commit(bucket, manifests)
    report.seconds = round(time.monotonic() - started, 3)
    return report
