"""Every name a user may know an asset by, kept in ``assets.aliases`` so search and ``show`` find it.

A file's names (with and without its extension: what ``<lora:NAME:1>`` uses) stay after the file is
renamed, by the user or by Civitai; Civitai's model, version and file names and its AIR come from
its record. One name a line, each once (case aside), oldest first.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable

from sdhub.catalog.analysis import model_stem

#: A Civitai AIR (``urn:air:sdxl:lora:civitai:123@456``; the ``urn:``/``air:`` prefixes, the ecosystem and
#: the type are optional): the model id and, when given, the version id.
CIVITAI_AIR = re.compile(r"^(?:urn:)?(?:air:)?(?:[a-z0-9_.-]+:){0,2}civitai:(\d+)(?:@(\d+))?(?:[+.][\w.+-]*)?$",
                         re.IGNORECASE)


def parse_civitai_air(text: str) -> tuple[str, str | None] | None:
    """(model id, version id or None) of a Civitai AIR, or None when ``text`` is not one."""
    match = CIVITAI_AIR.match(text.strip())
    return (match.group(1), match.group(2)) if match else None


def file_aliases(path: str) -> list[str]:
    """The names a file is known by: its file name and its name without the model extension."""
    name = os.path.basename(path.rstrip(os.sep))
    return [name, model_stem(name)] if name else []


def civitai_aliases(data: Any, sha256: str | None = None) -> list[str]:
    """Civitai's names for a record (a version answer, or its JSON text): model, version, AIR, and the
    name of the file with ``sha256`` (or of the only file; not of a VAE or other file shipped beside it)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return []
    if not isinstance(data, dict):
        return []
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    found = [model.get("name"), data.get("name"), data.get("air")]
    files = [file for file in data.get("files") or [] if isinstance(file, dict) and file.get("name")]
    own = [file for file in files if sha256 and str((file.get("hashes") or {}).get("SHA256", "")).lower() == sha256]
    for file in own or (files if len(files) == 1 else []):
        found += file_aliases(str(file["name"]))
    return [str(value) for value in found if isinstance(value, (str, int)) and str(value).strip()]


def merge_aliases(current: str | None, names: Iterable[str]) -> str:
    """``current`` (one name a line) with ``names`` added, each once whatever its case."""
    lines = [line for line in (current or "").split("\n") if line]
    seen = {line.lower() for line in lines}
    for name in names:
        name = " ".join(str(name).split())  # one line each: no newline from a server or a file name
        if name and name.lower() not in seen:
            seen.add(name.lower())
            lines.append(name)
    return "\n".join(lines)


def alias_list(text: str | None) -> list[str]:
    return [line for line in (text or "").split("\n") if line]
