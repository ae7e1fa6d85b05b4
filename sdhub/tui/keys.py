"""Every key binding and palette command of the TUI, in one place.

Each action is declared once with its key, its title and the screen it belongs to; the screens
take their ``BINDINGS`` from here, the help screen lists them and the command palette offers them.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class ActionSpec:
    """One thing a user can do: ``action`` is the Textual action name on the scope's screen."""

    action: str
    key: str
    title: str
    help: str
    scope: str  # "app", "library", "asset" (library and details), "details", "get", "downloads"
    show: bool = False  # shown in the footer
    key_display: str | None = None
    footer_title: str | None = None  # a shorter title for the footer, where the screen says the rest


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("show_library", "l", "Library", "Browse the assets of this home", "app", True),
    ActionSpec("show_get", "g", "Get", "Get a model: paste a reference or search Civitai", "app", True),
    ActionSpec("show_downloads", "d", "Downloads", "Show downloads in progress and finished", "app", True),
    ActionSpec("help", "question_mark", "Help", "Show the keys and what they do", "app", True, "?"),
    ActionSpec("toggle_theme", "ctrl+t", "Light/dark theme", "Switch between the light and the dark theme", "app"),
    ActionSpec("quit", "q", "Quit", "Leave sdhub (asks first while a job is running; ctrl+q works in text fields too)",
               "app", True),
    ActionSpec("focus_search", "slash", "Search", "Search the library as you type", "library", True, "/"),
    ActionSpec("leave_search", "escape", "Leave search", "Leave the search box (back to the table)", "library"),
    ActionSpec("details", "enter", "Details", "Open everything known about the highlighted asset", "library", True),
    ActionSpec("cycle_kind", "k", "Filter by kind", "Show only checkpoints, VAEs, LoRAs or embeddings", "library"),
    ActionSpec("cycle_base", "b", "Filter by base", "Show only one base model (SD 1.5, SDXL...)", "library"),
    ActionSpec("cycle_sort", "o", "Sort", "Sort by name, size or date added", "library"),
    ActionSpec("scan", "ctrl+r", "Scan", "Rescan the home's folders into the catalog", "library"),
    ActionSpec("refresh_remotes", "m", "Remote state",
               "Ask the home's remotes what they hold: the Where column shows here, remote or both", "library"),
    ActionSpec("convert", "c", "Convert", "Convert the asset to .safetensors", "asset"),
    ActionSpec("prune", "p", "Prune", "Prune the asset (drop EMA and training state, fp16)", "asset", True),
    ActionSpec("hash", "h", "Hash", "Compute every hash of the asset and check it against the catalog", "asset"),
    ActionSpec("inspect", "i", "Inspect", "Inspect the asset: architecture, components, problems", "asset"),
    ActionSpec("smoke_test", "t", "Smoke test", "Generate a small test image with the checkpoint", "asset"),
    ActionSpec("asuka_test", "a", "Asuka test", "Run the reference generation and show the verdict", "asset"),
    ActionSpec("reveal", "r", "Reveal path", "Show and copy the path of the asset", "asset"),
    ActionSpec("copy_hash", "y", "Copy hash", "Copy the SHA-256 of the asset", "asset"),
    ActionSpec("copy_triggers", "w", "Copy trigger words", "Copy the asset's trigger words", "asset"),
    ActionSpec("delete", "delete", "Delete", "Delete the asset and its files", "asset", False, "del"),
    ActionSpec("back", "escape", "Back", "Back to the library", "details", True, "esc"),
    ActionSpec("leave_field", "escape", "Leave field", "Leave the text field (then l, d, q work)", "get", True,
               "esc"),
    ActionSpec("get_ref", "ctrl+g", "Get reference", "Download the pasted reference", "get"),
    ActionSpec("civitai_search", "ctrl+s", "Search Civitai", "Search Civitai with the query and filters", "get"),
    ActionSpec("cancel_download", "x", "Cancel download", "Cancel the highlighted download", "downloads", True,
               footer_title="Cancel"),
    ActionSpec("retry_download", "r", "Retry download", "Retry (resume) the highlighted download", "downloads", True,
               footer_title="Retry"),
)


def bindings(*scopes: str) -> list[Binding]:
    """The Textual bindings of some scopes (``app``, ``library``, ``asset``, ``get``...)."""
    return [
        Binding(spec.key, spec.action, spec.footer_title or spec.title, show=spec.show, key_display=spec.key_display,
                tooltip=spec.help)
        for spec in ACTIONS
        if spec.scope in scopes
    ]


def actions(*scopes: str) -> list[ActionSpec]:
    """The actions of some scopes, in declaration order."""
    return [spec for spec in ACTIONS if spec.scope in scopes]


def key_label(spec: ActionSpec) -> str:
    """How a key is written on the help screen."""
    return spec.key_display or spec.key


#: action -> the library feature (``sdhub.tui.backend.FEATURES``) it needs.
ACTION_FEATURES: dict[str, str] = {
    "scan": "catalog",
    "refresh_remotes": "remote_state",
    "convert": "convert",
    "prune": "prune",
    "hash": "hash",
    "inspect": "inspect",
    "smoke_test": "smoke_test",
    "asuka_test": "asuka_test",
    "delete": "catalog",
    "get_ref": "get",
    "civitai_search": "civitai",
    "retry_download": "get",
}
