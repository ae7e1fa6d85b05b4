"""Where the library lives: home resolution, folder layouts, and settings from the environment.

A *home* is a folder holding model files in one of the known layouts plus sdhub's own
``catalog/`` folder (the SQLite catalog, previews, caches). It is chosen by ``--home``, then
``SDHUB_HOME``, then the nearest parent of the working directory holding ``catalog/``, then the
default home (``sdhub init DIR --default``), then the user data dir. Nothing but ``init`` (and
commands that write into an existing folder) creates a home.

Settings live here, in files: the home's own (its layout) in ``catalog/settings.json``, the
user's (default home, tokens) in ``<user config dir>/sdhub/config.json``. Core code reads the
environment only through this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import platformdirs

from sdhub.atomic import atomic_output
from sdhub.errors import HomeError, SdhubError, UsageError
from sdhub.models.kinds import OTHER

@dataclass(frozen=True)
class Layout:
    """A folder convention: for each asset kind, candidate folders relative to the home root.

    The first candidate is where new files go unless another candidate already exists (then the
    first existing one does); every candidate that exists is scanned. ``markers`` are folders whose
    presence recognises an existing install of this layout.
    """

    name: str
    description: str
    folders: Mapping[str, tuple[str, ...]]
    markers: tuple[str, ...]


# The folder lists below are facts from each project's own source (read, not copied):
# - AUTOMATIC1111 webui and Forge: modules/cmd_args.py (--lora-dir, --hypernetwork-dir, --embeddings-dir,
#   --esrgan/--realesrgan/--dat-models-path), modules/sd_models.py (models/Stable-diffusion), sd_vae.py
#   (models/VAE), sd_vae_approx.py (models/VAE-approx), sd_vae_taesd.py (models/VAE-taesd), the upscalers'
#   ``models/<name>`` folders (ESRGAN, RealESRGAN, SwinIR, DAT, HAT), sd3_cond.py (models/CLIP for the SD3
#   text encoders); Forge's --text-encoder-dir (models/text_encoder) and modules_forge/shared.py
#   (models/ControlNet, models/ControlNetPreprocessor, where its CLIP-vision files are downloaded);
#   sd-webui-controlnet's models/ControlNet (and its old extensions/sd-webui-controlnet/models), whose
#   model list also holds IP-Adapters, and its annotator/downloads/clip_vision. Forge loads UNet-only
#   (diffusion model) files from its checkpoint list.
# - ComfyUI: folder_paths.py (checkpoints, diffusion_models and the legacy unet, loras, embeddings, vae,
#   text_encoders and the legacy clip, controlnet and t2i_adapter, clip_vision, upscale_models,
#   vae_approx, hypernetworks, style_models for FLUX.1 Redux); models/ipadapter from ComfyUI_IPAdapter_plus.
# - StabilityMatrix: the SharedFolderType enum, whose names are the folders under Models/
#   (StableDiffusion, DiffusionModels, Lora, LyCORIS, Embeddings, VAE, TextEncoders, ControlNet,
#   T2IAdapter, IpAdapter, IpAdapters15, IpAdaptersXl, ClipVision, ESRGAN, RealESRGAN, SwinIR, ApproxVAE,
#   Hypernetwork), and its legacy names (TextualInversion, CLIP, Unet) that it migrates.
# - Wildcards (docs/wildcards.md says why these): A1111's Dynamic Prompts extension (adieyal/sd-dynamic-prompts,
#   paths.py) reads extensions/sd-dynamic-prompts/wildcards unless config.json's ``wildcard_dir`` says otherwise.
#   ComfyUI has no wildcards folder of its own: comfyui-dynamicprompts reads <ComfyUI>/wildcards when it exists,
#   else custom_nodes/comfyui-dynamicprompts/wildcards; ComfyUI-Impact-Pack reads its own wildcards and
#   custom_wildcards folders. StabilityMatrix's SharedFolderType has no wildcards member (its CivitModelType
#   Wildcards maps to no folder), so sdhub keeps them beside the shared folders in Models/Wildcards.
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "sdhub",
            "sdhub's own layout: models/ (checkpoints; models/vae/, models/controlnet/... for the other kinds), "
            "loras/, embeddings/",
            {
                "checkpoint": ("models",),
                "diffusion-model": ("models/diffusion-models",),
                "lora": ("loras",),
                "embedding": ("embeddings",),
                "vae": ("models/vae",),
                "text-encoder": ("models/text-encoders",),
                "controlnet": ("models/controlnet",),
                "ip-adapter": ("models/ip-adapters",),
                "clip-vision": ("models/clip-vision",),
                "upscaler": ("models/upscalers",),
                "preview-decoder": ("models/preview-decoders",),
                "hypernetwork": ("models/hypernetworks",),
                "wildcards": ("wildcards",),
            },
            markers=("models", "loras", "embeddings"),
        ),
        Layout(
            "a1111",
            "AUTOMATIC1111 webui (and Forge): models/Stable-diffusion, models/VAE, models/Lora, embeddings/, "
            "models/ControlNet, models/ESRGAN...",
            {
                "checkpoint": ("models/Stable-diffusion",),
                "diffusion-model": ("models/Stable-diffusion",),
                "lora": ("models/Lora", "models/LyCORIS"),
                "embedding": ("embeddings",),
                "vae": ("models/VAE",),
                "text-encoder": ("models/text_encoder", "models/CLIP"),
                "controlnet": ("models/ControlNet", "extensions/sd-webui-controlnet/models"),
                "ip-adapter": ("models/ControlNet", "extensions/sd-webui-controlnet/models"),
                "clip-vision": ("models/ControlNetPreprocessor",
                                "extensions/sd-webui-controlnet/annotator/downloads/clip_vision"),
                "upscaler": ("models/ESRGAN", "models/RealESRGAN", "models/SwinIR", "models/DAT", "models/HAT"),
                "preview-decoder": ("models/VAE-approx", "models/VAE-taesd"),
                "hypernetwork": ("models/hypernetworks",),
                "wildcards": ("extensions/sd-dynamic-prompts/wildcards",),
            },
            markers=("models/Stable-diffusion",),
        ),
        Layout(
            "comfyui",
            "ComfyUI: models/checkpoints, models/vae, models/loras, models/embeddings, models/controlnet, "
            "models/upscale_models...",
            {
                "checkpoint": ("models/checkpoints",),
                "diffusion-model": ("models/diffusion_models", "models/unet"),
                "lora": ("models/loras",),
                "embedding": ("models/embeddings",),
                "vae": ("models/vae",),
                "text-encoder": ("models/text_encoders", "models/clip"),
                "controlnet": ("models/controlnet", "models/t2i_adapter"),
                "ip-adapter": ("models/ipadapter", "models/style_models"),
                "clip-vision": ("models/clip_vision",),
                "upscaler": ("models/upscale_models",),
                "preview-decoder": ("models/vae_approx",),
                "hypernetwork": ("models/hypernetworks",),
                "wildcards": ("wildcards", "custom_nodes/comfyui-dynamicprompts/wildcards",
                              "custom_nodes/ComfyUI-Impact-Pack/wildcards",
                              "custom_nodes/ComfyUI-Impact-Pack/custom_wildcards"),
            },
            markers=("models/checkpoints",),
        ),
        Layout(
            "stabilitymatrix",
            "StabilityMatrix shared models: Models/StableDiffusion, Models/VAE, Models/Lora, Models/Embeddings, "
            "Models/ControlNet, Models/ESRGAN...",
            {
                "checkpoint": ("Models/StableDiffusion",),
                "diffusion-model": ("Models/DiffusionModels", "Models/Unet"),
                "lora": ("Models/Lora", "Models/LyCORIS"),
                # Older StabilityMatrix releases called the embeddings folder TextualInversion.
                "embedding": ("Models/Embeddings", "Models/TextualInversion"),
                "vae": ("Models/VAE",),
                "text-encoder": ("Models/TextEncoders", "Models/CLIP"),
                "controlnet": ("Models/ControlNet", "Models/T2IAdapter"),
                "ip-adapter": ("Models/IpAdapter", "Models/IpAdapters15", "Models/IpAdaptersXl"),
                "clip-vision": ("Models/ClipVision",),
                "upscaler": ("Models/ESRGAN", "Models/RealESRGAN", "Models/SwinIR"),
                "preview-decoder": ("Models/ApproxVAE",),
                "hypernetwork": ("Models/Hypernetwork",),
                "wildcards": ("Models/Wildcards",),
            },
            markers=("Models/StableDiffusion",),
        ),
    )
}

#: The asset kinds that have folders of their own in every layout: every kind of
#: ``sdhub.models.kinds`` but "other", in its order. Files of kind "other" (and of a kind a
#: download could not tell) are kept in the home's ``downloads/`` folder.
ASSET_KINDS: tuple[str, ...] = tuple(LAYOUTS["sdhub"].folders)
#: The folder under the home root where downloads are kept until they are filed (kind "other").
DOWNLOADS_DIR = "downloads"
#: The kind whose files live in the downloads folder.
UNFILED_KIND = OTHER

#: Folder names of variants whose folder is not named after them: ComfyUI loads FLUX.1 Redux (an
#: IP-Adapter-like image prompt model) from models/style_models.
_VARIANT_FOLDER_NAMES = {"redux": "style_models"}

#: Order in which layouts are tried when recognising an existing install; the most specific first.
DETECTION_ORDER = ("stabilitymatrix", "a1111", "comfyui", "sdhub")

CATALOG_DIR = "catalog"
DATABASE_NAME = "sdhub.db"
#: The home's own settings (its layout), beside the catalog: ``catalog/settings.json``.
SETTINGS_NAME = "settings.json"
#: Layouts whose marker folders are evidence enough to contradict a ``--layout`` (sdhub's are not:
#: every install has a ``models/`` folder).
_DISTINCT_LAYOUTS = ("stabilitymatrix", "a1111", "comfyui")


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
    def settings_path(self) -> Path:
        return self.catalog_dir / SETTINGS_NAME

    @property
    def is_set_up(self) -> bool:
        """True once the folder is an sdhub home (it has ``catalog/``): set up by init, scan or get."""
        return self.catalog_dir.is_dir()

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def downloads_dir(self) -> Path:
        """Where downloads are kept until they are filed: files of kind "other", or of a kind with no folder."""
        return self.root / DOWNLOADS_DIR

    def folder(self, kind: str) -> Path:
        """The folder where new files of ``kind`` go (``downloads/`` for "other")."""
        if kind == UNFILED_KIND:
            return self.downloads_dir
        try:
            return self.folders[kind]
        except KeyError:
            raise UsageError(f"unknown asset kind {kind!r}; choose one of: "
                             f"{', '.join([*ASSET_KINDS, UNFILED_KIND])}") from None

    def folder_for(self, kind: str, variant: str | None = None) -> Path:
        """Where a new file of ``kind`` goes: among the kind's folders, the one named after its variant
        if there is one (A1111 loads DAT, HAT and SwinIR upscalers only from models/DAT, models/HAT and
        models/SwinIR), else the kind's folder."""
        if variant:
            wanted = _VARIANT_FOLDER_NAMES.get(variant.lower(), variant.lower())
            for path in self.candidate_folders(kind):
                if path.name.lower() == wanted:
                    return path
        return self.folder(kind)

    def candidate_folders(self, kind: str) -> list[Path]:
        """Every folder the layout names for ``kind``, the one new files go to first."""
        layout = LAYOUTS.get(self.layout)
        chosen = self.folder(kind)
        others = [self.root / c for c in (layout.folders.get(kind, ()) if layout else ())]
        return [chosen, *(path for path in others if path != chosen)]

    def to_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "source": self.source,
            "catalog": str(self.catalog_dir),
            "database": str(self.database_path),
            "settings": str(self.settings_path),
            "outputs": str(self.outputs_dir),
            "downloads": str(self.downloads_dir),
            "folders": {kind: str(path) for kind, path in self.folders.items()},
            "candidate_folders": {kind: [str(path) for path in self.candidate_folders(kind)] for kind in self.folders},
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
    """Pick the home root and say why: ``--home``, ``SDHUB_HOME``, a parent with catalog/, the
    default home (``sdhub init --default``), the user data dir."""
    environ = os.environ if environ is None else environ
    if cli_home:
        return Path(cli_home).expanduser().absolute(), "--home"
    if environ.get("SDHUB_HOME"):
        return Path(environ["SDHUB_HOME"]).expanduser().absolute(), "SDHUB_HOME"
    start = (cwd or Path.cwd()).absolute()
    for folder in (start, *start.parents):
        if (folder / CATALOG_DIR).is_dir():
            return folder, "parent folder with catalog/"
    default = default_home()
    if default is not None:
        return default, "default home"
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


