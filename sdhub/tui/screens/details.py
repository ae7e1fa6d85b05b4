"""The details screen: everything known about one asset, full size, with its actions."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from sdhub.catalog.records import AssetDetails
from sdhub.tui import keys
from sdhub.tui.backend import error_message
from sdhub.tui.messages import CatalogChanged
from sdhub.tui.screens.asset_actions import AssetActions
from sdhub.tui.widgets.activity import ActivityBar
from sdhub.tui.widgets.asset_detail import AssetDetail


class DetailsScreen(AssetActions, Screen):
    """One asset: metadata, hashes, paths, Civitai info, problems, last test, preview."""

    BINDINGS = keys.bindings("details", "asset")
    ACTION_SCOPES = ("details", "asset")

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def compose(self) -> ComposeResult:
        yield Header()
        yield AssetDetail(id="details")
        yield ActivityBar(id="activity")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(AssetDetail).focus()
        self._load()

    def on_catalog_changed(self, message: CatalogChanged) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="details", exit_on_error=False)
    def _load(self) -> None:
        try:
            with self.app.open_catalog() as catalog:
                details = catalog.show(self.key)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            self.notify(error_message(error), title="Details", severity="error")
            return
        self.app.call_from_thread(self._show, details)

    def _show(self, details: AssetDetails) -> None:
        if self.is_attached:  # not when the screen closed while the catalog answered
            self.query_one(AssetDetail).show(details, self.app.home.catalog_dir)

    def selected_asset_key(self) -> str | None:
        return self.key

    def action_back(self) -> None:
        self.dismiss(None)

    def after_delete(self) -> None:
        self.dismiss(None)
