"""Remotes: named S3 locations of a shared library, kept in the home's settings (never credentials)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdhub.config import Home, read_home_settings, write_home_settings
from sdhub.errors import NotFoundError, UsageError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: The key of the home settings (``catalog/settings.json``) that holds the remotes.
SETTINGS_KEY = "remotes"


@dataclass(frozen=True)
class Remote:
    """One remote: ``s3://bucket/prefix`` at ``endpoint`` (None: AWS), credentials from ``profile`` or the
    usual AWS environment; ``conditional_writes`` is what a probe found the store does (None: not probed)."""

    name: str
    bucket: str
    prefix: str
    endpoint: str | None = None
    profile: str | None = None
    conditional_writes: bool | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, relative: str) -> str:
        """The object key of ``relative`` (``index.json``, ``blobs/...``) under the remote's prefix."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, **asdict(self)}


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://BUCKET[/PREFIX]``."""
    match = re.match(r"^s3://([^/]+)/?(.*)$", url.strip())
    if not match or not _BUCKET.match(match.group(1)):
        raise UsageError(f"{url!r} is not an S3 location; write s3://BUCKET/PREFIX (a bucket name is 3-63 "
                         "lower-case letters, digits, dots and hyphens)")
    prefix = match.group(2).strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise UsageError(f"{url!r}: the prefix may not hold empty, '.' or '..' parts")
    return match.group(1), prefix


def _stored(home: Home) -> dict[str, dict[str, Any]]:
    value = read_home_settings(Path(home.root)).get(SETTINGS_KEY) or {}
    return value if isinstance(value, dict) else {}


def list_remotes(home: Home) -> list[Remote]:
    """The home's remotes, by name."""
    return [_remote(name, data) for name, data in sorted(_stored(home).items()) if isinstance(data, dict)]


def _remote(name: str, data: dict[str, Any]) -> Remote:
    bucket, prefix = parse_url(str(data.get("url", "")))
    flag = data.get("conditional_writes")
    return Remote(name, bucket, prefix, data.get("endpoint") or None, data.get("profile") or None,
                  flag if isinstance(flag, bool) else None)


def get_remote(home: Home, name: str) -> Remote:
    """The remote called ``name``, or an error naming the known ones."""
    data = _stored(home).get(name)
    if not isinstance(data, dict):
        known = ", ".join(r.name for r in list_remotes(home)) or "none yet"
        raise NotFoundError(f"no remote called {name!r} in this home (known: {known}); "
                            "add one with `sdhub remote add NAME s3://BUCKET/PREFIX`")
    return _remote(name, data)


def _save(home: Home, remotes: dict[str, dict[str, Any]]) -> None:
    write_home_settings(Path(home.root), {SETTINGS_KEY: remotes})


def add_remote(home: Home, name: str, url: str, *, endpoint: str | None = None, profile: str | None = None,
               replace: bool = False) -> Remote:
    """Record a remote in the home's settings; only its location, endpoint and profile name are stored."""
    if not _NAME.match(name):
        raise UsageError(f"{name!r} is not a remote name: use letters, digits, '.', '_' and '-'")
    bucket, prefix = parse_url(url)
    if endpoint is not None and not re.match(r"^https?://[^\s/]+", endpoint):
        raise UsageError(f"--endpoint {endpoint!r} must be an http:// or https:// URL")
    remotes = _stored(home)
    if name in remotes and not replace:
        raise UsageError(f"a remote called {name!r} exists already; `sdhub remote rm {name}` first")
    remotes[name] = {"url": f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
                     "endpoint": endpoint, "profile": profile}
    home.catalog_dir.mkdir(parents=True, exist_ok=True)
    _save(home, remotes)
    return get_remote(home, name)


def remove_remote(home: Home, name: str) -> Remote:
    """Forget a remote (nothing in the bucket is touched)."""
    remote = get_remote(home, name)
    remotes = _stored(home)
    del remotes[name]
    _save(home, remotes)
    return remote


def record_conditional_writes(home: Home, name: str, supported: bool) -> None:
    """Remember what the probe found, so it runs once per remote."""
    remotes = _stored(home)
    if isinstance(remotes.get(name), dict):
        remotes[name]["conditional_writes"] = supported
        _save(home, remotes)


def choose_remote(home: Home, name: str | None) -> str:
    """``name``, or the home's one remote when none is named."""
    if name:
        return name
    known = list_remotes(home)
    if len(known) == 1:
        return known[0].name
    raise UsageError("name the remote with --remote NAME (this home has "
                     + (f"{len(known)}: {', '.join(r.name for r in known)})" if known else
                        "none; `sdhub remote add NAME s3://BUCKET/PREFIX`)"))