def missing_home_message(root: Path, source: str) -> str:
    """What to say when the chosen home does not exist: which home, chosen how, and the way out."""
    create = f"`sdhub init --create {shlex.quote(str(root))}`"
    if source == "user data dir":
        return (f"no sdhub home yet: {root} (the user data dir, used when no --home, SDHUB_HOME or catalog/ "
                f"folder above is found) does not exist; attach a folder with `sdhub init DIR --default`, "
                f"or create this one with {create}")
    if source == "default home":
        return (f"the default home {root} (set in {config_path()}) does not exist; create it with {create}, "
                "or choose another with `sdhub init DIR --default`")
    return f"no sdhub home at {root} (from {source}): check the path, or create a home there with {create}"


def open_home(
    cli_home: str | os.PathLike[str] | None = None,
    *,
    layout: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    must_exist: bool = True,
) -> Home:
    """Resolve the home without creating anything; its layout comes from its settings or its folders.

    A home folder that does not exist is a ``HomeError`` (a mistyped ``--home`` must not become an
    empty library) unless ``must_exist`` is False (the TUI's first run, ``doctor``).
    """
    root, source = find_home_root(cli_home, environ=environ, cwd=cwd)
    check_home_root(root)
    if must_exist and not root.is_dir():
        raise HomeError(missing_home_message(root, source))
    name = layout or recorded_layout(root) or detect_layout(root) or "sdhub"
    return Home(root=root, layout=name, source=source, folders=resolve_folders(root, get_layout(name)))


