"""What a Civitai collection or model search page lists, as API calls.

* A search page (``/search/models?baseModel=SD%201.5&modelType=Checkpoint&tags=2d&sortBy=...``, the
  site's Meilisearch front end) and the models page (``/models?types=...&sort=...&period=...``)
  become the same filters on the public REST API ``/api/v1/models`` (``baseModels``, ``types``,
  ``tag``, ``query``, ``username``, ``checkpointType``, ``sort``, ``period``, ``nsfw``), paged by cursor.
* A collection is not served by the REST API: ``/api/v1/models`` takes no collection (its
  ``collectionId`` is only set from the caller's own favourites). The site's own client reads a
  collection with two tRPC queries, ``collection.getById`` (its name, type and whether the caller may
  read it) and ``model.getAll`` with ``collectionId`` (the models, ``isPrivate`` when the caller may
  not); sdhub calls those with the user's token, then fetches the models' REST objects by ``ids``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from sdhub.errors import AuthError, NetworkError, NotFoundError, SdhubError, UsageError
from sdhub.sources.civitai import CivitaiClient, choose_file, token_help
from sdhub.sources.refs import CivitaiListingRef, parse_ref

DEFAULT_LIMIT = 20
#: The site's search sorts (``sortBy`` is ``<index>:<attribute>:desc``, the index versioned as models_v9...)
#: and the REST API's ``sort`` names for them; the bare index name is the site's default (rated).
WEB_SORTS = {
    "": "Highest Rated", "metrics.weightedRating:desc": "Highest Rated", "metrics.thumbsUpCount:desc": "Highest Rated",
    "metrics.downloadCount:desc": "Most Downloaded", "metrics.favoriteCount:desc": "Most Liked",
    "metrics.commentCount:desc": "Most Discussed", "metrics.collectedCount:desc": "Most Collected",
    "metrics.imageCount:desc": "Most Images", "createdAt:desc": "Newest",
}
API_SORTS = ("Highest Rated", "Most Downloaded", "Most Liked", "Most Discussed", "Most Collected", "Most Images",
             "Newest", "Oldest")
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")
#: Search-page parameters and the REST parameter each becomes.
SEARCH_PARAMS = {"baseModel": "baseModels", "modelType": "types", "checkpointType": "checkpointType",
                 "users": "username", "query": "query"}
#: The models page already speaks the REST API's names.
MODELS_PAGE_PARAMS = ("types", "baseModels", "sort", "period", "tag", "query", "username", "checkpointType")


@dataclass
class BrowseQuery:
    """A listing page as API calls: REST filters, tags to check on each model, and what was not carried over."""

    url: str
    page: str
    collection_id: int | None = None
    params: list[tuple[str, str]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _array_key(key: str) -> str:
    """``baseModel[0]`` and ``baseModel[]`` are ``baseModel`` (the site's query strings write arrays either way)."""
    return key.split("[", 1)[0]


def web_sort(value: str) -> tuple[str | None, str]:
    """The REST sort for a search page's ``sortBy`` (``models_v2:metrics.downloadCount:desc``), and a note
    when there is none."""
    index, _, attribute = value.partition(":")
    if not index.startswith("models"):
        return None, f"sortBy {value!r} is not a model search sort; Civitai's default order is used"
    sort = WEB_SORTS.get(attribute)
    if sort is None:
        return None, f"sortBy {value!r} has no REST API equivalent; Civitai's default order is used"
    return sort, ""


def browse_query(ref: CivitaiListingRef, *, nsfw: bool | None = None) -> BrowseQuery:
    """The API calls that list what ``ref``'s page shows."""
    query = BrowseQuery(url=ref.url, page=ref.page, collection_id=ref.collection_id)
    pairs = [(_array_key(k), v) for k, v in parse_qsl(urlsplit(ref.url).query) if v != ""]
    if ref.page == "collection":
        if pairs:
            query.notes.append(f"ignored the page's {', '.join(sorted({k for k, _ in pairs}))}: a collection is "
                               "listed as Civitai keeps it")
    elif ref.page == "search":
        for key, value in pairs:
            if key in SEARCH_PARAMS:
                query.params.append((SEARCH_PARAMS[key], value))
            elif key in ("tags", "category"):
                query.tags.append(value)  # categories are tags on Civitai
            elif key == "sortBy":
                sort, note = web_sort(value)
                query.params += [("sort", sort)] if sort else []
                query.notes += [note] if note else []
            else:
                query.notes.append(f"ignored {key}={value!r}: the REST API has no such filter")
    else:
        for key, value in pairs:
            if key in MODELS_PAGE_PARAMS:
                query.params.append((key, value))
            elif key == "tags":
                query.tags.append(value)
            else:
                query.notes.append(f"ignored {key}={value!r}: the REST API has no such filter")
    for key, allowed in (("sort", API_SORTS), ("period", PERIODS)):
        for value in [v for k, v in query.params if k == key]:
            if value not in allowed:
                raise UsageError(f"{ref.url}: {key} {value!r} is not one of Civitai's: {', '.join(allowed)}")
    for key in ("username", "query"):
        values = [v for k, v in query.params if k == key]
        if len(values) > 1:
            raise UsageError(f"{ref.url}: the REST API takes one {key}, the page names {len(values)}")
    if query.tags:
        # The REST API filters by one tag; the others are checked on each model's tag list.
        query.params.append(("tag", query.tags[0]))
    if nsfw is not None:
        query.params.append(("nsfw", "true" if nsfw else "false"))
    return query


@dataclass
class BrowseItem:
    """One model a listing shows, with its newest version and the file ``get`` would take from it."""

    number: int
    model_id: int
    version_id: int | None
    name: str
    type: str
    base_model: str | None
    downloads: int | None
    rating: float | None
    thumbs_up: int | None
    nsfw_level: str | None
    file_name: str | None
    file_size: int | None
    ref: str
    model: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("number", "model_id", "version_id", "name", "type", "base_model",
                                              "downloads", "rating", "thumbs_up", "nsfw_level", "file_name",
                                              "file_size", "ref")}


