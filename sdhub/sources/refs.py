"""Turn what a user pastes (a Civitai URL or AIR, a Hugging Face link, a plain URL) into a reference.

``parse_ref`` never touches the network; it only decides which source a text names and what it
asks for. Anything it cannot place becomes a ``UsageError`` that lists the accepted forms.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from sdhub.config import env
from sdhub.errors import UsageError

DEFAULT_CIVITAI_URL = "https://civitai.com"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
CIVITAI_PUBLIC_HOSTS = ("civitai.com", "www.civitai.com", "civitai.green", "www.civitai.green")
HF_PUBLIC_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")

ACCEPTED_FORMS = (
    "https://civitai.com/models/4201 (optionally /name?modelVersionId=130072)",
    "https://civitai.com/api/download/models/130072[?type=&format=&size=&fp=]",
    "a Civitai collection or search page (https://civitai.com/collections/42742, /search/models?...) with --all or"
    " --pick N,M",
    "urn:air:sd1:checkpoint:civitai:4201@130072",
    "https://huggingface.co/ORG/REPO/blob/REV/PATH (or /resolve/REV/PATH, /tree/REV[/FOLDER], or the repo page;"
    " datasets/ORG/REPO and spaces/ORG/REPO alike)",
    "hf:ORG/REPO/PATH[@REV] or hf:ORG/REPO[@REV] for a whole repo (hf:datasets/ORG/REPO/PATH for a dataset)",
    "ORG/REPO/PATH[@REV] or ORG/REPO[@REV]",
    "any other http(s):// URL of a model file",
)

_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_AIR = re.compile(
    r"^(?:urn:)?(?:air:)?(?:(?P<ecosystem>[a-z0-9_.-]+):)?(?:(?P<type>[a-z0-9_-]+):)?"
    r"(?P<source>civitai|civitai-r2|huggingface|orchestrator):(?P<id>[^@+.\s]+)"
    r"(?:@(?P<version>[^+.\s]+))?(?:\+(?P<file>\d+))?(?:\.(?P<format>[a-z0-9]+))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CivitaiRef:
    """A Civitai model, or one version of it, with optional file choices from a download URL."""

    model_id: int | None = None
    version_id: int | None = None
    file_id: int | None = None
    file_type: str | None = None
    format: str | None = None
    size: str | None = None
    fp: str | None = None
    source: str = "civitai"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


#: The Hub's repo types other than models, by the path segment its URLs and ``hf:`` names put before ORG/REPO.
HUB_REPO_TYPES = {"datasets": "dataset", "spaces": "space"}


@dataclass(frozen=True)
class HubRef:
    """A Hugging Face repo (``path`` None: the whole repo, or ``folder`` in it) or one file in it, at a
    revision; model repos, datasets and Spaces alike (``repo_type`` as ``huggingface_hub`` names it)."""

    repo_id: str
    path: str | None = None
    revision: str = "main"
    repo_type: str = "model"
    source: str = "huggingface"
    folder: str | None = None

    @property
    def whole_repo(self) -> bool:
        return self.path is None

    @property
    def repo_path(self) -> str:
        """ORG/REPO as the Hub's URLs and ``hf:`` names spell it: ``datasets/ORG/REPO`` for a dataset."""
        prefix = {kind: segment for segment, kind in HUB_REPO_TYPES.items()}.get(self.repo_type)
        return f"{prefix}/{self.repo_id}" if prefix else self.repo_id

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "whole_repo": self.whole_repo}


@dataclass(frozen=True)
class UrlRef:
    """A plain http(s) URL of a file."""

    url: str
    source: str = "url"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CivitaiListingRef:
    """A Civitai page that lists models (a collection, a search page, the models page): ``sdhub civitai
    browse`` lists it, ``get --all`` or ``--pick`` fetches from it (``sdhub.sources.civitai_browse``)."""

    url: str
    page: str
    collection_id: int | None = None
    source: str = "civitai-listing"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


Ref = CivitaiRef | HubRef | UrlRef | CivitaiListingRef


def bad_ref(text: str, why: str) -> UsageError:
    """The usage error for a reference sdhub cannot read, listing the forms it can."""
    forms = "; ".join(ACCEPTED_FORMS)
    return UsageError(f"cannot use {text!r} as a model reference ({why}); accepted forms: {forms}")


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return (parts.netloc or "").lower()


def civitai_base_url() -> str:
    """The Civitai site every API and download request goes to (``SDHUB_CIVITAI_URL``)."""
    return (env("SDHUB_CIVITAI_URL", DEFAULT_CIVITAI_URL) or DEFAULT_CIVITAI_URL).rstrip("/")


def hf_endpoint() -> str:
    """The Hugging Face Hub endpoint (``HF_ENDPOINT``)."""
    return (env("HF_ENDPOINT", DEFAULT_HF_ENDPOINT) or DEFAULT_HF_ENDPOINT).rstrip("/")


