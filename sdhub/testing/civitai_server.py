"""An imitation of Civitai on 127.0.0.1 for tests, the TUI's pilot tests and the demo.

Two real HTTP servers run in threads: the *site* (``/api/v1/*`` JSON in the shapes of
``research/apis.md``, ``/api/download/models/{id}``) and a separate *storage* host that the
download endpoint redirects to with an S3-style signed URL, as Civitai does. The storage host
serves the bytes with ``Content-Disposition``, ``Range`` and ``If-Range``, and, like S3, rejects a
request that carries an ``Authorization`` header beside the signature. Per file, it can drop the
connection mid-body, trickle bytes, ignore ``Range``, publish a wrong hash or send an odd name.

    with CivitaiServer() as server:
        server.add_model(model_json, contents={194: Path("model.safetensors")})
        os.environ["SDHUB_CIVITAI_URL"] = server.url
"""

from __future__ import annotations

import copy
import gzip
import json
import hashlib
import hmac
import os
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from sdhub.testing.imitation_http import ImitationHandler, ImitationServers

BROWSER_MARKERS = ("mozilla", "chrome", "safari", "firefox", "opera", "edge")
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in | Civitai</title></head><body>Sign in</body></html>"
SIGNING_KEY = b"imitation-civitai-storage"


@dataclass
class ServedFile:
    """The bytes behind one Civitai file, and how the storage host misbehaves when serving them."""

    file_id: int
    version_id: int
    name: str
    data: bytes | None = None
    path: Path | None = None
    #: Replace the Content-Disposition header (e.g. a name trying ``../../``, or ``filename*=``).
    disposition: str | None = None
    #: Close the connection after this many body bytes (an absolute offset), ``drops`` times (None: always).
    drop_after: int | None = None
    drops: int | None = 1
    #: Serve the whole file with 200 even when asked for a range.
    ignore_range: bool = False
    #: Bytes per second, to make a download slow enough to interrupt.
    trickle: int | None = None
    #: Stop sending at this body offset until ``release`` is set, so a test decides when a download goes on.
    hold_at: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    #: Send these bytes (and content type) instead of the file, e.g. an error page with status 200.
    body_override: tuple[bytes, str] | None = None
    #: Send the whole file with chunked transfer encoding: no Content-Length, no ranges.
    chunked: bool = False
    #: Send the whole file gzip-compressed (``Content-Encoding: gzip``) whatever the client asked for.
    gzip: bool = False
    #: Serve at most this many answers at once; answer any more with ``refusal_status`` (S3's 503
    #: "SlowDown", or a CDN's 429), as a server limiting each client's connections does.
    connection_limit: int | None = None
    refusal_status: int = 503
    serving: int = field(default=0, repr=False)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]

    def read(self, start: int, end: int) -> bytes:
        if self.data is not None:
            return self.data[start:end]
        with open(self.path, "rb") as handle:  # type: ignore[arg-type]
            handle.seek(start)
            return handle.read(end - start)


#: Civitai computes AutoV1 (A1111's legacy hash: 64 KiB at 1 MiB) only for files of at least 2 MiB.
AUTOV1_MIN_SIZE = 0x200000


def file_hashes(data_or_path: bytes | Path, *, safetensors: bool = False) -> dict[str, str]:
    """The hashes Civitai publishes for a file, computed from its bytes (upper-case hex); AutoV3 (the
    first 12 hex of the SHA-256 of the bytes after the header, A1111's LoRA hash) for ``safetensors``."""
    data = data_or_path if isinstance(data_or_path, bytes) else None
    size = len(data) if data is not None else Path(data_or_path).stat().st_size  # type: ignore[arg-type]
    window = _read_span(data_or_path, 0x100000, 0x10000)
    extra = {"AutoV1": hashlib.sha256(window).hexdigest()[:8].upper()} if size >= AUTOV1_MIN_SIZE else {}
    header = _read_span(data_or_path, 0, 8)
    if safetensors and len(header) == 8 and 8 + int.from_bytes(header, "little") <= size:
        tensors = hashlib.sha256()
        offset = 8 + int.from_bytes(header, "little")
        chunks = [data[offset:]] if data is not None else _read_chunks(Path(data_or_path), offset)  # type: ignore[arg-type]
        for chunk in chunks:
            tensors.update(chunk)
        extra["AutoV3"] = tensors.hexdigest()[:12].upper()
    return {**_whole_file_hashes(data_or_path), **extra}


