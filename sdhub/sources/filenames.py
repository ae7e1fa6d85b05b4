"""File names chosen by servers: read from Content-Disposition (RFC 6266) and made safe to use.

A server-chosen name is never trusted as a path: separators, ``..``, control characters and
unexpected extensions are removed before the name is joined to a library folder.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

#: Extensions a downloaded model (or its companion files) may keep; anything else gets ``.bin``.
SAFE_EXTENSIONS = frozenset({
    ".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".zip",
    ".json", ".yaml", ".yml", ".txt", ".png", ".jpg", ".jpeg", ".webp",
})
MAX_NAME_BYTES = 200

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\s*=\s*({_QUOTED}|[^;]*)")


def content_disposition_filename(header: str | None) -> str | None:
    """The file name a Content-Disposition header suggests; ``filename*`` wins over ``filename``."""
    if not header:
        return None
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + header.split(";", 1)[1] if ";" in header else ""):
        name, value = match.group(1).lower(), match.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(name, value)
    extended = params.get("filename*")
    if extended and "'" in extended:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    return params.get("filename") or None


def url_filename(url: str) -> str | None:
    """The last path segment of a URL, percent-decoded; None when the path ends in ``/``."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return name or None


def sanitize_filename(name: str | None, fallback: str = "download.bin") -> str:
    """A name safe to create in a library folder: one plain component with a known extension."""
    candidate = unicodedata.normalize("NFC", name or "")
    # Only the last component counts, whichever separator the server used.
    candidate = re.split(r"[\\/]", candidate)[-1]
    candidate = "".join(ch for ch in candidate if unicodedata.category(ch)[0] != "C")
    candidate = re.sub(r'[<>:"|?*]', "_", candidate).strip().strip(".")
    candidate = candidate.lstrip("-")
    if not candidate or set(candidate) <= {"."}:
        candidate = fallback
    stem, dot, extension = candidate.rpartition(".")
    if not dot or not stem:
        stem, extension = candidate, ""
    if f".{extension.lower()}" not in SAFE_EXTENSIONS:
        # An unknown extension (".sh", ".exe", none at all) becomes part of the name.
        fallback_ext = PurePosixPath(fallback).suffix.lower()
        stem = candidate.replace(".", "_")
        extension = fallback_ext[1:] if fallback_ext in SAFE_EXTENSIONS else "bin"
    while len(stem.encode("utf-8")) + len(extension) + 1 > MAX_NAME_BYTES:
        stem = stem[:-1]
    return f"{stem}.{extension}"


def numbered_name(name: str, number: int) -> str:
    """``model.safetensors`` -> ``model-2.safetensors``: the name for a collision."""
    stem, dot, extension = name.rpartition(".")
    return f"{stem}-{number}.{extension}" if dot else f"{name}-{number}"