@dataclass
class BrowseResult:
    """What a listing page holds (``sdhub civitai browse``; ``--json`` is ``to_dict``)."""

    url: str
    page: str
    title: str
    items: list[BrowseItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "page": self.page, "title": self.title, "notes": self.notes,
                "items": [i.to_dict() for i in self.items]}


def _nsfw_name(model: dict[str, Any]) -> str | None:
    from sdhub.catalog.remote import image_nsfw_level
    from sdhub.config import NSFW_LEVELS

    level = image_nsfw_level(model)
    return next((name for name, bit in NSFW_LEVELS.items() if bit == level), None)


def browse_item(number: int, model: dict[str, Any]) -> BrowseItem:
    """A listing row from a REST model object: name, type, base, counts, NSFW level, default file."""
    versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict)]
    newest = versions[0] if versions else {}
    stats = model.get("stats") or {}
    file_name = file_size = None
    try:
        chosen = choose_file(newest).chosen if newest.get("files") else None
    except SdhubError:
        chosen = None
    if chosen is not None:
        file_name, file_size = chosen.name, chosen.size
    model_id, version_id = int(model["id"]), newest.get("id")
    rated = stats.get("ratingCount") and isinstance(stats.get("rating"), (int, float))
    return BrowseItem(
        number=number, model_id=model_id, version_id=int(version_id) if version_id else None,
        name=str(model.get("name") or ""), type=str(model.get("type") or ""), base_model=newest.get("baseModel"),
        downloads=stats.get("downloadCount"), rating=float(stats["rating"]) if rated else None,
        thumbs_up=stats.get("thumbsUpCount"), nsfw_level=_nsfw_name(model), file_name=file_name, file_size=file_size,
        ref=f"urn:air:civitai:{model_id}" + (f"@{int(version_id)}" if version_id else ""), model=model)


def _has_tags(model: dict[str, Any], tags: list[str]) -> bool:
    held = {str(t.get("name") if isinstance(t, dict) else t).lower() for t in model.get("tags") or []}
    return all(tag.lower() in held for tag in tags)