def _read_span(data_or_path: bytes | Path, start: int, length: int) -> bytes:
    if isinstance(data_or_path, bytes):
        return data_or_path[start:start + length]
    with open(data_or_path, "rb") as handle:
        handle.seek(start)
        return handle.read(length)


def _whole_file_hashes(data_or_path: bytes | Path) -> dict[str, str]:
    sha = hashlib.sha256()
    crc = 0
    blake = None
    try:
        import blake3

        blake = blake3.blake3()
    except ImportError:
        pass
    chunks = [data_or_path] if isinstance(data_or_path, bytes) else _read_chunks(data_or_path)
    for chunk in chunks:
        sha.update(chunk)
        crc = zlib.crc32(chunk, crc)
        if blake is not None:
            blake.update(chunk)
    # Civitai writes the CRC's four bytes little-endian (sdhub's FileHashes.crc32), not zlib's %08X.
    hashes = {"AutoV2": sha.hexdigest()[:10].upper(), "SHA256": sha.hexdigest().upper(),
              "CRC32": crc.to_bytes(4, "little").hex().upper()}
    if blake is not None:
        hashes["BLAKE3"] = blake.hexdigest().upper()
    return hashes


def preview_jpeg(seed: int, size: tuple[int, int] = (48, 64)) -> bytes:
    """A small JPEG standing in for a preview image (a colour derived from ``seed``)."""
    import io

    from PIL import Image

    colour = ((seed * 67) % 256, (seed * 131) % 256, (seed * 29) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _read_chunks(path: Path, offset: int = 0):
    with open(path, "rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(8 << 20):
            yield chunk


#: The REST API's enums (``ModelType``, ``ModelSort``, ``MetricTimeframe``, ``CheckpointType``): other values -> 400.
MODEL_TYPES = ("Checkpoint", "TextualInversion", "Hypernetwork", "AestheticGradient", "LORA", "LoCon", "DoRA",
               "Controlnet", "Upscaler", "MotionModule", "VAE", "Poses", "Wildcards", "Workflows", "Detection", "Other")
MODEL_SORTS = ("Highest Rated", "Most Downloaded", "Most Liked", "Most Discussed", "Most Collected", "Most Images",
               "Newest", "Oldest")
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")
CHECKPOINT_TYPES = ("Trained", "Merge")


@dataclass
class ServedCollection:
    """A collection of models as the site's tRPC queries see it; ``read`` is Public, Unlisted or Private
    (only ``owner_token`` sees a private one)."""

    collection_id: int
    name: str
    model_ids: list[int]
    read: str = "Public"
    type: str = "Model"
    owner_token: str | None = None

    def readable_by(self, token: str | None) -> bool:
        return self.read in ("Public", "Unlisted") or token is not None and token == self.owner_token


def civitai_model(model_id: int, version_id: int, file_id: int, *, name: str, file_name: str,
                  model_type: str = "LORA", base: str = "SD 1.5", trained_words: tuple[str, ...] = (),
                  nsfw: bool = False, downloads: int = 100, images: int = 0, file_type: str = "Model",
                  file_format: str = "SafeTensor") -> dict[str, Any]:
    """A Civitai model object in the API's shape with one version and one primary file; the
    imitation server fills in the hashes and size from the bytes it serves."""
    return {
        "id": model_id, "name": name, "description": f"<p>{name} for tests</p>", "type": model_type,
        "poi": False, "nsfw": nsfw, "allowNoCredit": True, "allowCommercialUse": ["Image"],
        "allowDerivatives": True, "allowDifferentLicense": True,
        "stats": {"downloadCount": downloads, "favoriteCount": 1, "commentCount": 0, "ratingCount": 1, "rating": 5},
        "creator": {"username": "tester", "image": None}, "tags": ["style", "test"],
        "modelVersions": [{
            "id": version_id, "modelId": model_id, "name": "v1.0", "createdAt": "2025-01-01T00:00:00.000Z",
            "updatedAt": "2025-01-01T00:00:00.000Z", "trainedWords": list(trained_words), "baseModel": base,
            "description": None, "stats": {"downloadCount": downloads, "ratingCount": 1, "rating": 5},
            # The imitation server serves each listed image from its storage host.
            "images": [{"url": f"https://image.civitai.com/x/{index}.jpeg", "nsfwLevel": 1, "width": 64,
                        "height": 96, "type": "image", "meta": None} for index in range(images)],
            "files": [{
                "id": file_id, "name": file_name, "sizeKB": 1, "type": file_type, "primary": True,
                "metadata": {"fp": "fp32", "size": "full", "format": file_format},
                "pickleScanResult": "Success", "pickleScanMessage": "No Pickle imports",
                "virusScanResult": "Success", "scannedAt": "2025-01-01T00:00:00.000Z", "hashes": {},
                "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
            }],
            "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
        }],
    }


class CivitaiServer(ImitationServers):
    """The imitation site and storage host; start with ``with`` or ``start()``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host, {"site": _SiteHandler, "storage": _StorageHandler})
        self.models: dict[int, dict[str, Any]] = {}
        self.files: dict[int, ServedFile] = {}
        self.tokens: set[str] = {"good-token"}
        self.require_login: set[int] = set()
        self.login_page_for: set[int] = set()
        self.early_access: dict[int, str] = {}
        self.early_access_buyers: set[str] = set()
        self._rate_limits: list[list[Any]] = []
        self.collections: dict[int, ServedCollection] = {}
        #: Answer every tRPC call with a Cloudflare-style HTML page, as when the site does not serve an API client.
        self.trpc_blocked = False

    @property
    def url(self) -> str:
        return self.server_url("site")

    @property
    def storage_url(self) -> str:
        return self.server_url("storage")

    # -- content --------------------------------------------------------------------------------
    def add_model(self, model: dict[str, Any], contents: dict[int, bytes | Path] | None = None,
                  *, wrong_hash: set[int] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
        """Serve ``model`` (a Civitai model object); ``contents`` gives bytes for file ids.

        Published hashes and sizes are recomputed from the contents (except for ids in
        ``wrong_hash``, whose published SHA-256 is deliberately wrong).
        """
        model = copy.deepcopy(model)
        for version in model.get("modelVersions", []):
            version.setdefault("modelId", model["id"])
            for file in version.get("files", []):
                content = (contents or {}).get(file["id"])
                if content is not None:
                    self._attach(file, version["id"], content, file["id"] in wrong_hash)
        with self._lock:
            self.models[int(model["id"])] = model
        return model

    def add_version(self, version: dict[str, Any], contents: dict[int, bytes | Path] | None = None,
                    *, wrong_hash: set[int] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
        """Serve a version object (as from /model-versions/{id}); its model is made up from ``version.model``."""
        version = copy.deepcopy(version)
        summary = version.pop("model", {}) or {}
        model = {"id": version["modelId"], "name": summary.get("name", f"model {version['modelId']}"),
                 "type": summary.get("type", "Checkpoint"), "nsfw": summary.get("nsfw", False),
                 "poi": summary.get("poi", False), "description": None, "tags": [],
                 "creator": {"username": "imitation", "image": None}, "stats": {}, "modelVersions": [version]}
        return self.add_model(model, contents, wrong_hash=wrong_hash)

    def publish_version(self, model_id: int, version: dict[str, Any],
                        contents: dict[int, bytes | Path] | None = None) -> dict[str, Any]:
        """Publish a newer version of a served model: Civitai lists it first (newest first, ``index`` 0)."""
        version = copy.deepcopy(version)
        version["modelId"] = model_id
        for file in version.get("files", []):
            content = (contents or {}).get(file["id"])
            if content is not None:
                self._attach(file, version["id"], content, False)
        with self._lock:
            versions = self.models[model_id]["modelVersions"]
            versions.insert(0, version)
            for index, each in enumerate(versions):
                if "index" in each or index == 0:
                    each["index"] = index
        return version

    def set_early_access(self, version_id: int, ends_at: str, *, shape: str = "current") -> None:
        """Put a version in early access until ``ends_at`` (ISO): its answer says so in the current shape
        (``availability`` EarlyAccess, ``earlyAccessEndsAt``, ``earlyAccessConfig``) or the 2023 one
        (``earlyAccessTimeFrame`` days from ``publishedAt``), and downloads without a buyer's token get 403."""
        _, version = self.find_version(version_id)  # type: ignore[misc]
        with self._lock:
            self.early_access[version_id] = ends_at
            if shape == "2023":
                published = datetime.fromisoformat(ends_at.replace("Z", "+00:00")) - timedelta(days=7)
                version["publishedAt"] = published.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                version["earlyAccessTimeFrame"] = 7
                return
            version["availability"] = "EarlyAccess"
            version["earlyAccessEndsAt"] = ends_at
            # The config's exact shape is unconfirmed (research/apis.md); these keys are what the site's
            # early-access form sets.
            version["earlyAccessConfig"] = {"timeframe": 7, "chargeForDownload": True, "downloadPrice": 500,
                                            "chargeForGeneration": False}

    def archive(self, model_id: int) -> None:
        """Archive a model as Civitai does: ``mode`` Archived, every version without files or downloadUrl."""
        with self._lock:
            model = self.models[model_id]
            model["mode"] = "Archived"
            for version in model["modelVersions"]:
                version["files"] = []
                version.pop("downloadUrl", None)

    def take_down(self, model_id: int) -> None:
        """Take a model down as Civitai does: ``mode`` TakenDown, its images gone."""
        with self._lock:
            model = self.models[model_id]
            model["mode"] = "TakenDown"
            for version in model["modelVersions"]:
                version["images"] = []

    def generation_only(self, version_id: int) -> None:
        """Make a version usable for generation on the site only (``usageControl``; the value's name is
        unconfirmed): downloads answer 401 "disabled downloads"."""
        _, version = self.find_version(version_id)  # type: ignore[misc]
        with self._lock:
            version["usageControl"] = "Generation"

    def _attach(self, file: dict[str, Any], version_id: int, content: bytes | Path, wrong: bool) -> None:
        served = ServedFile(file_id=file["id"], version_id=version_id, name=file["name"],
                            data=content if isinstance(content, bytes) else None,
                            path=None if isinstance(content, bytes) else Path(content))
        safetensors = (file.get("metadata") or {}).get("format") == "SafeTensor" or \
            str(file.get("name", "")).lower().endswith(".safetensors")
        hashes = file_hashes(content, safetensors=safetensors)
        if wrong:
            hashes["SHA256"] = hashlib.sha256(b"not these bytes").hexdigest().upper()
            hashes["AutoV2"] = hashes["SHA256"][:10]
            hashes.pop("AutoV3", None)
        file["hashes"] = hashes
        file["sizeKB"] = served.size / 1024
        self.files[file["id"]] = served

    def add_collection(self, collection_id: int, name: str, model_ids: list[int], *, read: str = "Public",
                       type: str = "Model", owner_token: str | None = None) -> ServedCollection:
        """Serve a collection through ``/api/trpc/collection.getById`` and ``model.getAll``."""
        collection = ServedCollection(collection_id, name, list(model_ids), read, type, owner_token)
        with self._lock:
            self.collections[collection_id] = collection
        return collection

    def served(self, file_id: int) -> ServedFile:
        """The storage behaviour of one file, to adjust in a test."""
        return self.files[file_id]

    def rate_limit(self, count: int, retry_after: int | None = 1, prefix: str = "/api/") -> None:
        """Answer the next ``count`` requests under ``prefix`` with 429 (and ``Retry-After``)."""
        with self._lock:
            self._rate_limits.append([prefix, count, retry_after])

    # -- shaping answers ------------------------------------------------------------------------
    def _rebase(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{self.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def version_view(self, model: dict[str, Any], version: dict[str, Any], *, standalone: bool) -> dict[str, Any]:
        view = copy.deepcopy(version)
        if model.get("mode") != "Archived":  # an archived model's versions have no downloadUrl
            view["downloadUrl"] = f"{self.url}/api/download/models/{version['id']}"
        for file in view.get("files", []):
            if "downloadUrl" in file:
                file["downloadUrl"] = self._rebase(file["downloadUrl"])
            else:
                file["downloadUrl"] = view["downloadUrl"]
            if standalone:
                file["primary"] = bool(file.get("primary"))
        for index, image in enumerate(view.get("images") or []):
            # Preview images are served by the storage host (Civitai's are on image.civitai.com).
            image["url"] = f"{self.storage_url}/images/{version['id']}/{index}.jpeg"
        if standalone:
            view["model"] = {k: model.get(k) for k in ("name", "type", "nsfw", "poi")}
            if model.get("mode"):
                view["model"]["mode"] = model["mode"]
            view["modelId"] = model["id"]
        return view

    def model_view(self, model: dict[str, Any]) -> dict[str, Any]:
        view = {k: copy.deepcopy(v) for k, v in model.items() if k != "modelVersions"}
        view["modelVersions"] = [self.version_view(model, v, standalone=False) for v in model["modelVersions"]]
        return view

    def find_version(self, version_id: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for model in self.models.values():
            for version in model.get("modelVersions", []):
                if int(version["id"]) == version_id:
                    return model, version
        return None

    def find_by_hash(self, value: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        wanted = value.upper()
        for model in self.models.values():
            for version in model.get("modelVersions", []):
                for file in version.get("files", []):
                    if wanted in {str(h).upper() for h in (file.get("hashes") or {}).values()}:
                        return model, version
        return None

    def take_rate_limit(self, path: str) -> int | None | bool:
        with self._lock:
            for entry in self._rate_limits:
                if path.startswith(entry[0]) and entry[1] > 0:
                    entry[1] -= 1
                    return entry[2] if entry[2] is not None else True
        return False

    def sign(self, path: str, disposition: str) -> str:
        return hmac.new(SIGNING_KEY, f"{path}|{disposition}".encode(), hashlib.sha256).hexdigest()

    def storage_location(self, served: ServedFile) -> str:
        path = f"/models/{served.file_id}/{quote(served.name)}"
        disposition = f'attachment; filename="{served.name}"'
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "imitation/auto/s3/aws4_request",
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), "X-Amz-Expires": "86400",
            "X-Amz-SignedHeaders": "host", "response-content-disposition": disposition,
            "X-Amz-Signature": self.sign(path, disposition),
        }
        return f"{self.storage_url}{path}?{urlencode(query, quote_via=quote)}"


class _SiteHandler(ImitationHandler[CivitaiServer]):
    default_content_type = "application/json; charset=utf-8"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._record()
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        limited = self.owner.take_rate_limit(parts.path)
        if limited is not False:
            headers = {"Retry-After": str(limited)} if limited is not True else {}
            self._json(429, {"error": "We've noticed an unusual amount of downloading from your account."},
                       headers)
            return
        routes = [
            (r"/api/v1/models", self._search),
            (r"/api/v1/models/([^/]+)", self._model),
            (r"/api/v1/model-versions/by-hash/([^/]+)", self._by_hash),
            (r"/api/v1/model-versions/([^/]+)", self._version),
            (r"/api/download/models/([^/]+)", self._download),
            (r"/api/trpc/([A-Za-z.]+)", self._trpc),
            (r"/login", self._login),
        ]
        for pattern, route in routes:
            match = re.fullmatch(pattern, parts.path.rstrip("/") or "/")
            if match:
                route(query, *match.groups())
                return
        self._json(404, {"error": "Not found"})

    def _token(self, query: dict[str, list[str]]) -> str | None:
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return query.get("token", [None])[-1]

    def _login(self, query: dict[str, list[str]]) -> None:
        self._send(200, LOGIN_PAGE, "text/html; charset=utf-8")

    def _model(self, query: dict[str, list[str]], model_id: str) -> None:
        if not model_id.isdigit():
            self._json(400, {"error": f"Invalid id: {model_id}"})
            return
        model = self.owner.models.get(int(model_id))
        if model is None:
            self._json(404, {"error": f"No model with id {model_id}"})
            return
        self._json(200, self.owner.model_view(model))

    def _version(self, query: dict[str, list[str]], version_id: str) -> None:
        found = self.owner.find_version(int(version_id)) if version_id.isdigit() else None
        if found is None:
            self._json(404, {"error": f"No version with id {version_id}"})
            return
        self._json(200, self.owner.version_view(*found, standalone=True))

    def _by_hash(self, query: dict[str, list[str]], value: str) -> None:
        found = self.owner.find_by_hash(value)
        if found is None:
            self._json(404, {"error": "Model not found"})
            return
        self._json(200, self.owner.version_view(*found, standalone=True))

    def _search(self, query: dict[str, list[str]]) -> None:
        limit = int(query.get("limit", ["100"])[-1])
        if limit > 100 or limit < 0:
            self._json(400, {"error": [{"code": "too_big", "maximum": 100, "path": ["limit"],
                                        "message": "Number must be less than or equal to 100"}]})
            return
        wants_account = any(query.get(k, [""])[-1] == "true" for k in ("favorites", "hidden"))
        if wants_account and self._token(query) not in self.owner.tokens:
            self._json(401, {"error": "Unauthorized"})
            return
        text = query.get("query", [""])[-1].lower()
        if text and "page" in query:
            self._json(400, {"error": "Cannot use page param with query search. Use cursor-based pagination."})
            return
        problem = self._invalid_models_query(query)
        if problem:
            # zod's answer to a value outside the schema (the real one lists every issue).
            self._json(400, {"error": {"issues": [problem], "name": "ZodError"}})
            return
        types = {t.lower() for value in query.get("types", []) for t in value.split(",")}
        bases = {b.lower() for b in query.get("baseModels", [])}
        models = list(self.owner.models.values())
        if "ids" in query:
            wanted = [int(i) for value in query["ids"] for i in value.split(",") if i.strip().isdigit()]
            models = [self.owner.models[i] for i in wanted if i in self.owner.models]
        if text:
            models = [m for m in models if text in m.get("name", "").lower()
                      or any(text in str(tag).lower() for tag in m.get("tags", []))]
        if types:
            models = [m for m in models if str(m.get("type", "")).lower() in types]
        if bases:
            models = [m for m in models
                      if any(str(v.get("baseModel", "")).lower() in bases for v in m.get("modelVersions", []))]
        if "tag" in query:
            tag = query["tag"][-1].lower()
            models = [m for m in models if tag in {str(t).lower() for t in m.get("tags", [])}]
        if "username" in query:
            user = query["username"][-1].lower()
            models = [m for m in models if str((m.get("creator") or {}).get("username", "")).lower() == user]
        if "checkpointType" in query:
            models = [m for m in models if m.get("checkpointType") == query["checkpointType"][-1]]
        if query.get("nsfw", [""])[-1] == "false":
            models = [m for m in models if not m.get("nsfw")]
        sort = query.get("sort", [""])[-1]
        counts = {"Most Downloaded": "downloadCount", "Highest Rated": "rating", "Most Liked": "favoriteCount",
                  "Most Discussed": "commentCount", "Most Collected": "collectedCount"}
        if sort in counts:
            models.sort(key=lambda m: -(m.get("stats") or {}).get(counts[sort], 0))
        elif sort in ("Newest", "Oldest"):
            models.sort(key=lambda m: max((v.get("createdAt", "") for v in m.get("modelVersions", [])),
                                          default=""), reverse=sort == "Newest")
        base_query = {k: v for k, v in query.items() if k not in ("cursor", "page")}
        if "page" in query:
            page = int(query["page"][-1])
            if page * limit > 1000:
                self._json(429, {"error": "You've requested too many pages, please use cursors instead"})
                return
            start = (page - 1) * limit
            items = models[start:start + limit]
            metadata: dict[str, Any] = {"currentPage": page, "pageSize": limit,
                                        "totalItems": len(models), "totalPages": -(-len(models) // max(limit, 1))}
            if start + limit < len(models):
                metadata["nextPage"] = (f"https://civitai.com/api/v1/models?"
                                        f"{urlencode({**base_query, 'page': page + 1}, doseq=True)}")
        else:
            start = int(query.get("cursor", ["0"])[-1] or 0)
            items = models[start:start + limit]
            metadata = {}
            if start + limit < len(models):
                metadata["nextCursor"] = str(start + limit)
                metadata["nextPage"] = (f"https://civitai.com/api/v1/models?"
                                        f"{urlencode({**base_query, 'cursor': start + limit}, doseq=True)}")
        self._json(200, {"items": [self.owner.model_view(m) for m in items], "metadata": metadata})

    @staticmethod
    def _invalid_models_query(query: dict[str, list[str]]) -> dict[str, Any] | None:
        """The first parameter ``/api/v1/models`` would refuse (its zod schema): an enum value it does not
        know, or ``collectionId`` (a number in the schema, so never valid from a query string)."""
        enums = {"types": MODEL_TYPES, "sort": MODEL_SORTS, "period": PERIODS, "checkpointType": CHECKPOINT_TYPES}
        for key, allowed in enums.items():
            for value in (v for raw in query.get(key, []) for v in (raw.split(",") if key == "types" else [raw])):
                if value not in allowed:
                    return {"code": "invalid_enum_value", "path": [key], "received": value, "options": list(allowed)}
        if "collectionId" in query:
            return {"code": "invalid_type", "expected": "number", "received": "string", "path": ["collectionId"]}
        return None

    def _trpc(self, query: dict[str, list[str]], procedure: str) -> None:
        """The site's tRPC queries that show a collection (superjson input, ``result.data.json`` answers)."""
        if self.owner.trpc_blocked:
            self._send(403, b"<!DOCTYPE html><html><title>Just a moment...</title></html>", "text/html; charset=UTF-8")
            return
        token = self._token({})
        if token is not None and token not in self.owner.tokens:
            self._trpc_error(401, "UNAUTHORIZED", procedure, "Unauthorized")
            return
        try:
            payload = json.loads(query.get("input", ["{}"])[-1])
            data = payload["json"]
        except (ValueError, KeyError, TypeError):
            self._trpc_error(400, "BAD_REQUEST", procedure, "input is not superjson")
            return
        if procedure == "collection.getById":
            collection = self.owner.collections.get(data.get("id")) if isinstance(data.get("id"), int) else None
            if not isinstance(data.get("id"), int):
                self._trpc_error(400, "BAD_REQUEST", procedure, "id: Expected number")
                return
            readable = collection is not None and collection.readable_by(token)
            permissions = {"read": readable, "write": False, "manage": False, "isOwner": bool(
                collection and token and token == collection.owner_token)}
            shown = None if not readable else {"id": collection.collection_id, "name": collection.name,  # type: ignore[union-attr]
                                               "type": collection.type, "read": collection.read}  # type: ignore[union-attr]
            self._json(200, {"result": {"data": {"json": {"collection": shown, "permissions": permissions}}}})
            return
        if procedure == "model.getAll":
            collection_id, limit = data.get("collectionId"), data.get("limit", 100)
            if not isinstance(collection_id, int) or not isinstance(limit, int) or not 0 <= limit <= 100:
                self._trpc_error(400, "BAD_REQUEST", procedure, "collectionId: Expected number; limit <= 100")
                return
            collection = self.owner.collections.get(collection_id)
            if collection is None or not collection.readable_by(token):
                self._json(200, {"result": {"data": {"json": {"items": [], "isPrivate": True}}}})
                return
            start = int(data.get("cursor") or 0)
            ids = [i for i in collection.model_ids if i in self.owner.models]
            page = [{"id": i, "name": self.owner.models[i].get("name"), "type": self.owner.models[i].get("type")}
                    for i in ids[start:start + limit]]
            answer: dict[str, Any] = {"items": page, "isPrivate": collection.read == "Private"}
            if start + limit < len(ids):
                answer["nextCursor"] = start + limit
            self._json(200, {"result": {"data": {"json": answer}}})
            return
        self._trpc_error(404, "NOT_FOUND", procedure, f'No "query"-procedure on path "{procedure}"')

    def _trpc_error(self, status: int, code: str, procedure: str, message: str) -> None:
        numbers = {"BAD_REQUEST": -32600, "UNAUTHORIZED": -32001, "NOT_FOUND": -32004}
        self._json(status, {"error": {"json": {"message": message, "code": numbers.get(code, -32603),
                                               "data": {"code": code, "httpStatus": status, "path": procedure}}}})

    def _download(self, query: dict[str, list[str]], version_id: str) -> None:
        found = self.owner.find_version(int(version_id)) if version_id.isdigit() else None
        if found is None:
            self._json(404, {"error": "File not found"})
            return
        model, version = found
        vid = int(version["id"])
        token = self._token(query)
        if model.get("mode") == "Archived":
            self._json(410, {"error": "Model archived, not available for download"})
            return
        if model.get("mode") == "TakenDown":
            self._json(404, {"error": "File not found"})
            return
        if version.get("usageControl") not in (None, "Download"):
            self._json(401, {"error": "Unauthorized",
                             "message": "The creator of this asset has disabled downloads on this file"})
            return
        browser = any(m in self.headers.get("User-Agent", "").lower() for m in BROWSER_MARKERS)
        needs_login = vid in self.owner.require_login or vid in self.owner.login_page_for
        if needs_login and token not in self.owner.tokens:
            if browser or vid in self.owner.login_page_for:
                self._send(307, b"", headers={"Location": f"/login?reason=download-auth&returnUrl=/model-versions/{vid}"})
            else:
                self._json(401, {"error": "Unauthorized", "message": "The creator of this asset requires you to be "
                                                                     "logged in to download it"})
            return
        if vid in self.owner.early_access and token not in self.owner.early_access_buyers:
            self._json(403, {"error": "Early Access", "deadline": self.owner.early_access[vid],
                             "message": "This asset is in Early Access. You can use Buzz access it now!"})
            return
        file = self._choose_file(version, query)
        served = self.owner.files.get(file["id"]) if file else None
        if served is None:
            self._json(404, {"error": "File not found"})
            return
        self._send(307, b"", headers={"Location": self.owner.storage_location(served),
                                      "Cache-Control": "no-store, max-age=0"})

    @staticmethod
    def _choose_file(version: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any] | None:
        files = version.get("files", [])
        wanted = {k: query[k][-1].lower() for k in ("type", "format", "size", "fp", "fileId") if k in query}
        if not wanted:
            return next((f for f in files if f.get("primary")), files[0] if files else None)
        for file in files:
            metadata = file.get("metadata") or {}
            values = {"type": file.get("type"), "format": metadata.get("format"), "size": metadata.get("size"),
                      "fp": metadata.get("fp"), "fileId": file.get("id")}
            if all(str(values[k]).lower() == v for k, v in wanted.items()):
                return file
        return None


class _StorageHandler(ImitationHandler[CivitaiServer]):
    # S3 answers its errors in XML.
    default_content_type = "application/xml"

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if "Authorization" in self.headers and "X-Amz-Signature" in query:
            self._send(400, b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the "
                            b"X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization "
                            b"header should be specified</Message></Error>")
            return
        image = re.fullmatch(r"/images/(\d+)/(\d+)\.jpeg", parts.path)
        if image:
            self._send(200, preview_jpeg(int(image.group(1)) + int(image.group(2))), "image/jpeg")
            return
        match = re.fullmatch(r"/models/(\d+)/([^/]+)", parts.path)
        disposition = query.get("response-content-disposition", "")
        if not match or not hmac.compare_digest(self.owner.sign(parts.path, disposition),
                                                query.get("X-Amz-Signature", "")):
            self._send(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired or signature does not "
                            b"match</Message></Error>")
            return
        served = self.owner.files.get(int(match.group(1)))
        if served is None:
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
            return
        if served.body_override is not None:
            body, content_type = served.body_override
            self._send(200, body, content_type)
            return
        if served.chunked:
            self._serve_chunked(served, served.disposition or disposition)
            return
        if served.gzip:
            body = gzip.compress(served.read(0, served.size))
            self._send(200, body, "application/octet-stream",
                       {"Content-Encoding": "gzip", "Content-Disposition": served.disposition or disposition})
            return
        with self.owner._lock:
            refused = served.connection_limit is not None and served.serving >= served.connection_limit
            if not refused:
                served.serving += 1
        if refused:
            self._send(served.refusal_status, b"<Error><Code>SlowDown</Code><Message>Please reduce your request "
                                              b"rate.</Message></Error>", headers={"Retry-After": "1"})
            return
        try:
            self._serve_bytes(served, served.disposition or disposition)
        finally:
            with self.owner._lock:
                served.serving -= 1

    def _serve_chunked(self, served: ServedFile, disposition: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Content-Disposition", disposition)
        self.end_headers()
        for start in range(0, served.size, 256 * 1024):
            chunk = served.read(start, min(served.size, start + 256 * 1024))
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _serve_bytes(self, served: ServedFile, disposition: str) -> None:
        size = served.size
        etag = f'"{hashlib.md5(f"{served.file_id}:{size}".encode()).hexdigest()}"'
        if_range = self.headers.get("If-Range")
        span = self._send_range_head(size, {"ETag": etag, "Content-Disposition": disposition},
                                     honour_range=not served.ignore_range and if_range in (None, etag))
        if span is None or self.command == "HEAD":
            return
        start, end = span
        stop = end
        with self.owner._lock:
            if served.drop_after is not None and start < served.drop_after < end and served.drops != 0:
                stop = served.drop_after
                if served.drops is not None:
                    served.drops -= 1
        try:
            self._write_range(served, start, stop)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if stop < end:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _write_range(self, served: ServedFile, start: int, stop: int) -> None:
        if served.hold_at is not None and start < served.hold_at < stop:
            self._write_range(served, start, served.hold_at)
            self.wfile.flush()
            if not served.release.wait(timeout=300):
                raise BrokenPipeError("the test never released the held download")
            start = served.hold_at
        if served.trickle:
            self._write_paced(served, start, stop, served.trickle)
            return
        self._write_plain(served, start, stop)

    def _write_paced(self, served: ServedFile, start: int, stop: int, rate: int) -> None:
        """Send at most ``rate`` bytes per second on this connection, as a CDN throttling each one does."""
        step = max(1, min(rate // 50, 1 << 20))
        began, position = time.monotonic(), start
        while position < stop:
            count = min(step, stop - position)
            self._write_plain(served, position, position + count)
            position += count
            ahead = began + (position - start) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def _write_plain(self, served: ServedFile, start: int, stop: int) -> None:
        if served.path is not None:
            self.wfile.flush()
            with open(served.path, "rb") as handle:
                sent = start
                while sent < stop:
                    count = os.sendfile(self.connection.fileno(), handle.fileno(), sent, min(stop - sent, 64 << 20))
                    if count == 0:
                        raise BrokenPipeError("the served file is shorter than announced")
                    sent += count
            return
        self.wfile.write(served.data[start:stop])  # type: ignore[index]
