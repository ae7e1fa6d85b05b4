"""A client for Civitai's REST API (v1) and its download endpoint.

Every request goes to the site named by ``SDHUB_CIVITAI_URL`` (default https://civitai.com), so a
mirror, a proxy or a test server can stand in for it. The API token (``CIVITAI_TOKEN`` or the
settings file) travels only in the ``Authorization`` header, only to that site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

from sdhub.config import civitai_token, config_path
from sdhub.errors import AuthError, BadInputError, NetworkError, NotFoundError, SdhubError, UsageError
from sdhub.models.base_labels import label_family
from sdhub.sources import file_choice
from sdhub.sources.civitai_checks import refuse_unavailable
from sdhub.sources.file_choice import FileChoice
from sdhub.sources.http import HttpClient, RetryPolicy, error_text, generic_error, redact
from sdhub.sources.refs import CivitaiRef, civitai_base_url

MAX_PAGE_SIZE = 100
#: How users may spell a file format; the values are Civitai's ``metadata.format`` names.
FORMAT_ALIASES = {
    "safetensors": "SafeTensor", "safetensor": "SafeTensor", "st": "SafeTensor",
    "ckpt": "PickleTensor", "pickle": "PickleTensor", "pickletensor": "PickleTensor", "pt": "PickleTensor",
    "gguf": "GGUF", "diffusers": "Diffusers", "onnx": "ONNX", "other": "Other", "coreml": "Core ML",
}
#: Civitai's model types (the ``ModelType`` enum, lower-cased) and the asset kind their files are:
#: None for the types no kind fits (AestheticGradient, MotionModule, Poses, Workflows,
#: Detection, Other), whose files are kept in the home's downloads/ folder. ("LyCORIS" is the older
#: name of LoCon.)
KIND_OF_TYPE: dict[str, str | None] = {
    "checkpoint": "checkpoint", "textualinversion": "embedding", "hypernetwork": "hypernetwork",
    "aestheticgradient": None, "lora": "lora", "locon": "lora", "lycoris": "lora", "dora": "lora",
    "controlnet": "controlnet", "upscaler": "upscaler", "motionmodule": None, "vae": "vae", "poses": None,
    "wildcards": "wildcards", "workflows": None, "detection": None, "other": None,
}
#: Civitai's file types that say more than the model type (a VAE or text encoder shipped beside a
#: checkpoint): the kind of such a file; None for files that are not model weights at all.
KIND_OF_FILE_TYPE: dict[str, str | None] = {
    "vae": "vae", "text encoder": "text-encoder", "vision encoder": "clip-vision", "clipvision": "clip-vision",
    "unet": "diffusion-model", "diffusion model": "diffusion-model", "controlnet": "controlnet",
    "upscaler": "upscaler", "enhancement lora": "lora",
    "training data": None, "archive": None, "config": None, "workflow": None,
}


def token_help() -> str:
    """How to give sdhub a Civitai API token, for error messages."""
    return (f"create an API key at https://civitai.com/user/account and set CIVITAI_TOKEN, "
            f"or run `sdhub civitai login` to store it in {config_path()}")


@dataclass
class CivitaiChoice:
    """One file of one model version, chosen for download, with the metadata that came with it."""

    model: dict[str, Any]
    version: dict[str, Any]
    file: dict[str, Any]
    download_url: str
    #: The candidates and why ``file`` was picked among them (None when built from a lookup by hash).
    file_choice: FileChoice | None = None

    @property
    def sha256(self) -> str | None:
        value = (self.file.get("hashes") or {}).get("SHA256")
        return value.lower() if isinstance(value, str) and len(value) == 64 else None

    @property
    def model_type(self) -> str:
        return str(self.model.get("type") or (self.version.get("model") or {}).get("type") or "")

    @property
    def file_type(self) -> str:
        return str(self.file.get("type") or "")

    @property
    def kind(self) -> str | None:
        """The asset kind Civitai gives this file, from its file type first (a VAE shipped beside a
        model), else from the model type; None when no kind fits (a MotionModule, a workflow...)."""
        file_type = self.file_type.lower()
        if file_type in KIND_OF_FILE_TYPE:
            return KIND_OF_FILE_TYPE[file_type]
        return KIND_OF_TYPE.get(self.model_type.lower())

    @property
    def kind_evidence(self) -> str:
        """Where ``kind`` comes from, in words for the catalog's evidence."""
        file_type = self.file_type.lower()
        if file_type in KIND_OF_FILE_TYPE:
            return f"Civitai file type {self.file_type}"
        return f"Civitai model type {self.model_type or 'unknown'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model.get("id") or self.version.get("modelId"),
            "model_name": self.model.get("name") or (self.version.get("model") or {}).get("name"),
            "version_id": self.version.get("id"), "version_name": self.version.get("name"),
            # One vocabulary with the catalog: the family, and Civitai's label ("Pony") beside it.
            "type": self.model_type, "base_model": label_family(self.version.get("baseModel")),
            "base_label": self.version.get("baseModel"),
            "file": describe_file(self.file), "sha256": self.sha256, "download_url": redact(self.download_url),
        }


