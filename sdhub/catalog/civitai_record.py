"""Reading a Civitai record: a version's status (early access, archived, taken down, generation-only),
its file's format and Civitai's scan results, the model's licence and creator, and example prompts.

Civitai's answers changed shape over the years (2023: ``earlyAccessTimeFrame`` in days; today
``earlyAccessEndsAt``, ``earlyAccessConfig``, ``availability``, ``usageControl``), and some shapes
are not documented (research/apis.md marks them unconfirmed): each reader accepts every shape seen
and ignores what it does not know.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sdhub.catalog.remote import plain_text

#: ``images[].meta`` keys kept as an image's example prompt (Civitai's own spelling).
PROMPT_KEYS = ("prompt", "negativePrompt", "sampler", "cfgScale", "steps", "seed", "Size", "Model", "clipSkip")
#: How many example prompts a record keeps for ``show``.
MAX_EXAMPLES = 5


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time from Civitai (``2024-11-11T11:49:42.064Z``) as an aware datetime, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def early_access_end(version: dict[str, Any]) -> datetime | None:
    """When the version's early access ends (or ended), from whichever field the answer has:
    ``earlyAccessEndsAt``; ``earlyAccessConfig`` (an object whose ``timeframe`` counts days from
    publication, or which names an end itself; shape unconfirmed); 2023's ``earlyAccessTimeFrame``."""
    ends = parse_time(version.get("earlyAccessEndsAt"))
    if ends is not None:
        return ends
    published = parse_time(version.get("publishedAt")) or parse_time(version.get("createdAt"))
    config = version.get("earlyAccessConfig")
    if isinstance(config, dict):
        ends = parse_time(config.get("endsAt") or config.get("earlyAccessEndsAt"))
        if ends is not None:
            return ends
        days = config.get("timeframe")
        if isinstance(days, (int, float)) and not isinstance(days, bool) and days > 0 and published:
            return published + timedelta(days=days)
    days = version.get("earlyAccessTimeFrame")
    if isinstance(days, (int, float)) and not isinstance(days, bool) and days > 0 and published:
        return published + timedelta(days=days)
    return None


def _word(value: Any) -> str:
    return str(value).strip().lower() if isinstance(value, str) else ""


@dataclass
class CivitaiStatus:
    """What stands between a user and a version's file, as Civitai's answer says it."""

    early_access: bool = False
    early_access_ends_at: str | None = None
    availability: str | None = None
    archived: bool = False
    taken_down: bool = False
    generation_only: bool = False
    usage_control: str | None = None

    @property
    def downloadable(self) -> bool:
        """False when Civitai will not hand the file to anyone (early access aside: buyers may)."""
        return not (self.archived or self.taken_down or self.generation_only)

    @property
    def summary(self) -> str:
        """One phrase for listings: "early access until ...", "archived", "" when nothing stands in the way."""
        if self.taken_down:
            return "taken down"
        if self.archived:
            return "archived"
        if self.generation_only:
            return "generation only"
        if self.early_access:
            return f"early access until {self.early_access_ends_at}" if self.early_access_ends_at else "early access"
        return ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["downloadable"] = self.downloadable
        return data


def version_status(model: dict[str, Any], version: dict[str, Any], *, now: datetime | None = None) -> CivitaiStatus:
    """The status of ``version`` of ``model`` (either may be {}; the version's own ``model`` summary counts)."""
    now = now or datetime.now(timezone.utc)
    summary = version.get("model") if isinstance(version.get("model"), dict) else {}
    modes = {_word(source.get(key)) for source in (model, summary, version) for key in ("mode", "status")}
    availability = version.get("availability") if isinstance(version.get("availability"), str) else None
    ends = early_access_end(version)
    early = (ends is not None and ends > now) or (_word(availability) == "earlyaccess" and (ends is None or ends > now))
    usage = version.get("usageControl") if isinstance(version.get("usageControl"), str) else None
    files = version.get("files")
    archived = "archived" in modes
    taken_down = "takendown" in modes
    # A version whose files Civitai does not hand out: usageControl other than Download (generation on
    # the site only), or a published version that lists no file at all.
    generation_only = bool(usage and _word(usage) != "download") or (
        isinstance(files, list) and not files and not archived and not taken_down)
    return CivitaiStatus(early_access=early, early_access_ends_at=_iso(ends) if early and ends else None,
                         availability=availability, archived=archived, taken_down=taken_down,
                         generation_only=generation_only, usage_control=usage)