def as_home(home: Home | str | os.PathLike[str] | None) -> Home:
    """``home`` as a resolved home: a ``Home`` as is, a folder path opened as one, None the home sdhub would pick."""
    return home if isinstance(home, Home) else open_home(home)


def home_settings_path(root: Path) -> Path:
    """The home's settings file, ``catalog/settings.json``."""
    return Path(root) / CATALOG_DIR / SETTINGS_NAME


def read_home_settings(root: Path) -> dict[str, object]:
    """The home's settings (its layout), empty when it has none; a broken file is a usage error."""
    return _read_json_object(home_settings_path(root), "home settings")


def write_home_settings(root: Path, values: dict[str, object]) -> Path:
    """Merge ``values`` into the home's settings file (written atomically)."""
    path = home_settings_path(root)
    return _write_json_object(path, {**read_home_settings(root), **values}, mode=0o644)


def recorded_layout(root: Path) -> str | None:
    """The layout recorded in the home's settings by ``sdhub init`` (or its first scan), if any."""
    settings = read_home_settings(root)
    value = settings.get("layout")
    if value is None and not home_settings_path(root).exists():
        value = _layout_from_old_catalog(root)
        if value in LAYOUTS:
            with contextlib.suppress(OSError, SdhubError):
                write_home_settings(root, {"layout": value})
    return value if value in LAYOUTS else None


