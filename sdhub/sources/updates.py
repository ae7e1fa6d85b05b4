"""``sdhub outdated`` and ``sdhub get --update``: newer versions on Civitai of the models a library holds.

Each Civitai model the catalog holds a version of is asked for once (``/models/{id}``, whose
``modelVersions`` Civitai lists newest first). A model is outdated when its newest version is not in
the catalog; a newer version still in early access is listed as such and not offered for download.
What was found is kept in ``assets.newer_version`` so the TUI can mark outdated assets offline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sdhub.catalog.civitai_record import version_status
from sdhub.config import Home
from sdhub.errors import AuthError, NotFoundError, SdhubError, UsageError
from sdhub.progress import NULL_PROGRESS, Progress
from sdhub.sources.civitai import CivitaiClient, token_help

if TYPE_CHECKING:
    from sdhub.catalog import Asset, Catalog
    from sdhub.sources.get import GetOptions, GetResult


@dataclass
class OutdatedAsset:
    """One asset whose Civitai model has a newer version than the one it holds."""

    id: int
    name: str
    path: str | None
    model_id: str
    model_name: str | None
    version_id: str
    version_name: str | None
    newer_version_id: int
    newer_version_name: str | None
    published_at: str | None
    early_access: bool
    early_access_ends_at: str | None
    #: The newest newer version anyone may download now (the newest itself unless it is in early access).
    downloadable_version_id: int | None
    downloadable_version_name: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OutdatedReport:
    """What ``outdated`` found: models checked, assets with newer versions, models that could not be read."""

    models_checked: int = 0
    outdated: list[OutdatedAsset] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"models_checked": self.models_checked, "outdated": [o.to_dict() for o in self.outdated],
                "errors": self.errors}


def _versions(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in model.get("modelVersions") or [] if isinstance(v, dict) and v.get("id") is not None]


def _newer(model: dict[str, Any], held_version: str) -> list[dict[str, Any]]:
    """The versions Civitai lists before ``held_version`` (newest first); all of them if it is not listed."""
    newer = []
    for version in _versions(model):
        if str(version["id"]) == held_version:
            break
        newer.append(version)
    return newer


def _downloadable(model: dict[str, Any], versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((v for v in versions if (s := version_status(model, v)).downloadable and not s.early_access), None)


def _entry(asset: Asset, model: dict[str, Any], version_id: str, newer: list[dict[str, Any]]) -> OutdatedAsset:
    newest = newer[0]
    status = version_status(model, newest)
    held = next((v for v in _versions(model) if str(v["id"]) == version_id), {})
    ready = _downloadable(model, newer)
    present = asset.present_files
    return OutdatedAsset(
        id=asset.id, name=asset.name, path=present[0].path if present else None, model_id=str(model.get("id")),
        model_name=model.get("name"), version_id=version_id, version_name=held.get("name"),
        newer_version_id=int(newest["id"]), newer_version_name=newest.get("name"),
        published_at=newest.get("publishedAt") or newest.get("createdAt"), early_access=status.early_access,
        early_access_ends_at=status.early_access_ends_at,
        downloadable_version_id=int(ready["id"]) if ready else None,
        downloadable_version_name=ready.get("name") if ready else None)


def _marker(entry: OutdatedAsset | None, checked_at: str) -> dict[str, Any] | None:
    """What ``assets.newer_version`` keeps (docs/catalog.md)."""
    if entry is None:
        return None
    return {"model_id": entry.model_id, "version_id": entry.newer_version_id, "version_name": entry.newer_version_name,
            "published_at": entry.published_at, "early_access": int(entry.early_access),
            "early_access_ends_at": entry.early_access_ends_at,
            "downloadable": entry.downloadable_version_id is not None, "checked_at": checked_at}


def outdated(home: Home, *, progress: Progress = NULL_PROGRESS) -> OutdatedReport:
    """Ask Civitai for every model the catalog holds a version of, and list the assets with a newer one."""
    from sdhub.catalog import Catalog
    from sdhub.catalog.store import now

    report = OutdatedReport()
    with Catalog(home) as catalog:
        held = catalog.civitai_versions()
        by_model: dict[str, list[tuple[Asset, str]]] = {}
        for asset, model_id, version_id in held:
            by_model.setdefault(model_id, []).append((asset, version_id))
        client = CivitaiClient()
        task = progress.task("Asking Civitai for newer versions", total=len(by_model), unit="models")
        try:
            for model_id, assets in by_model.items():
                try:
                    model = client.model(int(model_id))
                except SdhubError as error:
                    if isinstance(error, AuthError):
                        raise
                    report.errors.append({"model_id": model_id, "error": str(error)})
                    task.advance(1)
                    continue
                report.models_checked += 1
                stamp = now()
                held_ids = {version_id for _, version_id in assets}
                for asset, version_id in assets:
                    newer = _newer(model, version_id)
                    entry = None
                    if newer and not held_ids & {str(v["id"]) for v in newer}:
                        entry = _entry(asset, model, version_id, newer)
                        report.outdated.append(entry)
                    catalog.set_newer_version(asset.sha256, _marker(entry, stamp))
                task.advance(1)
        finally:
            task.finish()
            client.close()
    return report


@dataclass
class UpdateResult:
    """What ``get --update`` did: the newer version fetched, and the old asset kept or removed."""

    old: dict[str, Any]
    new: GetResult
    replaced: bool
    files_deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new.to_dict(), "replaced": self.replaced,
                "files_deleted": self.files_deleted}


def _civitai_ids(catalog: Catalog, ref: str) -> tuple[Asset, str, str]:
    asset = catalog.find(ref)
    for found, model_id, version_id in catalog.civitai_versions(asset.sha256):
        return found, model_id, version_id
    raise NotFoundError(f"{asset.name} has no Civitai record, so sdhub cannot tell its newer versions; "
                        "`sdhub civitai sync` looks it up by hash")


def update(home: Home, ref: str, *, replace: bool = False, options: GetOptions | None = None,
           progress: Progress = NULL_PROGRESS) -> UpdateResult:
    """Fetch the newest version of the Civitai model a catalogued asset is a version of; the old file
    stays unless ``replace``. A newer version still in early access is fetched only with a token (a
    buyer's); without one the newest version out of early access is fetched, or the refusal says why."""
    from sdhub.catalog import Catalog
    from sdhub.sources.get import get

    with Catalog(home) as catalog:
        asset, model_id, version_id = _civitai_ids(catalog, ref)
    client = CivitaiClient()
    try:
        model = client.model(int(model_id))
        has_token = client.http.has_token
    finally:
        client.close()
    newer = _newer(model, version_id)
    if not newer:
        raise UsageError(f"{asset.name} is the newest version of Civitai model {model_id} "
                         f"({version_id}); nothing to update")
    newest_status = version_status(model, newer[0])
    chosen = newer[0] if has_token and newest_status.downloadable else _downloadable(model, newer)
    if chosen is None:
        if newest_status.early_access:
            raise AuthError(f"Civitai: the newer version {newer[0].get('name')} ({newer[0]['id']}) of {asset.name} is "
                            f"in Early Access until {newest_status.early_access_ends_at or '?'}: buy early access and "
                            f"give sdhub that account's API token ({token_help()}), or wait until it ends")
        raise NotFoundError(f"Civitai offers no newer version of {asset.name} for download ({newest_status.summary})")
    result = get(home, f"https://civitai.com/models/{model_id}?modelVersionId={chosen['id']}", options=options,
                 progress=progress)
    deleted: list[str] = []
    with Catalog(home) as catalog:
        if replace and result.sha256 != asset.sha256:
            deleted = catalog.remove(asset.sha256, files=True).files_deleted
        elif chosen is newer[0]:
            catalog.set_newer_version(asset.sha256, None)  # the newest is in the library now
    return UpdateResult(old={"id": asset.id, "name": asset.name, "sha256": asset.sha256, "version_id": version_id,
                             "paths": [f.path for f in asset.present_files]},
                        new=result, replaced=replace and bool(deleted), files_deleted=deleted)
