"""The get screen: paste a reference, or search Civitai and pick a model and version; the
downloads it starts are listed below."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Checkbox, DataTable, Footer, Header, Input, Label, Select
from textual.worker import get_current_worker

from sdhub.tui import keys
from sdhub.tui.backend import error_message, feature
from sdhub.tui.messages import DownloadsChanged
from sdhub.tui.widgets.downloads_panel import DownloadsPanel
from sdhub.units import human_size

#: Civitai's model types and base models offered in the search form (exact API strings).
MODEL_TYPES = ("Checkpoint", "LORA", "LoCon", "TextualInversion", "VAE")
BASE_MODELS = ("SD 1.5", "SD 2.1", "SDXL 1.0", "Pony", "Illustrious", "NoobAI", "Flux.1 D")
SORTS = ("Highest Rated", "Most Downloaded", "Newest")
SEARCH_LIMIT = 40


def civitai_ref(model_id: Any, version_id: Any) -> str:
    """The AIR-style reference ``sdhub get`` takes for one version of a Civitai model."""
    return f"civitai:{model_id}@{version_id}"


def is_listing(ref: str) -> bool:
    """Whether ``ref`` is a Civitai collection or search page (listed to choose from, not downloaded)."""
    from sdhub.errors import SdhubError
    from sdhub.sources.refs import CivitaiListingRef, parse_ref

    try:
        return isinstance(parse_ref(ref), CivitaiListingRef)
    except SdhubError:
        return False


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ""


def model_cells(model: dict[str, Any]) -> tuple[Any, ...]:
    versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict)]
    base = versions[0].get("baseModel", "") if versions else ""
    stats = model.get("stats") or {}
    name = Text(str(model.get("name", "?")))
    if model.get("nsfw"):
        name.append(" nsfw", style="red")
    return (name, str(model.get("type", "")), str(base or ""), _count(stats.get("downloadCount")),
            str((model.get("creator") or {}).get("username", "")))


def version_cells(version: dict[str, Any]) -> tuple[Any, ...]:
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    primary = next((f for f in files if f.get("primary")), files[0] if files else {})
    size = primary.get("sizeKB")
    size_text = human_size(size * 1024) if isinstance(size, (int, float)) else ""
    fmt = (primary.get("metadata") or {}).get("format") or ""
    return (str(version.get("name", "?")), size_text, str(fmt), str(version.get("baseModel", "")),
            ", ".join(version.get("trainedWords") or [])[:40])


class GetScreen(Screen):
    """Get a model by reference or from a Civitai search."""

    BINDINGS = keys.bindings("get")
    ACTION_SCOPES = ("get", "downloads")

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="ref-row"):
            yield Input(placeholder="paste a Civitai URL or AIR, a Hugging Face repo/file, or a URL; enter gets it",
                        id="ref", compact=True)
            yield Button("Get", id="get-button", variant="primary", compact=True)
        with Horizontal(id="search-row"):
            yield Input(placeholder="search Civitai; enter searches", id="query", compact=True)
            yield Select([(t, t) for t in MODEL_TYPES], prompt="any type", id="type", compact=True)
            yield Select([(b, b) for b in BASE_MODELS], prompt="any base", id="base", compact=True)
            yield Select([(s, s) for s in SORTS], prompt="any order", id="civitai-sort", compact=True)
            yield Checkbox("NSFW", id="nsfw", compact=True)
        with Horizontal(id="results"):
            with Vertical(id="models-box"):
                yield Label("Models", classes="box-title")
                yield DataTable(id="models", cursor_type="row")
            with Vertical(id="versions-box"):
                yield Label("Versions (enter downloads)", classes="box-title")
                yield DataTable(id="versions", cursor_type="row")
        yield Label("Downloads", classes="box-title")
        yield DownloadsPanel(id="downloads")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#models", DataTable).add_columns("Name", "Type", "Base", "Downloads", "Creator")
        self.query_one("#versions", DataTable).add_columns("Version", "Size", "Format", "Base", "Trigger words")
        self.query_one("#ref", Input).focus()

    def on_downloads_changed(self, message: DownloadsChanged) -> None:
        for panel in self.query(DownloadsPanel):
            panel.refresh_jobs(message.job)

    # -- get by reference ------------------------------------------------------------------------

    @on(Input.Submitted, "#ref")
    @on(Button.Pressed, "#get-button")
    def action_get_ref(self) -> None:
        if self.app.notify_unavailable("get"):
            return
        field = self.query_one("#ref", Input)
        ref = field.value.strip()
        if not ref:
            self.notify("Paste a Civitai URL or AIR, a Hugging Face reference or a URL first.",
                        severity="warning")
            return
        field.value = ""
        if is_listing(ref):
            # A collection or search page lists models: they fill the Models table to choose from.
            self.query_one("#models", DataTable).loading = True
            self._browse(ref, self.query_one("#nsfw", Checkbox).value or None)
            return
        self.app.downloads.add(ref)

    @work(thread=True, exclusive=True, group="civitai-search", exit_on_error=False)
    def _browse(self, url: str, nsfw: bool | None) -> None:
        worker = get_current_worker()
        try:
            listing = feature("civitai_browse")(url, limit=SEARCH_LIMIT, nsfw=nsfw)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            self.app.call_from_thread(self._search_failed, error_message(error))
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_models, [item.model for item in listing.items])
            if listing.notes:
                self.app.call_from_thread(self.notify, "; ".join(listing.notes), title=listing.title)

    # -- Civitai search --------------------------------------------------------------------------

    @on(Input.Submitted, "#query")
    def action_civitai_search(self) -> None:
        if self.app.notify_unavailable("civitai"):
            return
        values = {
            "query": self.query_one("#query", Input).value.strip() or None,
            "types": [] if (t := self.query_one("#type", Select).value) is Select.NULL else [t],
            "base_models": [] if (b := self.query_one("#base", Select).value) is Select.NULL else [b],
            "sort": None if (s := self.query_one("#civitai-sort", Select).value) is Select.NULL else s,
            "nsfw": self.query_one("#nsfw", Checkbox).value,
        }
        self.query_one("#models", DataTable).loading = True
        self._search(values)

    @on(Select.Changed, "#search-row Select")
    @on(Checkbox.Changed, "#nsfw")
    def _filter_changed(self) -> None:
        if self.models:  # after a first search, changing a filter searches again
            self.action_civitai_search()

    @work(thread=True, exclusive=True, group="civitai-search", exit_on_error=False)
    def _search(self, values: dict[str, Any]) -> None:
        worker = get_current_worker()
        client = None
        try:
            client = feature("civitai")()
            models = client.search(limit=SEARCH_LIMIT, **values)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            self.app.call_from_thread(self._search_failed, error_message(error))
            return
        finally:
            if client is not None:
                client.close()
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_models, models)

    def _search_failed(self, error: str) -> None:
        if not self.is_attached:
            return
        self.query_one("#models", DataTable).loading = False
        self.notify(error, title="Civitai search failed", severity="error", timeout=10)

    def _show_models(self, models: list[dict[str, Any]]) -> None:
        if not self.is_attached:
            return
        table = self.query_one("#models", DataTable)
        table.loading = False
        table.clear()
        self.query_one("#versions", DataTable).clear()
        self.models.clear()
        for model in models:
            key = str(model.get("id"))
            if key in self.models:
                continue
            self.models[key] = model
            table.add_row(*model_cells(model), key=key)
        if not models:
            self.notify("Civitai found no models for this search.", title="Civitai")
        else:
            table.focus()

    @on(DataTable.RowHighlighted, "#models")
    def _model_highlighted(self, event: DataTable.RowHighlighted) -> None:
        model = self.models.get(str(event.row_key.value))
        table = self.query_one("#versions", DataTable)
        table.clear()
        self.versions.clear()
        if model is None:
            return
        for version in model.get("modelVersions") or []:
            if not isinstance(version, dict):
                continue
            key = f"{model.get('id')}@{version.get('id')}"
            self.versions[key] = (model, version)
            table.add_row(*version_cells(version), key=key)

    @on(DataTable.RowSelected, "#models")
    def _model_selected(self) -> None:
        self.query_one("#versions", DataTable).focus()

    @on(DataTable.RowSelected, "#versions")
    def _version_selected(self, event: DataTable.RowSelected) -> None:
        if self.app.notify_unavailable("get"):
            return
        model, version = self.versions[str(event.row_key.value)]
        label = f"{model.get('name', '?')} · {version.get('name', '?')}"
        self.app.downloads.add(civitai_ref(model.get("id"), version.get("id")), label=label)
        self.notify(f"{label} joined the downloads", title="Get")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "esc Leave field" is in the footer only while a text field has the focus (and the q).
        return action != "leave_field" or isinstance(self.focused, Input)

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def action_leave_field(self) -> None:
        self.query_one("#models", DataTable).focus()

    def action_cancel_download(self) -> None:
        self.query_one(DownloadsPanel).action_cancel_download()

    def action_retry_download(self) -> None:
        self.query_one(DownloadsPanel).action_retry_download()