def browse(url: str, *, limit: int = DEFAULT_LIMIT, nsfw: bool | None = None,
           client: CivitaiClient | None = None) -> BrowseResult:
    """List what a Civitai collection, search page or models page holds (at most ``limit`` models)."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    ref = parse_ref(url)
    if not isinstance(ref, CivitaiListingRef):
        raise UsageError(f"{url} is not a Civitai collection or search page; `sdhub get` takes it directly")
    own = client is None
    client = client or CivitaiClient()
    try:
        query = browse_query(ref, nsfw=nsfw)
        if ref.page == "collection":
            assert ref.collection_id is not None
            title, models, notes = _collection_models(client, ref.collection_id, limit, nsfw)
            query.notes += notes
        else:
            extra = query.tags[1:]
            models = client.list_models(query.params, limit, keep=(lambda m: _has_tags(m, extra)) if extra else None)
            title = f"Civitai {'search' if ref.page == 'search' else 'models'}: " + (
                ", ".join(f"{k}={v}" for k, v in query.params) or "all models")
            if extra:
                query.notes.append(f"the REST API filters by one tag ({query.tags[0]}); "
                                   f"{', '.join(extra)} checked on each model's tags")
    finally:
        if own:
            client.close()
    return BrowseResult(url=ref.url, page=ref.page, title=title, notes=query.notes,
                        items=[browse_item(n, m) for n, m in enumerate(models, 1)])


# -- collections ----------------------------------------------------------------------------------
def trpc_query(client: CivitaiClient, procedure: str, payload: dict[str, Any], *,
               what: str) -> tuple[Any, dict[str, Any]]:
    """GET ``/api/trpc/<procedure>`` as the site's client sends it (superjson: ``input={"json": ...}``), with
    the user's token: the answer's ``result.data.json`` and its superjson type notes (``meta.values``).
    Refusals become one-line sdhub errors."""
    url = f"{client.base_url}/api/trpc/{procedure}"
    response = client.http.open(url, params={"input": json.dumps(payload, separators=(",", ":"))}, what=what)
    try:
        body = _json_body(response)
        if response.status_code != 200 or body is None or "result" not in body:
            raise _trpc_error(client, response, body, what)
        data = body["result"].get("data") if isinstance(body["result"], dict) else None
        if not isinstance(data, dict) or "json" not in data:
            return data, {}
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        return data["json"], meta.get("values") if isinstance(meta.get("values"), dict) else {}
    finally:
        response.close()


def _json_body(response: requests.Response) -> dict[str, Any] | None:
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _trpc_error(client: CivitaiClient, response: requests.Response, body: dict[str, Any] | None,
                what: str) -> SdhubError:
    error = (body or {}).get("error") or {}
    error = error.get("json", error) if isinstance(error, dict) else {}
    code = str((error.get("data") or {}).get("code") or "") if isinstance(error, dict) else ""
    status = response.status_code
    if body is None:
        return NetworkError(f"{what}: Civitai does not serve collections to API clients here (HTTP {status}, "
                            f"{response.headers.get('Content-Type') or 'no content type'} instead of JSON); "
                            "open the collection in a browser")
    if status in (401, 403) or code in ("UNAUTHORIZED", "FORBIDDEN"):
        if client.http.has_token:
            return AuthError(f"{what}: Civitai refused the API token (HTTP {status}{', ' + code if code else ''}); "
                             "the collection may be private to another account, or the token lacks the "
                             "collections scope: " + token_help())
        return AuthError(f"{what} needs a login (HTTP {status}): {token_help()}")
    if status == 404 or code == "NOT_FOUND":
        return NotFoundError(f"{what}: Civitai has no such collection (HTTP {status})")
    return NetworkError(f"{what}: Civitai answered HTTP {status}{' ' + code if code else ''}")


def _collection_models(client: CivitaiClient, collection_id: int, limit: int,
                       nsfw: bool | None) -> tuple[str, list[dict[str, Any]], list[str]]:
    """The collection's title, its models as REST objects (in the collection's order), and notes."""
    what = f"Civitai collection {collection_id}"
    login = "" if client.http.has_token else f"; if it is yours or shared with you, {token_help()}"
    answer, _ = trpc_query(client, "collection.getById", {"json": {"id": collection_id}}, what=what)
    collection = answer.get("collection") if isinstance(answer, dict) else None
    if not collection:
        raise AuthError(f"{what} is private or needs a login: Civitai shows it to no one but its owner and "
                        f"contributors{login}")
    kind = str(collection.get("type") or "Model")
    title = f"Civitai collection {collection_id}: {collection.get('name') or ''}".rstrip(": ")
    if kind.lower() != "model":
        raise UsageError(f"{what} ({collection.get('name')}) holds {kind.lower()}s, not models: nothing to get")
    ids: list[int] = []
    cursor: Any = None
    cursor_meta: Any = None
    while len(ids) < limit:
        request: dict[str, Any] = {"json": {"collectionId": collection_id, "limit": min(100, limit - len(ids)),
                                            **({"cursor": cursor} if cursor is not None else {})}}
        if cursor_meta is not None:
            request["meta"] = {"values": {"cursor": cursor_meta}}
        page, types = trpc_query(client, "model.getAll", request, what=what)
        if not isinstance(page, dict):
            raise NetworkError(f"{what}: Civitai's answer has no model list")
        if page.get("isPrivate") and not page.get("items"):
            raise AuthError(f"{what} is private or needs a login{login}")
        ids += [int(item["id"]) for item in page.get("items") or [] if isinstance(item, dict) and "id" in item]
        cursor = page.get("nextCursor")
        cursor_meta = types.get("nextCursor")  # a Date or BigInt cursor goes back with its superjson type
        if cursor is None or not page.get("items"):
            break
    ids = ids[:limit]
    if not ids:
        return title, [], ["the collection holds no models"]
    params = [("ids", ",".join(map(str, ids)))] + ([("nsfw", "true" if nsfw else "false")] if nsfw is not None else [])
    found = {int(m["id"]): m for m in client.list_models(params, len(ids)) if "id" in m}
    notes = []
    missing = [i for i in ids if i not in found]
    if missing:
        notes.append(f"{len(missing)} of the collection's models are not served by the REST API "
                     f"({', '.join(map(str, missing[:5]))}): NSFW ones need --nsfw; others are unpublished or hidden")
    return title, [found[i] for i in ids if i in found], notes
