"""Where the library lives: home resolution, folder layouts, and settings from the environment.

A *home* is a folder holding model files in one of the known layouts plus sdhub's own
``catalog/`` folder (the SQLite catalog, previews, caches). It is chosen by ``--home``, then
``SDHUB_HOME``, then the nearest parent of the working directory holding ``catalog/``, then the
user data dir. Core code reads the environment only through this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import platformdirs

from sdhub.errors import HomeError, UsageError

#: The asset kinds that have a folder of their own in every layout.
ASSET_KINDS = ("checkpoint", "vae", "lora", "embedding")


@dataclass(frozen=True)
class Layout:
    """A folder convention: for each asset kind, candidate folders relative to the home root.

    The first candidate is where new files go unless another candidate already exists;
    ``markers`` are folders whose presence recognises an existing install of this layout.
    """

    name: str
    description: str
    folders: Mapping[str, tuple[str, ...]]
    markers: tuple[str, ...]


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "sdhub",
            "sdhub's own layout: models/, models/vae/, loras/, embeddings/",
            {
                "checkpoint": ("models",),
                "vae": ("models/vae",),
                "lora": ("loras",),
                "embedding": ("embeddings",),
            },
            markers=("models", "loras", "embeddings"),
        ),
        Layout(
            "a1111",
            "AUTOMATIC1111 webui (and Forge): models/Stable-diffusion, models/VAE, models/Lora, embeddings/",
            {
                "checkpoint": ("models/Stable-diffusion",),
                "vae": ("models/VAE",),
                "lora": ("models/Lora", "models/LyCORIS"),
                "embedding": ("embeddings",),
            },
            markers=("models/Stable-diffusion",),
        ),
        Layout(
            "comfyui",
            "ComfyUI: models/checkpoints, models/vae, models/loras, models/embeddings",
            {
                "checkpoint": ("models/checkpoints",),
                "vae": ("models/vae",),
                "lora": ("models/loras",),
                "embedding": ("models/embeddings",),
            },
            markers=("models/checkpoints",),
        ),
        Layout(
            "stabilitymatrix",
            "StabilityMatrix shared models: Models/StableDiffusion, Models/VAE, Models/Lora, Models/Embeddings",
            {
                "checkpoint": ("Models/StableDiffusion",),
                "vae": ("Models/VAE",),
                "lora": ("Models/Lora", "Models/LyCORIS"),
                # Older StabilityMatrix releases called the embeddings folder TextualInversion.
                "embedding": ("Models/Embeddings", "Models/TextualInversion"),
            },
            markers=("Models/StableDiffusion",),
        ),
    )
}

#: Order in which layouts are tried when recognising an existing install; the most specific first.
DETECTION_ORDER = ("stabilitymatrix", "a1111", "comfyui", "sdhub")

CATALOG_DIR = "catalog"
DATABASE_NAME = "sdhub.db"


def get_layout(name: str) -> Layout:
    """The layout called ``name``, or a usage error listing the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise UsageError(f"unknown layout {name!r}; choose one of: {', '.join(LAYOUTS)}") from None


def detect_layout(root: Path) -> str | None:
    """Recognise an existing install by its folders; None when nothing matches."""
    for name in DETECTION_ORDER:
        layout = LAYOUTS[name]
        if any((root / marker).is_dir() for marker in layout.markers):
            return name
    return None


@dataclass(frozen=True)
class Home:
    """A resolved home: its root, its layout and the real folder for each asset kind."""

    root: Path
    layout: str
    source: str = "argument"
    folders: dict[str, Path] = field(default_factory=dict)

    @property
    def catalog_dir(self) -> Path:
        return self.root / CATALOG_DIR

    @property
    def database_path(self) -> Path:
        return self.catalog_dir / DATABASE_NAME

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    def folder(self, kind: str) -> Path:
        """The folder where files of ``kind`` live (checkpoint, vae, lora, embedding)."""
        try:
            return self.folders[kind]
        except KeyError:
            raise UsageError(f"unknown asset kind {kind!r}; choose one of: {', '.join(ASSET_KINDS)}") from None

    def to_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "source": self.source,
            "catalog": str(self.catalog_dir),
            "database": str(self.database_path),
            "outputs": str(self.outputs_dir),
            "folders": {kind: str(path) for kind, path in self.folders.items()},
        }


def resolve_folders(root: Path, layout: Layout) -> dict[str, Path]:
    """For each kind, the first candidate folder that exists, else the first candidate."""
    folders = {}
    for kind, candidates in layout.folders.items():
        existing = [c for c in candidates if (root / c).is_dir()]
        folders[kind] = root / (existing[0] if existing else candidates[0])
    return folders


