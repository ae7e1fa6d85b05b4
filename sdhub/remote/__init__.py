"""The library in S3-compatible object storage: remotes, push, pull, and what a remote holds.

``sdhub.add_remote(home, "studio", "s3://bucket/sdhub", endpoint=...)`` names a bucket; ``sdhub.push`` sends
assets (blobs by SHA-256, manifests, the index), ``sdhub.pull`` brings them into another home's layout, verified.
The bucket layout and the metadata rule are in docs/remote.md. Each function takes a home as ``sdhub.scan`` does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable

from sdhub.config import Home, as_home
from sdhub.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from sdhub.remote.listing import RemoteAsset
    from sdhub.remote.pulling import PullReport
    from sdhub.remote.pushing import PushReport
    from sdhub.remote.settings import Remote

__all__ = ["add_remote", "pull", "push", "remote_assets", "remotes", "remove_remote"]

HomeLike = Home | str | os.PathLike[str] | None


def add_remote(home: HomeLike, name: str, url: str, *, endpoint: str | None = None,
               profile: str | None = None) -> Remote:
    """Remember ``s3://BUCKET/PREFIX`` as ``name`` in the home's settings (credentials are never stored)."""
    from sdhub.remote import settings

    return settings.add_remote(as_home(home), name, url, endpoint=endpoint, profile=profile)


def remotes(home: HomeLike = None) -> list[Remote]:
    """The home's remotes."""
    from sdhub.remote import settings

    return settings.list_remotes(as_home(home))


def remove_remote(home: HomeLike, name: str) -> Remote:
    """Forget a remote; the bucket is left as it is."""
    from sdhub.remote import settings

    return settings.remove_remote(as_home(home), name)


def push(name: str, refs: Iterable[str] = (), home: HomeLike = None, *, all_assets: bool = False,
         kind: str | None = None, progress: Progress = NULL_PROGRESS) -> PushReport:
    """Send the chosen assets (references, ``all_assets`` or ``kind``) to the remote ``name``: only what it lacks."""
    from sdhub.remote import pushing

    return pushing.push(as_home(home), name, refs, all_assets=all_assets, kind=kind, progress=progress)


def pull(name: str, refs: Iterable[str] = (), home: HomeLike = None, *, all_assets: bool = False,
         list_file: str | os.PathLike[str] | None = None, progress: Progress = NULL_PROGRESS) -> PullReport:
    """Bring assets from the remote ``name`` into the home's folders, verified and catalogued."""
    from sdhub.remote import pulling

    return pulling.pull(as_home(home), name, refs, all_assets=all_assets, list_file=list_file, progress=progress)


def remote_assets(name: str, home: HomeLike = None, *, kind: str | None = None,
                  text: str | None = None) -> list[RemoteAsset]:
    """What the remote ``name`` holds (of ``kind``, matching the words of ``text``), marked when here too."""
    from sdhub.remote import listing

    return listing.remote_assets(as_home(home), name, kind=kind, text=text)