def describe_file(file: dict[str, Any]) -> dict[str, Any]:
    """The parts of a Civitai file object a user chooses by."""
    metadata = file.get("metadata") or {}
    return {
        "id": file.get("id"), "name": file.get("name"), "type": file.get("type"),
        "format": metadata.get("format"), "size": metadata.get("size"), "fp": metadata.get("fp"),
        "size_kb": file.get("sizeKB"), "primary": bool(file.get("primary")),
    }


def normalise_format(value: str | None) -> str | None:
    if value is None:
        return None
    return FORMAT_ALIASES.get(value.lower().replace(" ", ""), value)


#: Civitai file types that hold the same weights (a "Pruned Model" is the model, pruned).
MODEL_FILE_TYPES = ("model", "pruned model")


def choose_file(version: dict[str, Any], *, file_id: int | None = None, file_type: str | None = None,
                format: str | None = None, size: str | None = None, fp: str | None = None,
                prefer: Iterable[str] = (), file_name: str | None = None) -> FileChoice:
    """The files of ``version`` that ``--type/--format/--size/--fp`` (or a file id) leave, and the one the
    file rule (``sdhub.sources.file_choice``) picks among them, with why.

    Without ``--type`` the candidates are the files holding the same thing as the primary file (Model and
    Pruned Model alike), so a VAE, a config or training data shipped beside a model is never picked by the rule.
    """
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    if not files:
        raise NotFoundError(f"Civitai version {version.get('id')} has no downloadable files "
                            "(archived, or generation-only)")
    wanted_format = normalise_format(format)

    def matches(file: dict[str, Any]) -> bool:
        metadata = file.get("metadata") or {}
        return all((
            file_id is None or file.get("id") == file_id,
            file_type is None or str(file.get("type", "")).lower() == file_type.lower(),
            wanted_format is None or str(metadata.get("format") or "").lower() == wanted_format.lower(),
            size is None or str(metadata.get("size") or "").lower() == size.lower(),
            fp is None or str(metadata.get("fp") or "").lower() == fp.lower(),
        ))

    chosen = [f for f in files if matches(f)]
    if not chosen:
        asked = ", ".join(f"{k}={v}" for k, v in (("file", file_id), ("type", file_type), ("format", format),
                                                   ("size", size), ("fp", fp)) if v is not None)
        available = "; ".join(
            f"{d['name']} (type={d['type']}, format={d['format']}, size={d['size']}, fp={d['fp']})"
            for d in map(describe_file, files))
        raise NotFoundError(f"Civitai version {version.get('id')} has no file with {asked}; it has: {available}")
    if file_type is None and file_id is None and file_name is None:
        primary = next((f for f in files if f.get("primary")), files[0])
        primary_type = str(primary.get("type") or "").lower()
        family = MODEL_FILE_TYPES if primary_type in MODEL_FILE_TYPES else (primary_type,)
        chosen = [f for f in chosen if str(f.get("type") or "").lower() in family] or chosen
    return file_choice.choose([file_choice.from_civitai_file(f) for f in chosen], prefer=prefer,
                              file_name=file_name, what=f"Civitai version {version.get('id')}")


