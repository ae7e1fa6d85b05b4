"""The settings of the last generation, kept in the home (``catalog/last-generation.json``) so that
``sdhub generate --last`` draws it again: A1111's "restore the last settings".

The file holds ``generate``'s options as they were used: the model as its path and SHA-256, the seed
resolved (so a random seed is drawn again), and each per-model default filled in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdhub.config import Home
from sdhub.errors import BadInputError, NotFoundError

LAST_RUN_FILE = "last-generation.json"
FORMAT = 1


def last_run_path(home: Home) -> Path:
    return home.catalog_dir / LAST_RUN_FILE


def save_last_run(home: Home, options: dict[str, Any]) -> None:
    """Keep ``options`` (JSON values) as the last generation's settings, written atomically."""
    from sdhub.catalog.sidecars import write_file_atomic

    path = last_run_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT, "options": options}, indent=2, ensure_ascii=False) + "\n"
    write_file_atomic(path, text.encode("utf-8"))


def load_last_run(home: Home) -> dict[str, Any]:
    """The last generation's options; refused in one line when there is none or the file is unreadable."""
    path = last_run_path(home)
    if not path.is_file():
        raise NotFoundError(f"no earlier generation in the home {home.root} to repeat (no {path.name} yet)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BadInputError(f"{path} is unreadable ({error}); run a generation without --last") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("options"), dict):
        raise BadInputError(f"{path} is not a last-generation file this sdhub reads; run one without --last")
    return dict(data["options"])
