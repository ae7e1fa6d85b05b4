"""Where things live in a remote's bucket (docs/remote.md, "Bucket layout"); keys are under the remote's prefix."""

from __future__ import annotations

import re

#: Version tags written into the index, index deltas and manifests; a reader refuses a major it does not know.
INDEX_FORMAT = "sdhub-remote-index/1"
DELTA_FORMAT = "sdhub-remote-delta/1"
MANIFEST_FORMAT = "sdhub-manifest/1"

INDEX_KEY = "index.json"
#: Immutable per-writer index deltas, for stores without conditional writes (merged on read).
DELTA_PREFIX = "index.d/"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_sha256(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ValueError(f"not a SHA-256: {sha256!r}")
    return sha256


def blob_key(sha256: str) -> str:
    """``blobs/sha256/ab/abcdef...``: a file's bytes, named by their SHA-256 (immutable)."""
    check_sha256(sha256)
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def manifest_key(sha256: str) -> str:
    """``manifests/ab/abcdef....json``: everything known about the file whose bytes are ``blob_key(sha256)``."""
    check_sha256(sha256)
    return f"manifests/{sha256[:2]}/{sha256}.json"