def _layout_from_old_catalog(root: Path) -> str | None:
    """Homes set up before ``settings.json`` kept their layout in the catalog's settings table:
    read it once (read-only, with plain sqlite3), so it can move to the settings file."""
    import sqlite3

    database = Path(root) / CATALOG_DIR / DATABASE_NAME
    if not database.is_file():
        return None
    try:
        connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            row = connection.execute("SELECT value FROM settings WHERE key = 'layout'").fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    return row[0] if row and isinstance(row[0], str) else None


def layout_evidence(root: Path) -> tuple[str, str] | None:
    """The layout an install's own folders show, with the folder that shows it; None when none is clear."""
    for name in DETECTION_ORDER:
        if name not in _DISTINCT_LAYOUTS:
            continue
        for marker in LAYOUTS[name].markers:
            if (root / marker).is_dir():
                return name, marker
    return None


def init_home(path: str | os.PathLike[str], layout: str | None = None, *, create: bool = True,
              source: str = "argument") -> Home:
    """Attach to (or, with ``create``, create) a home at ``path``: make its folders, record its layout.

    A ``layout`` that contradicts the folders already there (``comfyui`` on an A1111 install) or the
    layout the home was set up with is refused, naming what was found.
    """
    root = Path(path).expanduser().absolute()
    check_home_root(root)
    if not root.exists() and not create:
        raise HomeError(f"{root} does not exist (a mistyped path?); to make a new home there, "
                        f"run `sdhub init --create {shlex.quote(str(root))}`")
    recorded = recorded_layout(root) if root.is_dir() else None
    if layout is not None:
        get_layout(layout)
        _check_layout_matches(root, layout, recorded)
    name = layout or recorded or detect_layout(root) or "sdhub"
    chosen = get_layout(name)
    try:
        folders = resolve_folders(root, chosen)
        for folder in (*folders.values(), root / CATALOG_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        if recorded != name:
            write_home_settings(root, {"layout": name})
    except OSError as error:
        raise HomeError(f"cannot set up home {root}: {error.strerror or error}") from None
    return Home(root=root, layout=name, source=source, folders=folders)


def _check_layout_matches(root: Path, layout: str, recorded: str | None) -> None:
    if recorded is not None and recorded != layout:
        raise HomeError(f"--layout {layout} contradicts {root}: it was set up as a {recorded} home "
                        f"({home_settings_path(root)}); drop --layout, or edit that file to change it")
    evidence = layout_evidence(root) if root.is_dir() else None
    if evidence is not None and evidence[0] != layout:
        found, marker = evidence
        raise HomeError(f"--layout {layout} contradicts {root}: it has {marker}/, so it is laid out as {found}; "
                        f"drop --layout (or use --layout {found}) to keep its folders")


def default_home() -> Path | None:
    """The home ``sdhub init --default`` chose, from the user settings file; None when none is set."""
    value = read_config().get("default_home")
    return Path(value).expanduser().absolute() if isinstance(value, str) and value.strip() else None


def set_default_home(root: Path) -> Path:
    """Make ``root`` the home used when no ``--home``, ``SDHUB_HOME`` or parent ``catalog/`` says otherwise."""
    return write_config({"default_home": str(Path(root).expanduser().absolute())})


def env(name: str, default: str | None = None) -> str | None:
    """Read one environment setting; the only door from core code to ``os.environ``."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def config_path() -> Path:
    """sdhub's per-user settings file (tokens): ``<user config dir>/sdhub/config.json``, mode 0600."""
    return Path(platformdirs.user_config_dir("sdhub", appauthor=False)) / "config.json"


def read_config() -> dict[str, object]:
    """The per-user settings, empty when the file does not exist; a broken file is a usage error."""
    return _read_json_object(config_path(), "sdhub settings")


def write_config(values: dict[str, object]) -> Path:
    """Merge ``values`` into the settings file, written atomically and readable only by the user."""
    return _write_json_object(config_path(), {**read_config(), **values}, mode=0o600)


def _read_json_object(path: Path, what: str) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {what} {path}: {error}; fix or delete the file") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} must hold a JSON object; fix or delete the file")
    return data


