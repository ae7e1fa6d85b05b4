"""The remote's index: every asset's manifest summary in one object, ``index.json``, fetched in one request.

Writers never lose each other's entries. Where the store honours conditional writes, a writer reads the index
(and its ETag), merges its entries in and writes it back with ``If-Match: ETag`` (``If-None-Match: *`` when there
was none), reading and merging again after each 412. Where the store ignores them, each push also writes its
entries as an immutable delta ``index.d/<time>-<host>-<random>.json`` (a name no other writer uses), and readers
merge every delta over the index, so an index overwritten by a concurrent writer loses nothing.
"""

from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sdhub.errors import NetworkError
from sdhub.remote.bucket import Bucket, PreconditionFailed
from sdhub.remote.layout import DELTA_FORMAT, DELTA_PREFIX, INDEX_FORMAT, INDEX_KEY, manifest_key
from sdhub.remote.manifest import summary
from sdhub.remote.merge import merge_manifests

#: Attempts at a conditional index write before giving up (each loses only to a writer that won).
MAX_ATTEMPTS = 50


@dataclass
class RemoteIndex:
    """The assets of a remote by SHA-256 (manifest summaries); ``etag`` of the index object read."""

    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    etag: str | None = None
    deltas: int = 0


def _check_format(value: Any, expected: str, key: str, bucket: Bucket) -> dict[str, Any]:
    if not isinstance(value, dict) or str(value.get("format", "")).split("/")[0] != expected.split("/")[0]:
        raise NetworkError(f"{bucket.remote.key(key)} on the remote {bucket.remote.name} is not an sdhub index")
    if str(value.get("format")).split("/")[1:] != expected.split("/")[1:]:
        raise NetworkError(f"the remote {bucket.remote.name} was written by a newer sdhub ({value.get('format')}); "
                           "upgrade sdhub")
    assets = value.get("assets")
    return assets if isinstance(assets, dict) else {}


def read_index(bucket: Bucket, *, with_deltas: bool | None = None) -> RemoteIndex:
    """The index, with the deltas merged in where the store lacks conditional writes (or ``with_deltas``)."""
    found = bucket.get_json(INDEX_KEY)
    index = RemoteIndex()
    if found is not None:
        index.assets, index.etag = dict(_check_format(found[0], INDEX_FORMAT, INDEX_KEY, bucket)), found[1]
    if with_deltas if with_deltas is not None else bucket.remote.conditional_writes is not True:
        for key in bucket.list_keys(DELTA_PREFIX):
            delta = bucket.get_json(key)
            if delta is None:
                continue
            index.deltas += 1
            for sha256, entry in _check_format(delta[0], DELTA_FORMAT, key, bucket).items():
                index.assets[sha256] = merge_manifests(index.assets.get(sha256), entry)
    return index


def _index_object(assets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "updated_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "assets": dict(sorted(assets.items()))}


def commit(bucket: Bucket, manifests: dict[str, dict[str, Any]]) -> tuple[RemoteIndex, int]:
    """Merge ``manifests`` (full ones, by SHA-256) into each asset's manifest object and the index without losing
    a concurrent writer's changes; returns the index written and how many writes lost a race and were redone."""
    retries = 0
    merged: dict[str, dict[str, Any]] = {}
    for sha256, manifest in manifests.items():
        merged[sha256], lost = _commit_manifest(bucket, sha256, manifest)
        retries += lost
    entries = {sha256: summary(manifest) for sha256, manifest in merged.items()}
    conditional = bucket.remote.conditional_writes is True
    if not conditional and entries:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
        bucket.put_json(f"{DELTA_PREFIX}{stamp}-{host}-{os.urandom(6).hex()}.json",
                        {"format": DELTA_FORMAT, "assets": entries})
    for attempt in range(MAX_ATTEMPTS):
        index = read_index(bucket)
        for sha256, entry in entries.items():
            index.assets[sha256] = merge_manifests(index.assets.get(sha256), entry)
        body = _index_object(index.assets)
        try:
            if not conditional:
                bucket.put_json(INDEX_KEY, body)
            elif index.etag:
                bucket.put_json(INDEX_KEY, body, if_match=index.etag)
            else:
                bucket.put_json(INDEX_KEY, body, if_none_match=True)
            return index, retries
        except PreconditionFailed:
            retries += 1
            time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** min(attempt, 6))))
    raise NetworkError(f"the index of the remote {bucket.remote.name} kept changing under {MAX_ATTEMPTS} attempts "
                       "to update it; try the push again")


def _commit_manifest(bucket: Bucket, sha256: str, manifest: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Merge ``manifest`` into the asset's manifest object (conditionally where the store can)."""
    key = manifest_key(sha256)
    conditional = bucket.remote.conditional_writes is True
    for attempt in range(MAX_ATTEMPTS):
        found = bucket.get_json(key)
        merged = merge_manifests(found[0] if found and isinstance(found[0], dict) else None, manifest)
        try:
            if not conditional:
                bucket.put_json(key, merged)
            elif found is not None:
                bucket.put_json(key, merged, if_match=found[1])
            else:
                bucket.put_json(key, merged, if_none_match=True)
            return merged, attempt
        except PreconditionFailed:
            time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** min(attempt, 6))))
    raise NetworkError(f"the manifest of {sha256[:12]} on the remote {bucket.remote.name} kept changing; "
                       "try the push again")


def fetch_manifest(bucket: Bucket, sha256: str, fallback: dict[str, Any]) -> dict[str, Any]:
    """The asset's full manifest (with source records), or its index entry when the object is gone."""
    found = bucket.get_json(manifest_key(sha256))
    if found is None or not isinstance(found[0], dict) or found[0].get("sha256") != sha256:
        return fallback
    return merge_manifests(fallback, found[0])