@dataclass
class FileScan:
    """Civitai's pickle and virus scans of one file (``Pending``, ``Success``, ``Danger``, ``Error``)."""

    pickle: str | None = None
    pickle_message: str | None = None
    virus: str | None = None
    virus_message: str | None = None
    scanned_at: str | None = None

    @property
    def flagged(self) -> list[str]:
        """Which scans found danger: "virus", "pickle"."""
        return [name for name, value in (("virus", self.virus), ("pickle", self.pickle)) if _word(value) == "danger"]

    @property
    def unscanned(self) -> bool:
        """True when a scan is pending or failed: Civitai vouches for nothing yet."""
        return any(_word(value) in ("pending", "error") for value in (self.virus, self.pickle))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_scan(file: dict[str, Any]) -> FileScan:
    def text(key: str) -> str | None:
        value = file.get(key)
        return str(value) if isinstance(value, (str, int)) and str(value) else None

    return FileScan(pickle=text("pickleScanResult"), pickle_message=text("pickleScanMessage"),
                    virus=text("virusScanResult"), virus_message=text("virusScanMessage"),
                    scanned_at=text("scannedAt"))


def record_file(version: dict[str, Any], sha256: str | None) -> dict[str, Any]:
    """The file of ``version`` with ``sha256``, else its primary (or only) file, else {}."""
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    if sha256:
        for file in files:
            if str((file.get("hashes") or {}).get("SHA256", "")).lower() == sha256.lower():
                return file
    return next((f for f in files if f.get("primary")), files[0] if len(files) == 1 else {})


def example_prompts(images: Any, limit: int = MAX_EXAMPLES) -> list[dict[str, Any]]:
    """The generation parameters of a version's images (``images[].meta``) that have a prompt."""
    examples = []
    for image in images or []:
        meta = image.get("meta") if isinstance(image, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("prompt"), str) and meta["prompt"].strip():
            example = {key: meta[key] for key in PROMPT_KEYS if meta.get(key) not in (None, "")}
            example["image"] = image.get("url")
            examples.append(example)
            if len(examples) >= limit:
                break
    return examples


def _commercial_use(value: Any) -> list[str]:
    """``allowCommercialUse``: a list today, one word in 2023 answers."""
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str)]
    return [value] if isinstance(value, str) and value else []


@dataclass
class CivitaiRecord:
    """What sdhub reads from an asset's Civitai record: ``show``, the TUI and ``--json`` show it."""

    model_id: Any = None
    version_id: Any = None
    model_name: str | None = None
    version_name: str | None = None
    air: str | None = None
    type: str | None = None
    base_model: str | None = None
    base_model_type: str | None = None
    creator: str | None = None
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    license: dict[str, Any] = field(default_factory=dict)
    published_at: str | None = None
    status: CivitaiStatus = field(default_factory=CivitaiStatus)
    file: dict[str, Any] = field(default_factory=dict)
    example_prompts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.to_dict()
        return data


def civitai_record(data: dict[str, Any], sha256: str | None = None, *, now: datetime | None = None) -> CivitaiRecord:
    """Read a stored Civitai version answer (its ``model`` completed from ``/models/{id}`` by get and sync)."""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    file = record_file(data, sha256)
    metadata = file.get("metadata") if isinstance(file.get("metadata"), dict) else {}
    creator = model.get("creator") if isinstance(model.get("creator"), dict) else {}
    license_fields = {key: model.get(key) for key in ("allowNoCredit", "allowDerivatives", "allowDifferentLicense")
                      if isinstance(model.get(key), bool)}
    if "allowCommercialUse" in model:
        license_fields["allowCommercialUse"] = _commercial_use(model.get("allowCommercialUse"))
    described = file and {
        "name": file.get("name"), "type": file.get("type"), "format": metadata.get("format"),
        "size": metadata.get("size"), "fp": metadata.get("fp"), "size_kb": file.get("sizeKB"),
        "scan": file_scan(file).to_dict(),
    }
    return CivitaiRecord(
        model_id=data.get("modelId") or model.get("id"), version_id=data.get("id"), model_name=model.get("name"),
        version_name=data.get("name"), air=data.get("air") if isinstance(data.get("air"), str) else None,
        type=model.get("type"), base_model=data.get("baseModel"), base_model_type=data.get("baseModelType"),
        creator=creator.get("username") if isinstance(creator.get("username"), str) else None,
        tags=[t for t in model.get("tags") or [] if isinstance(t, str)],
        description=plain_text(model.get("description") if isinstance(model.get("description"), str) else None),
        license=license_fields, published_at=data.get("publishedAt") or data.get("createdAt"),
        status=version_status({}, data, now=now), file=described or {},
        example_prompts=example_prompts(data.get("images")),
    )


#: The model-level fields a version answer's ``model`` summary lacks, copied from ``/models/{id}`` (as
#: Civitai Helper fetches it too): tags, description, creator, licence, status, counts.
MODEL_FIELDS = ("name", "type", "nsfw", "poi", "minor", "tags", "creator", "description", "allowNoCredit",
                "allowCommercialUse", "allowDerivatives", "allowDifferentLicense", "mode", "status", "stats")


def with_model_fields(version: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """A copy of the version answer whose ``model`` summary is completed from the model answer."""
    data = dict(version)
    summary = dict(data.get("model") or {})
    for key in MODEL_FIELDS:
        if key in model and key not in summary:
            summary[key] = model[key]
    data["model"] = summary
    if data.get("modelId") is None and model.get("id") is not None:
        data["modelId"] = model["id"]
    return data
