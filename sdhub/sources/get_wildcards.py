"""``get`` of a Civitai "Wildcards" version: download the pack privately, install it safely, catalogue it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sdhub.atomic import TEMP_PREFIX
from sdhub.config import Home
from sdhub.progress import Progress

if TYPE_CHECKING:
    from sdhub.sources.civitai import CivitaiChoice, CivitaiClient
    from sdhub.sources.get import GetOptions, GetResult

#: The asset kind (and Civitai model type, lower-cased) of wildcard packs.
WILDCARDS = "wildcards"


def is_wildcard_pack(choice: "CivitaiChoice") -> bool:
    """True for a version of a Civitai model of type Wildcards (its file type, "Model" or "Archive", says nothing)."""
    return choice.model_type.lower() == WILDCARDS


def get_wildcard_pack(home: Home, text: str, choice: "CivitaiChoice", client: "CivitaiClient",
                      options: "GetOptions", progress: Progress) -> "GetResult":
    """Download the version's file into a private temporary folder, then unpack it into the wildcards folder
    (``--to`` instead, when given); a refused pack leaves neither the download nor any file behind."""
    from sdhub.catalog.wildcard_files import refresh_wildcard_files
    from sdhub.sources.download import download
    from sdhub.sources.get import GetResult
    from sdhub.sources.wildcard_pack import install_pack

    folder = options.to or home.folder(WILDCARDS)
    home.catalog_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}wildcard-download-", dir=home.catalog_dir))
    try:
        fetched = download(
            client.http, choice.download_url, staging, expected_sha256=choice.sha256,
            fallback_name=str(choice.file.get("name") or f"civitai-{choice.version.get('id')}.zip"),
            connections=options.connections, quarantine_dir=home.catalog_dir / "quarantine", progress=progress,
            describe_error=client.describe_download_error,
            what=f"Civitai {choice.to_dict()['model_name'] or ''}".strip(),
        )
        installed = install_pack(fetched.path, folder, name=str(choice.file.get("name") or fetched.path.name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = GetResult(ref=text, source="civitai", path=installed.path, kind=WILDCARDS, sha256=choice.sha256,
                       size=installed.size, already_present=installed.already_present, download=fetched,
                       remote=choice.to_dict())
    if options.to is None:
        refresh_wildcard_files(home)
    return result