def pick_file(version: dict[str, Any], **choices: Any) -> dict[str, Any]:
    """The file of ``version`` to download: the one ``choose_file`` picks (same keywords)."""
    return choose_file(version, **choices).chosen.source


class CivitaiClient:
    """Civitai's API: models, versions, lookups by hash, search, and download addresses."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 policy: RetryPolicy | None = None, timeout: float = 30.0, use_config_token: bool = True) -> None:
        self.base_url = (base_url or civitai_base_url()).rstrip("/")
        if token is None and use_config_token:
            token = civitai_token()
        self.http = HttpClient(token=token, token_origin=self.base_url, policy=policy, timeout=timeout)

    # -- API ------------------------------------------------------------------------------------
    def api(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None) -> Any:
        """GET ``/api/v1/<path>`` and return its JSON; errors become sdhub errors with Civitai's message."""
        url = f"{self.base_url}/api/v1/{path.lstrip('/')}"
        response = self.http.open(url, params=params, what="Civitai")  # type: ignore[arg-type]
        try:
            if response.status_code != 200:
                raise self._api_error(response)
            try:
                return response.json()
            except ValueError:
                raise NetworkError(f"Civitai: {redact(url)} did not answer with JSON "
                                   f"({response.headers.get('Content-Type', 'no content type')}); "
                                   "is SDHUB_CIVITAI_URL right?") from None
        finally:
            response.close()

    def _api_error(self, response: requests.Response) -> SdhubError:
        if response.status_code in (401, 403):
            if self.http.has_token:
                return AuthError(f"Civitai refused the API token ({error_text(response)}); check the token: "
                                 + token_help())
            return AuthError(f"Civitai wants an API token for this ({error_text(response)}): {token_help()}")
        if response.status_code == 404:
            return NotFoundError(f"Civitai: {redact(response.url)}: {error_text(response)}")
        if response.status_code == 400:
            return UsageError(f"Civitai did not accept the request: {error_text(response)}")
        return generic_error(response, "Civitai")

    def model(self, model_id: int) -> dict[str, Any]:
        """GET /models/{id}: the model with all its published versions."""
        return self.api(f"models/{int(model_id)}")

    def model_version(self, version_id: int) -> dict[str, Any]:
        """GET /model-versions/{id}: one version with its files, images and a model summary."""
        return self.api(f"model-versions/{int(version_id)}")

    def by_hash(self, file_hash: str) -> dict[str, Any]:
        """GET /model-versions/by-hash/{hash}: the version holding a file with that hash (any scheme)."""
        cleaned = file_hash.strip()
        if not cleaned.isalnum():
            raise UsageError(f"{file_hash!r} is not a hash")
        return self.api(f"model-versions/by-hash/{cleaned.upper()}")

    def by_any_hash(self, hashes: Iterable[str]) -> tuple[str, dict[str, Any]]:
        """The version found by the first of ``hashes`` Civitai knows, and that hash (a file's own,
        then those of what it was made from); NotFoundError when none is known."""
        missing: NotFoundError | None = None
        for file_hash in hashes:
            try:
                return file_hash, self.by_hash(file_hash)
            except NotFoundError as error:
                missing = error
        raise missing or NotFoundError("no hash to look up on Civitai")

    def search(self, query: str | None = None, *, types: Iterable[str] = (), base_models: Iterable[str] = (),
               sort: str | None = None, nsfw: bool | None = None, limit: int = 20,
               extra: dict[str, str] | None = None, page_size: int = MAX_PAGE_SIZE) -> list[dict[str, Any]]:
        """GET /models, following ``metadata.nextCursor``/``nextPage`` until ``limit`` models are found."""
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        params: list[tuple[str, Any]] = []
        if query:
            params.append(("query", query))
        params += [("types", t) for t in types]
        params += [("baseModels", b) for b in base_models]
        if sort:
            params.append(("sort", sort))
        if nsfw is not None:
            params.append(("nsfw", "true" if nsfw else "false"))
        params += list((extra or {}).items())
        return self.list_models(params, limit, page_size=page_size)

    def list_models(self, params: list[tuple[str, Any]], limit: int, *, page_size: int = MAX_PAGE_SIZE,
                    keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """GET /models with ``params``, following ``metadata.nextCursor``/``nextPage`` until ``limit``
        models (those ``keep`` accepts, when given) are found or the pages end."""
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        page_params = [(k, v) for k, v in params if k in ("cursor", "page")]
        params = [(k, v) for k, v in params if k not in ("cursor", "page", "limit")]
        # The same page size throughout: page numbers count pages of that size.
        params.append(("limit", max(1, min(page_size, MAX_PAGE_SIZE, limit if keep is None else MAX_PAGE_SIZE))))
        items: list[dict[str, Any]] = []
        seen_pages: set[str] = set()
        while len(items) < limit:
            answer = self.api("models", params + page_params)
            page_items = answer.get("items") if isinstance(answer, dict) else None
            if not isinstance(page_items, list):
                raise NetworkError("Civitai: the search answer has no item list; is SDHUB_CIVITAI_URL right?")
            items += [item for item in page_items if isinstance(item, dict) and (keep is None or keep(item))]
            following = self._next_page(answer.get("metadata") or {})
            page_params = [(k, v) for k, v in page_params if k not in ("cursor", "page")] + following
            key = repr(page_params)
            if not page_items or not following or key in seen_pages:
                break
            seen_pages.add(key)
        return items[:limit]

    @staticmethod
    def _next_page(metadata: dict[str, Any]) -> list[tuple[str, Any]]:
        """The paging parameters of the next page: the cursor, or what ``nextPage`` carries."""
        if metadata.get("nextCursor") not in (None, ""):
            return [("cursor", str(metadata["nextCursor"]))]
        next_page = metadata.get("nextPage")
        if isinstance(next_page, str) and next_page:
            # nextPage names the public site; only its paging parameters are used, against our base URL.
            query = dict(parse_qsl(urlsplit(next_page).query))
            return [(k, query[k]) for k in ("cursor", "page") if k in query]
        return []

    # -- resolving references -------------------------------------------------------------------
    def resolve(self, ref: CivitaiRef, *, version: str | None = None, file_type: str | None = None,
                format: str | None = None, size: str | None = None, fp: str | None = None,
                prefer: Iterable[str] = (), file_name: str | None = None) -> CivitaiChoice:
        """Find the model, version and file a reference (plus command-line choices) asks for."""
        version_id = ref.version_id
        model: dict[str, Any] | None = None
        if version is not None:
            if version.isdigit():
                version_id = int(version)
            elif ref.model_id is None:
                raise UsageError("--version by name needs a model reference (a model page or an AIR)")
        if version_id is None:
            if ref.model_id is None:
                raise UsageError("the Civitai reference names neither a model nor a version")
            model = self.model(ref.model_id)
            versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict)]
            if not versions:
                raise NotFoundError(f"Civitai model {ref.model_id} has no published versions")
            if version is not None:
                named = [v for v in versions if str(v.get("name", "")).lower() == version.lower()]
                if not named:
                    names = ", ".join(f"{v.get('name')} ({v.get('id')})" for v in versions)
                    raise NotFoundError(f"Civitai model {ref.model_id} has no version {version!r}; it has: {names}")
                versions = named
            version_id = int(versions[0]["id"])  # Civitai lists the newest version first
        version_data = self.model_version(version_id)
        model_id = version_data.get("modelId") or ref.model_id
        if ref.model_id is not None and model_id is not None and int(model_id) != ref.model_id:
            raise UsageError(f"Civitai version {version_id} belongs to model {model_id}, not {ref.model_id}")
        if model is None and model_id is not None:
            try:
                model = self.model(int(model_id))
            except NotFoundError:
                model = {}
        refuse_unavailable(model or {}, version_data)  # its own message, not "no downloadable files"
        picked = choose_file(
            version_data, file_id=ref.file_id, file_type=file_type or ref.file_type,
            format=format or ref.format, size=size or ref.size, fp=fp or ref.fp, prefer=prefer, file_name=file_name,
        )
        file = picked.chosen.source
        return CivitaiChoice(model=model or {}, version=version_data, file=file,
                             download_url=self.download_url(version_data, file), file_choice=picked)

    def download_url(self, version: dict[str, Any], file: dict[str, Any]) -> str:
        """The download address of ``file`` on our base URL (the published one names the public site)."""
        published = file.get("downloadUrl")
        if isinstance(published, str) and "/api/download/" in published:
            parts = urlsplit(published)
            return f"{self.base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        metadata = file.get("metadata") or {}
        query = {k: v for k, v in (("type", file.get("type")), ("format", metadata.get("format")),
                                   ("size", metadata.get("size")), ("fp", metadata.get("fp"))) if v}
        if file.get("id") is not None:
            query["fileId"] = file["id"]
        return f"{self.base_url}/api/download/models/{int(version['id'])}" + (f"?{urlencode(query)}" if query else "")

    def describe_download_error(self, response: requests.Response) -> SdhubError:
        """Turn a refused download into a message that says what to do."""
        body: dict[str, Any] = {}
        if "json" in response.headers.get("Content-Type", ""):
            try:
                parsed = response.json()
                body = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                pass
        message = str(body.get("message") or body.get("error") or "")
        status = response.status_code
        login_page = "login" in urlsplit(response.url).path or "html" in response.headers.get("Content-Type", "")
        if (200 <= status < 300 or status in (401, 403)) and login_page:
            return AuthError("Civitai answered with its login page instead of the file: this download needs "
                             f"an API token; {token_help()}")
        if 200 <= status < 300:
            return BadInputError(f"Civitai sent an error message instead of the file ({redact(response.url)}); "
                                 "nothing was saved")
        if status == 401:
            if "disabled downloads" in message:
                return AuthError(f"Civitai: {message}; it cannot be downloaded")
            if self.http.has_token:
                return AuthError(f"Civitai did not accept the API token for this download ({message or 'HTTP 401'}); "
                                 + token_help())
            return AuthError("Civitai: the creator of this model requires you to be logged in to download it; "
                             + token_help())
        if status == 403 and str(body.get("error", "")).lower() == "early access":
            deadline = body.get("deadline")
            until = f" until {deadline}" if deadline else ""
            return AuthError(f"Civitai: this version is in Early Access{until}: buy early access on its page "
                             "with the account your API token belongs to, or wait until it ends"
                             + ("" if self.http.has_token else f"; {token_help()}"))
        if status == 403:
            return AuthError(f"Civitai refused the download ({message or 'HTTP 403'})")
        if status in (404, 410):
            return NotFoundError(f"Civitai: {message or 'file not found'} ({redact(response.url)}); "
                                 "check the version and the --type/--format/--size/--fp choices")
        return generic_error(response, "Civitai download")

    def close(self) -> None:
        self.http.close()


__all__ = ["CivitaiClient", "CivitaiChoice", "pick_file", "choose_file", "describe_file", "token_help", "KIND_OF_TYPE",
           "KIND_OF_FILE_TYPE", "normalise_format"]
