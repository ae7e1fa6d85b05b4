"""What a remote holds, from its index: listed, filtered by kind, searched by words, and marked by where each
asset is (here, remote, both) for ``sdhub ls --remote`` and the TUI."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sdhub.catalog import Catalog
from sdhub.config import Home
from sdhub.remote.index import read_index
from sdhub.remote.pushing import open_bucket
from sdhub.remote.settings import list_remotes


@dataclass
class RemoteAsset:
    """One asset of a remote's index, as a listing shows it; ``here``: a copy is in this home too."""

    name: str
    file_name: str
    kind: str
    base: str
    size: int
    sha256: str
    tags: list[str] = field(default_factory=list)
    status: str | None = None
    here: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _words(entry: dict[str, Any]) -> str:
    user = entry.get("user") or {}
    parts = [entry.get("file_name"), entry.get("kind"), entry.get("base_model"), entry.get("base_label"),
             *(entry.get("names") or []), *(user.get("tags") or []), *(user.get("trigger_words") or []),
             user.get("name"), user.get("description"), user.get("notes")]
    return " ".join(str(p) for p in parts if p).lower()


def matches_words(entry: dict[str, Any], text: str) -> bool:
    """Every word of ``text`` starts a word of the entry's names, tags, trigger words, notes or base model."""
    haystack = set(re.findall(r"\w+", _words(entry)))
    return all(any(word.startswith(w) for word in haystack) for w in re.findall(r"\w+", text.lower()))


def remote_assets(home: Home, name: str, *, kind: str | None = None, text: str | None = None) -> list[RemoteAsset]:
    """The remote's assets (of ``kind``, matching ``text``), by name, each marked when this home has it too."""
    index = read_index(open_bucket(home, name))
    here = set()
    if home.is_set_up:
        with Catalog(home) as catalog:
            here = {sha for sha in index.assets if (a := catalog.get(sha)) is not None and a.present_files}
    found = []
    for sha256, entry in index.assets.items():
        if (kind and entry.get("kind") != kind) or (text and not matches_words(entry, text)):
            continue
        user = entry.get("user") or {}
        found.append(RemoteAsset(str(user.get("name") or entry.get("file_name") or sha256[:12]),
                                 str(entry.get("file_name") or ""), str(entry.get("kind") or "other"),
                                 str(entry.get("base_label") or entry.get("base_model") or ""), int(entry.get("size", 0)),
                                 sha256, list(user.get("tags") or []), entry.get("status"), sha256 in here))
    return sorted(found, key=lambda a: (a.name.lower(), a.sha256))


def locations(home: Home, name: str) -> dict[str, str]:
    """SHA-256 -> "here", "remote" or "both" for every asset of the home's catalog and of the remote."""
    index = read_index(open_bucket(home, name))
    where: dict[str, str] = {sha: "remote" for sha in index.assets}
    with Catalog(home) as catalog:
        for asset in catalog.list_assets():
            if asset.present_files:
                where[asset.sha256] = location(True, asset.sha256 in index.assets)
    return where


def location(here: bool, on_remote: bool) -> str:
    """Where an asset is: "both", "here", "remote", or "" for neither."""
    return "both" if here and on_remote else "here" if here else "remote" if on_remote else ""


def held_by_remotes(home: Home) -> set[str]:
    """The SHA-256 of every asset that any of the home's remotes holds (one index read per remote)."""
    held: set[str] = set()
    for remote in list_remotes(home):
        held.update(read_index(open_bucket(home, remote.name)).assets)
    return held