def _write_json_object(path: Path, data: dict[str, object], *, mode: int) -> Path:
    with atomic_output(path, mode=mode) as handle:
        handle.write(json.dumps(data, indent=2).encode("utf-8"))
    return path


def civitai_token() -> str | None:
    """The Civitai API token: ``CIVITAI_TOKEN``, else ``civitai_token`` in the settings file."""
    token = env("CIVITAI_TOKEN")
    if token:
        return token.strip()
    stored = read_config().get("civitai_token")
    return stored.strip() if isinstance(stored, str) and stored.strip() else None


#: Civitai's content levels, lowest first, with the bit each has in ``nsfwLevel`` (PG 1 ... Blocked 32).
NSFW_LEVELS = {"PG": 1, "PG13": 2, "R": 4, "X": 8, "XXX": 16, "Blocked": 32}
#: The highest level shown when the user has not chosen one: safe for work (Civitai's own SFW is PG and PG13).
DEFAULT_PREVIEW_NSFW = "PG13"


def nsfw_level_named(name: str) -> int:
    """The bit of a level name (``PG``, ``pg13``, ``R``, ``X``, ``XXX``); UsageError for any other."""
    for known, bit in NSFW_LEVELS.items():
        if str(name).strip().lower() == known.lower():
            return bit
    raise UsageError(f"unknown NSFW level {name!r}; choose one of: {', '.join(NSFW_LEVELS)}")


def preview_nsfw_max() -> int:
    """The highest NSFW level of a preview sdhub saves or shows: ``SDHUB_PREVIEW_NSFW``, else
    ``preview_nsfw`` in the settings file, else safe for work (PG13)."""
    value = env("SDHUB_PREVIEW_NSFW")
    if value is None:
        stored = read_config().get("preview_nsfw")
        value = stored if isinstance(stored, str) and stored.strip() else DEFAULT_PREVIEW_NSFW
    return nsfw_level_named(value)


def set_preview_nsfw_max(name: str) -> Path:
    """Store the highest NSFW level of previews in the settings file."""
    bit = nsfw_level_named(name)
    return write_config({"preview_nsfw": next(k for k, v in NSFW_LEVELS.items() if v == bit)})