def user_data_home() -> Path:
    """The per-user fallback home (e.g. ~/.local/share/sdhub)."""
    return Path(platformdirs.user_data_dir("sdhub", appauthor=False))


def find_home_root(
    cli_home: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[Path, str]:
    """Pick the home root and say why: ``--home``, ``SDHUB_HOME``, a parent with catalog/, user dir."""
    environ = os.environ if environ is None else environ
    if cli_home:
        return Path(cli_home).expanduser().absolute(), "--home"
    if environ.get("SDHUB_HOME"):
        return Path(environ["SDHUB_HOME"]).expanduser().absolute(), "SDHUB_HOME"
    start = (cwd or Path.cwd()).absolute()
    for folder in (start, *start.parents):
        if (folder / CATALOG_DIR).is_dir():
            return folder, "parent folder with catalog/"
    return user_data_home(), "user data dir"


def check_home_root(root: Path) -> None:
    """Refuse a home that is a file or cannot be written, with a message saying which."""
    if root.exists() and not root.is_dir():
        raise HomeError(f"home {root} is a file, not a folder; pass a folder with --home or SDHUB_HOME")
    probe_dir = root
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise HomeError(f"home {root} cannot be created: {probe_dir} is a file")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise HomeError(f"home {root} is not writable; choose another folder with --home or SDHUB_HOME")


def open_home(
    cli_home: str | os.PathLike[str] | None = None,
    *,
    layout: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Home:
    """Resolve the home without creating anything; its layout comes from the catalog or its folders."""
    root, source = find_home_root(cli_home, environ=environ, cwd=cwd)
    check_home_root(root)
    name = layout or recorded_layout(root) or detect_layout(root) or "sdhub"
    return Home(root=root, layout=name, source=source, folders=resolve_folders(root, get_layout(name)))


def recorded_layout(root: Path) -> str | None:
    """The layout stored in the home's catalog by ``sdhub init``, if any."""
    database = root / CATALOG_DIR / DATABASE_NAME
    if not database.is_file():
        return None
    from sdhub.catalog.db import read_setting

    value = read_setting(database, "layout")
    return value if value in LAYOUTS else None


def init_home(path: str | os.PathLike[str], layout: str | None = None, *, source: str = "argument") -> Home:
    """Attach to (or create) a home at ``path``: make its folders and catalog, record its layout."""
    root = Path(path).expanduser().absolute()
    check_home_root(root)
    name = layout or detect_layout(root) or "sdhub"
    chosen = get_layout(name)
    try:
        folders = resolve_folders(root, chosen)
        for folder in (*folders.values(), root / CATALOG_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        from sdhub.catalog.db import write_setting

        write_setting(root / CATALOG_DIR / DATABASE_NAME, "layout", name)
    except OSError as error:
        raise HomeError(f"cannot set up home {root}: {error.strerror or error}") from None
    return Home(root=root, layout=name, source=source, folders=folders)


def env(name: str, default: str | None = None) -> str | None:
    """Read one environment setting; the only door from core code to ``os.environ``."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def config_path() -> Path:
    """sdhub's per-user settings file (tokens): ``<user config dir>/sdhub/config.json``, mode 0600."""
    return Path(platformdirs.user_config_dir("sdhub", appauthor=False)) / "config.json"


def read_config() -> dict[str, object]:
    """The per-user settings, empty when the file does not exist; a broken file is a usage error."""
    import json

    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read sdhub settings {path}: {error}; fix or delete the file") from None
    if not isinstance(data, dict):
        raise UsageError(f"sdhub settings {path} must hold a JSON object; fix or delete the file")
    return data


def write_config(values: dict[str, object]) -> Path:
    """Merge ``values`` into the settings file, written atomically and readable only by the user."""
    import json

    from sdhub.atomic import atomic_output

    path = config_path()
    merged = {**read_config(), **values}
    with atomic_output(path, mode=0o600) as handle:
        handle.write(json.dumps(merged, indent=2).encode("utf-8"))
    return path


def civitai_token() -> str | None:
    """The Civitai API token: ``CIVITAI_TOKEN``, else ``civitai_token`` in the settings file."""
    token = env("CIVITAI_TOKEN")
    if token:
        return token.strip()
    stored = read_config().get("civitai_token")
    return stored.strip() if isinstance(stored, str) and stored.strip() else None
