"""Turning what a source says about a file (Civitai, Hugging Face) into catalog fields.

Civitai answers come in several shapes (a model version from ``by-hash`` or ``/model-versions``,
a model with ``modelVersions`` from ``/models``, old and new field sets); these functions take
whichever arrives and pick out what the catalog stores, ignoring unknown keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sdhub.config import NSFW_LEVELS, nsfw_level_named
from sdhub.errors import UsageError

SOURCES = ("civitai", "huggingface")
CIVITAI_SITE = "https://civitai.com"

_TAGS = re.compile(r"<[^>]+>")
#: 2023-era answers rate an image with a word (``nsfw``: None/Soft/Mature/X); each has its level today.
_OLD_NSFW_WORDS = {"none": 1, "soft": 2, "mature": 4, "x": 8}


def image_nsfw_level(image: dict[str, Any]) -> int | None:
    """The NSFW level (1 PG, 2 PG13, 4 R, 8 X, 16 XXX, 32 Blocked) of a Civitai image, from either
    encoding: ``nsfwLevel`` (a number, its highest bit counting) or the 2023 ``nsfw`` (a word or a
    bool; ``true`` counts as X, since it does not say how far). None when the image says nothing."""
    level = image.get("nsfwLevel")
    if isinstance(level, str) and level.strip().isdigit():
        level = int(level)
    if isinstance(level, int) and not isinstance(level, bool) and level > 0:
        return 1 << (level.bit_length() - 1)
    for value in (level, image.get("nsfw")):
        if isinstance(value, bool):
            return 8 if value else 1
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _OLD_NSFW_WORDS:
                return _OLD_NSFW_WORDS[word]
            try:
                return nsfw_level_named(word)
            except UsageError:
                continue
    return None


def nsfw_level_shown(level: int | None, highest: int) -> bool:
    """Whether an image of ``level`` may be shown under the limit ``highest``; an image of unknown
    level only when everything is shown (the limit is Blocked)."""
    if level is None:
        return highest >= NSFW_LEVELS["Blocked"]
    return level <= highest


@dataclass
class RemoteFields:
    """The columns of one ``remote`` row plus the asset fields the source can fill in."""

    source: str
    model_id: str | None = None
    version_id: str | None = None
    repo: str | None = None
    revision: str | None = None
    url: str | None = None
    name: str | None = None
    trigger_words: list[str] = field(default_factory=list)
    base_label: str | None = None  # what the source calls the base model ("SD 1.5", "Pony")
    description: str | None = None
    nsfw: bool | None = None
    tags: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def plain_text(html: str | None) -> str | None:
    """Civitai descriptions are HTML; the catalog keeps their text for reading and searching."""
    if not html:
        return None
    text = _TAGS.sub(" ", html)
    text = re.sub(r"\s+", " ", text.replace("&nbsp;", " ").replace("&amp;", "&")
                  .replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')).strip()
    return text or None


def _pick_version(model: dict[str, Any], sha256: str) -> dict[str, Any]:
    """The version of a ``/models`` answer whose files include ``sha256`` (else the newest)."""
    versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict)]
    for version in versions:
        for file in version.get("files") or []:
            hashes = (file or {}).get("hashes") or {}
            if str(hashes.get("SHA256", "")).lower() == sha256:
                return version
    if not versions:
        raise UsageError("the Civitai model data has no versions to link to")
    return versions[0]


def civitai_lists_other_files(data: dict[str, Any], sha256: str) -> bool:
    """True when a Civitai answer lists file hashes and ``sha256`` is not among them: it describes
    the file this one was made from (a sidecar copied or exported beside a converted file)."""
    versions = data.get("modelVersions") if isinstance(data.get("modelVersions"), list) else [data]
    listed = {str(((file or {}).get("hashes") or {}).get("SHA256", "")).lower()
              for version in versions if isinstance(version, dict)
              for file in version.get("files") or [] if isinstance(file, dict)} - {""}
    return bool(listed) and sha256.lower() not in listed


def civitai_fields(data: dict[str, Any], sha256: str) -> RemoteFields:
    """Catalog fields from a Civitai model version (or model) answer for the file ``sha256``."""
    if not isinstance(data, dict) or not data:
        raise UsageError("the Civitai data is empty; nothing to record")
    model: dict[str, Any] = {}
    version = data
    if "modelVersions" in data:
        model, version = data, _pick_version(data, sha256)
        model_id = data.get("id")
    else:
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        model_id = data.get("modelId")
    version_id = version.get("id")
    url = None
    if model_id is not None:
        url = f"{CIVITAI_SITE}/models/{model_id}"
        if version_id is not None:
            url += f"?modelVersionId={version_id}"
    images = []
    for image in version.get("images") or []:
        if isinstance(image, dict) and image.get("url"):
            images.append({"url": image["url"], "width": image.get("width"), "height": image.get("height"),
                           "nsfw_level": image_nsfw_level(image)})
    words = [str(w).strip() for w in version.get("trainedWords") or [] if str(w).strip()]
    tags = [str(t) for t in model.get("tags") or [] if isinstance(t, str)]
    nsfw = model.get("nsfw")
    return RemoteFields(
        source="civitai", model_id=_text(model_id), version_id=_text(version_id), url=url,
        name=_text(model.get("name")), trigger_words=words, base_label=_text(version.get("baseModel")),
        description=_civitai_description(model, version),
        nsfw=nsfw if isinstance(nsfw, bool) else None, tags=tags, images=images,
    )


def _civitai_description(model: dict[str, Any], version: dict[str, Any]) -> str | None:
    """The model's description, then the version's notes (its changelog on Civitai), each labelled."""
    about_model = plain_text(_text(model.get("description")))
    about_version = plain_text(_text(version.get("description")))
    parts = [f"About the model: {about_model}" if about_model else None,
             f"About this version ({version.get('name') or version.get('id')}): {about_version}" if about_version
             else None]
    return "\n\n".join(part for part in parts if part) or None


def huggingface_fields(data: dict[str, Any]) -> RemoteFields:
    """Catalog fields from a Hugging Face record: ``repo`` (or ``repo_id``), ``revision``, ``filename``
    (none for a whole repo, a diffusers folder), ``url``."""
    repo = _text(data.get("repo") or data.get("repo_id"))
    if not repo:
        raise UsageError("Hugging Face data needs a 'repo'")
    revision = _text(data.get("revision") or data.get("commit") or data.get("commit_hash"))
    filename = _text(data.get("filename") or data.get("path"))
    url = _text(data.get("url"))
    if url is None and filename:
        url = f"https://huggingface.co/{repo}/blob/{revision or 'main'}/{filename}"
    elif url is None:
        url = f"https://huggingface.co/{repo}" + (f"/tree/{revision}" if revision else "")
    return RemoteFields(source="huggingface", repo=repo, revision=revision, url=url,
                        name=_text(data.get("name")), description=_text(data.get("description")))


def remote_fields(source: str, data: dict[str, Any], sha256: str) -> RemoteFields:
    """Dispatch on ``source`` (civitai or huggingface)."""
    if source == "civitai":
        return civitai_fields(data, sha256)
    if source == "huggingface":
        return huggingface_fields(data)
    raise UsageError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")
