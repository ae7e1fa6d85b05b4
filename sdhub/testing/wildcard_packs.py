"""Wildcard packs for tests and the demo: a good pack as Civitai serves one, and hostile archives."""

from __future__ import annotations

import io
import stat
import zipfile
from typing import Any

from sdhub.testing.civitai_server import civitai_model

#: The good pack: a folder with a .txt list, a nested .txt and a YAML file of nested collections.
GOOD_PACK = {
    "anime-pack/color.txt": "# base colours\nred\ngreen\nblue\n\nyellow\n",
    "anime-pack/hair/style.txt": "long hair\nshort hair\nponytail\n",
    "anime-pack/outfits.yaml": "outfits:\n  casual:\n    - hoodie\n    - jeans\n  formal: [suit, dress, tuxedo]\n",
}


def zip_bytes(members: dict[str, bytes | str], *, modes: dict[str, int] | None = None,
              compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``members`` (name: content); ``modes`` sets a member's Unix mode bits (a symlink: S_IFLNK)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            mode = (modes or {}).get(name, stat.S_IFREG | 0o644)
            info.external_attr = mode << 16
            archive.writestr(info, content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


def wildcards_model(model_id: int, version_id: int, file_id: int, *, name: str = "Anime wildcards",
                    file_name: str = "anime-pack.zip") -> dict[str, Any]:
    """A Civitai model of type Wildcards as the API shows one: base model "Other", one "Model" file of format Other."""
    return civitai_model(model_id, version_id, file_id, name=name, file_name=file_name, model_type="Wildcards",
                         base="Other", file_format="Other")