def _positive_int(text: str, what: str, original: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise bad_ref(original, f"{what} {text!r} is not a number")
    return int(text)


def _parse_air(text: str) -> Ref:
    match = _AIR.match(text)
    if match is None:
        raise bad_ref(text, "not a valid AIR")
    source = match["source"].lower()
    if source not in ("civitai", "civitai-r2"):
        raise bad_ref(text, f"AIRs from {source!r} cannot be downloaded; only civitai AIRs can")
    model_id = _positive_int(match["id"], "model id", text)
    version_id = _positive_int(match["version"], "version id", text) if match["version"] else None
    file_id = int(match["file"]) if match["file"] else None
    return CivitaiRef(model_id=model_id, version_id=version_id, file_id=file_id)


def _parse_civitai_url(text: str) -> Ref:
    parts = urlsplit(text)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if len(segments) >= 2 and segments[0] == "models":
        model_id = _positive_int(segments[1], "model id", text)
        version = query.get("modelVersionId")
        return CivitaiRef(model_id=model_id,
                          version_id=_positive_int(version, "version id", text) if version else None)
    if len(segments) >= 2 and segments[0] == "model-versions":
        return CivitaiRef(version_id=_positive_int(segments[1], "version id", text))
    if len(segments) >= 4 and segments[:3] == ["api", "download", "models"]:
        file_id = query.get("fileId")
        return CivitaiRef(
            version_id=_positive_int(segments[3], "version id", text),
            file_id=_positive_int(file_id, "file id", text) if file_id else None,
            file_type=query.get("type"), format=query.get("format"),
            size=query.get("size"), fp=query.get("fp"),
        )
    if len(segments) >= 2 and segments[0] == "collections":
        return CivitaiListingRef(url=text, page="collection",
                                 collection_id=_positive_int(segments[1], "collection id", text))
    if segments[:2] == ["search", "models"] or segments == ["models"]:
        return CivitaiListingRef(url=text, page="search" if segments[0] == "search" else "models")
    raise bad_ref(text, "a Civitai URL, but not a model page, download link, collection or model search page")


def _split_revision(text: str) -> tuple[str, str | None]:
    if "@" in text:
        body, revision = text.rsplit("@", 1)
        if not revision:
            raise bad_ref(text, "empty revision after '@'")
        return body, revision
    return text, None


def _repo_type_and_rest(segments: list[str], original: str) -> tuple[str, str, list[str]]:
    """(repo type, ORG/REPO, the segments after it) of a Hub path that may start with datasets/ or spaces/."""
    repo_type = HUB_REPO_TYPES.get(segments[0], "model") if segments else "model"
    if repo_type != "model":
        segments = segments[1:]
    if len(segments) < 2 or not all(re.fullmatch(_REPO_PART, s) for s in segments[:2]):
        raise bad_ref(original, "a Hugging Face reference needs ORG/REPO")
    if any(s in (".", "..") for s in segments):
        raise bad_ref(original, "'..' is not allowed in a repo path")
    return repo_type, "/".join(segments[:2]), segments[2:]


def _hub_ref_from_path(text: str, original: str) -> HubRef:
    body, revision = _split_revision(text)
    repo_type, repo_id, rest = _repo_type_and_rest([s for s in body.split("/") if s], original)
    return HubRef(repo_id=repo_id, path="/".join(rest) or None, revision=revision or "main", repo_type=repo_type)


def _parse_hf_url(text: str) -> HubRef:
    segments = [unquote(s) for s in urlsplit(text).path.split("/") if s]
    repo_type, repo_id, rest = _repo_type_and_rest(segments, text)
    if not rest:
        return HubRef(repo_id=repo_id, repo_type=repo_type)
    if rest[0] in ("blob", "resolve") and len(rest) >= 3:
        return HubRef(repo_id=repo_id, path="/".join(rest[2:]), revision=rest[1], repo_type=repo_type)
    if rest[0] == "tree" and len(rest) >= 2:
        return HubRef(repo_id=repo_id, revision=rest[1], repo_type=repo_type, folder="/".join(rest[2:]) or None)
    raise bad_ref(text, "a Hugging Face URL, but not a file (blob/resolve), folder (tree) or repo link")


def parse_ref(text: str) -> Ref:
    """Classify one user-given reference; raise ``UsageError`` listing the accepted forms if unusable."""
    original = text
    text = text.strip()
    if not text:
        raise bad_ref(original, "it is empty")
    lowered = text.lower()
    if lowered.startswith(("urn:air:", "air:")) or "://" not in text and _AIR.match(text):
        return _parse_air(text)
    if lowered.startswith("hf:"):
        return _hub_ref_from_path(text[3:].lstrip("/"), original)
    if lowered.startswith(("civitai.com/", "www.civitai.com/", "huggingface.co/", "hf.co/")):
        text = "https://" + text
        lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        host = _host_port(text)
        if not urlsplit(text).hostname:
            raise bad_ref(original, "the URL has no host")
        if host in CIVITAI_PUBLIC_HOSTS or host == _host_port(civitai_base_url()):
            return _parse_civitai_url(text)
        if host in HF_PUBLIC_HOSTS or host == _host_port(hf_endpoint()):
            return _parse_hf_url(text)
        return UrlRef(url=text)
    if "://" in text:
        raise bad_ref(original, "only http and https URLs can be downloaded")
    if re.match(rf"^{_REPO_PART}/{_REPO_PART}(/|@|$)", text):
        return _hub_ref_from_path(text, original)
    raise bad_ref(original, "not a URL, an AIR or a Hugging Face repo path")
