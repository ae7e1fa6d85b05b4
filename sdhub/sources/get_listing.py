"""``sdhub get URL --all`` / ``--pick 1,3`` for a Civitai collection or search page: each model the
listing shows (numbered as ``sdhub civitai browse`` numbers them) goes through the normal ``get``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdhub.config import Home
from sdhub.errors import SdhubError, UsageError
from sdhub.progress import NULL_PROGRESS, Progress
from sdhub.sources.civitai_browse import DEFAULT_LIMIT, BrowseResult, browse
from sdhub.sources.get import GetOptions, GetResult, get, options_from


@dataclass
class ListingGetReport:
    """What ``get`` did for each model picked from a listing."""

    listing: BrowseResult
    results: list[GetResult] = field(default_factory=list)
    failed: list[tuple[int, str, SdhubError]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"listing": self.listing.to_dict(), "results": [r.to_dict() for r in self.results],
                "failed": [{"number": n, "ref": ref, "error": str(e)} for n, ref, e in self.failed]}


def parse_pick(text: str) -> list[int]:
    """``1,3`` or ``2-4`` (1-based, as ``civitai browse`` numbers the models) as a list of numbers."""
    numbers: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        if not low.isdigit() or dash and not high.isdigit():
            raise UsageError(f"--pick {text!r}: give numbers from `sdhub civitai browse`, like 1,3 or 2-4")
        numbers += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    if not numbers or min(numbers) < 1:
        raise UsageError(f"--pick {text!r}: numbers start at 1")
    return list(dict.fromkeys(numbers))


def get_from_listing(home: Home, url: str, *, pick: list[int] | None = None, everything: bool = False,
                     limit: int = DEFAULT_LIMIT, nsfw: bool | None = None, options: GetOptions | None = None,
                     progress: Progress = NULL_PROGRESS, **overrides: Any) -> ListingGetReport:
    """Fetch the models ``pick`` numbers (or all of them) from a Civitai collection or search page."""
    if (pick is None) == (not everything):
        raise UsageError(f"{url} lists several models: choose them with --pick 1,3 or take them all with --all "
                         "(`sdhub civitai browse URL` shows the numbers)")
    chosen = options_from(options, overrides)
    if pick is not None:
        limit = max(limit, max(pick))
    listing = browse(url, limit=limit, nsfw=nsfw)
    items = listing.items
    if pick is not None:
        beyond = [n for n in pick if n > len(items)]
        if beyond:
            raise UsageError(f"--pick {', '.join(map(str, beyond))}: the listing shows only {len(items)} models")
        items = [listing.items[n - 1] for n in pick]
    report = ListingGetReport(listing)
    for item in items:
        try:
            report.results.append(get(home, item.ref, options=chosen, progress=progress))
        except SdhubError as error:
            report.failed.append((item.number, item.ref, error))
    return report
