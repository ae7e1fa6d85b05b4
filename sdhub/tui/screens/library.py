"""The library screen (the default): every asset in a table, filters, search as you type, and the
highlighted asset's details beside it."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import sqlite_utils

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Select, Static
from textual.worker import get_current_worker

from sdhub.catalog.db import connect
from sdhub.catalog.records import Asset, AssetDetails
from sdhub.config import ASSET_KINDS
from sdhub.errors import UsageError
from sdhub.models.kinds import FAMILIES
from sdhub.progress import Progress
from sdhub.remote.listing import location
from sdhub.remote.settings import list_remotes
from sdhub.tui import keys
from sdhub.tui.backend import error_message, feature
from sdhub.tui.messages import CatalogChanged
from sdhub.tui.screens.asset_actions import AssetActions
from sdhub.tui.screens.details import DetailsScreen
from sdhub.tui.widgets.activity import ActivityBar
from sdhub.tui.widgets.asset_detail import AssetDetail
from sdhub.tui.widgets.asset_table import AssetTable, Column, TableRow
from sdhub.units import human_size

COLUMNS = [
    Column("name", "Name"),
    Column("file", "File"),
    Column("kind", "Kind", 10),
    # In a narrow table, telling the rows apart (name, file) comes before base and dtype (the pane has them).
    Column("base", "Base", 9, hide_below=72),
    Column("size", "Size", 8, align_right=True),
    Column("dtype", "Dtype", 5, hide_below=84),
    Column("status", "Status", 8),
]
#: Once the remotes have been asked (``m``), a last column says where each asset is: here, remote or both.
WHERE_COLUMNS = [*COLUMNS, Column("where", "Where", 6)]
#: Where each column's text is in a row's cells.
CELL = {column.key: index for index, column in enumerate(WHERE_COLUMNS)}
#: Sort orders the catalog offers, in the order ``o`` cycles through them, with their direction.
SORTS = (("name", False), ("size", True), ("added", True))
SORT_COLUMN = {"name": "name", "size": "size", "added": None}
#: Below this width the detail pane is hidden; enter opens the details screen instead.
WIDE_ENOUGH_FOR_PANE = 100
#: At most this many search matches are shown (the status line says so).
SEARCH_LIMIT = 500
#: The detail pane follows the cursor once it has rested this long on a row.
DETAILS_DELAY_SECONDS = 0.08
#: How often the screen looks for catalog changes made outside the app (a CLI scan or get).
CHANGE_CHECK_SECONDS = 2.0


def asset_row(asset: Asset, on_remotes: set[str] | None = None) -> TableRow:
    """How one asset appears in the table: broken, unsafe and failed ones in red, missing ones dimmed; with
    ``on_remotes`` (the hashes the remotes hold) a last cell says where it is."""
    status = asset.condition
    style = "missing" if status == "missing" else ("broken" if asset.has_problems else "")
    if asset.outdated:  # `sdhub outdated` found a newer version on Civitai
        status = f"{status} ↑new" if status else "↑new"
    # The label a source gives ("Pony") says more than its family in a narrow column; the pane has both.
    base = asset.shown_label or asset.base_model or ""
    cells = (asset.name, asset.file_name, asset.kind, base, human_size(asset.size), asset.dtype or "", status)
    if on_remotes is not None:
        cells += (location(bool(asset.present_files), asset.sha256 in on_remotes),)
    return TableRow(asset.sha256, cells, style)


def base_choices(assets: list[Asset]) -> list[str]:
    """The base filters worth offering: the families present (sdxl: Pony and Illustrious too), then the
    labels sources give ("Pony": only those), each as ``list_assets(base=...)`` takes it."""
    families = [family for family in FAMILIES if any(a.base_model == family for a in assets)]
    labels = sorted({a.shown_label for a in assets if a.shown_label} - set(families), key=str.lower)
    return families + labels


@dataclass(frozen=True)
class Query:
    """What the table shows: the search text, the filters and the order."""

    text: str = ""
    kind: str | None = None
    base: str | None = None
    sort: str = "name"


class LibraryScreen(AssetActions, Screen):
    """Browse the catalog: search, filter, sort; act on the highlighted asset."""

    BINDINGS = keys.bindings("library", "asset")
    ACTION_SCOPES = ("library", "asset")

    def __init__(self) -> None:
        super().__init__()
        self.query_state = Query()
        self.total_assets = 0
        self.shown_assets = 0
        self._bases: list[str] = []
        self._listings: dict[tuple[str | None, str | None, str], list[Asset]] = {}
        self._offered_first_run = False
        self._details_timer: Timer | None = None
        self._watch: sqlite_utils.Database | None = None
        self._seen_version: int | None = None
        #: The hashes the home's remotes held when last asked (``m``); None until then. Kept, not re-asked, on
        #: every reload: the table never waits on the network.
        self._on_remotes: set[str] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="filters"):
            yield Input(placeholder="/ search names, tags, trigger words", id="search")
            yield Select([(kind, kind) for kind in ASSET_KINDS], prompt="all kinds", id="kind")
            yield Select([], prompt="all bases", id="base")
            yield Select([(f"by {name}", name) for name, _ in SORTS], value="name", allow_blank=False,
                         id="sort")
        with Horizontal(id="main"):
            yield AssetTable(COLUMNS, empty_text="No assets match.", id="assets")
            yield AssetDetail(id="detail-pane")
        yield Static("", id="status-line", markup=False)
        yield ActivityBar(id="activity")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(AssetTable).focus()
        self._apply_width(self.size.width)
        self._check_for_outside_changes()  # the baseline, taken before the first query
        self.reload()
        self.set_interval(CHANGE_CHECK_SECONDS, self._check_for_outside_changes)

    def _check_for_outside_changes(self) -> None:
        # A CLI scan or download in another terminal writes the same catalog: show its result.
        # SQLite's data_version changes on one connection whenever any other one commits.
        database = self.app.home.database_path
        if self._watch is None:
            if not database.is_file():
                return
            self._watch = connect(database)
        try:
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return  # asked again at the next tick
        if self._seen_version is not None and version != self._seen_version:
            self.on_catalog_changed(CatalogChanged())
        self._seen_version = version

    def on_unmount(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def on_resize(self) -> None:
        self._apply_width(self.size.width)

    def _apply_width(self, width: int) -> None:
        self.set_class(width < WIDE_ENOUGH_FOR_PANE, "-narrow")

    # -- loading rows ----------------------------------------------------------------------------

    def reload(self) -> None:
        """Query the catalog for the current search, filters and order (in a worker thread)."""
        self._load(self.query_state)

    @work(thread=True, exclusive=True, group="library-query", exit_on_error=False)
    def _load(self, query: Query) -> None:
        worker = get_current_worker()
        if not self.app.home.database_path.is_file():
            return  # no catalog yet: the first-run screen offers to set the home up
        try:
            with self.app.open_catalog() as catalog:
                everything = self._listing(catalog, None, None, query.sort)
                listing = self._listing(catalog, query.kind, query.base, query.sort)
                rows, note = listing, ""
                if query.text:
                    rows, note = self._search(catalog, query.text, listing)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            self.notify(error_message(error), title="Catalog", severity="error")
            return
        bases = base_choices(everything)
        on_remotes = self._on_remotes
        table_rows = [asset_row(asset, on_remotes) for asset in rows]
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_rows, query, table_rows, len(everything), bases, note)

    def _listing(self, catalog: object, kind: str | None, base: str | None, sort: str) -> list[Asset]:
        """``Catalog.list_assets`` for these filters, remembered until the catalog changes."""
        key = (kind, base, sort)
        cached = self._listings.get(key)
        if cached is None:
            cached = self._listings[key] = catalog.list_assets(kind=kind, base=base, sort=sort)
        return cached

    def _search(self, catalog: object, text: str, listing: list[Asset]) -> tuple[list[Asset], str]:
        """Full-text matches of ``text`` among ``listing`` (the filtered, sorted assets), in its order."""
        try:
            hits = catalog.search(text, limit=SEARCH_LIMIT)
        except UsageError:
            return [], "type a word to search"
        order = {asset.sha256: position for position, asset in enumerate(listing)}
        matches = sorted((a for a in hits if a.sha256 in order), key=lambda a: order[a.sha256])
        note = f"first {SEARCH_LIMIT} matches" if len(hits) >= SEARCH_LIMIT else ""
        return matches, note

    def _show_rows(self, query: Query, rows: list[TableRow], total: int, bases: list[str], note: str) -> None:
        if query != self.query_state or not self.is_attached:
            return  # an older answer arriving after a newer question, or the app is closing
        table = self.query_one(AssetTable)
        table.set_rows(rows)
        column = SORT_COLUMN.get(query.sort)
        table.set_sort(column, dict(SORTS)[query.sort])
        self.total_assets, self.shown_assets = total, len(rows)
        if bases != self._bases:
            self._set_bases(bases)
        filters = [f for f in (query.kind, query.base, query.text and f'"{query.text}"', note) if f]
        status = f"{len(rows):,} of {total:,} assets"
        if filters:
            status += " · " + " · ".join(filters)
        status += f" · sorted by {query.sort}"
        self.query_one("#status-line", Static).update(status)
        if not rows:
            self.query_one(AssetDetail).show(None, self.app.home.catalog_dir)
        if total == 0 and not self._offered_first_run:
            self._offered_first_run = True
            self.app.offer_first_run()

    def _set_bases(self, bases: list[str]) -> None:
        self._bases = bases
        select = self.query_one("#base", Select)
        current = select.value
        select.set_options([(base, base) for base in bases])
        if current in bases:
            select.value = current

    def _set_query(self, **changes: object) -> None:
        query = Query(**{**self.query_state.__dict__, **changes})
        if query != self.query_state:  # menus also report the value they were given at start
            self.query_state = query
            self.reload()

    def on_catalog_changed(self, message: CatalogChanged) -> None:
        self._listings = {}
        self.reload()
        key = self.selected_asset_key()
        if key is not None and not self.has_class("-narrow"):
            self._load_details(key)  # the pane too: a test's verdict, a new name, lineage

    # -- search, filters, sorting ----------------------------------------------------------------

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self._set_query(text=event.value.strip())

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.query_one(AssetTable).focus()

    @on(Select.Changed, "#kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        self._set_query(kind=None if event.value is Select.NULL else event.value)

    @on(Select.Changed, "#base")
    def _base_changed(self, event: Select.Changed) -> None:
        self._set_query(base=None if event.value is Select.NULL else event.value)

    @on(Select.Changed, "#sort")
    def _sort_changed(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self._set_query(sort=event.value)

    @on(AssetTable.HeaderClicked)
    def _header_clicked(self, event: AssetTable.HeaderClicked) -> None:
        for sort, column in SORT_COLUMN.items():
            if column == event.column:
                self.query_one("#sort", Select).value = sort
                return
        self.notify("The table sorts by name, size or date added.", title="Sort")

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_leave_search(self) -> None:
        self.query_one(AssetTable).focus()

    def _cycle(self, select_id: str, values: list[object]) -> None:
        select = self.query_one(select_id, Select)
        current = select.value
        position = values.index(current) if current in values else -1
        select.value = values[(position + 1) % len(values)]

    def action_cycle_kind(self) -> None:
        self._cycle("#kind", [*ASSET_KINDS, Select.NULL])

    def action_cycle_base(self) -> None:
        self._cycle("#base", [*self._bases, Select.NULL])

    def action_cycle_sort(self) -> None:
        self._cycle("#sort", [name for name, _ in SORTS])

    # -- the highlighted asset -------------------------------------------------------------------

    @on(AssetTable.Highlighted)
    def _highlighted(self, event: AssetTable.Highlighted) -> None:
        if self._details_timer is not None:
            self._details_timer.stop()
        if event.key is None:
            self.query_one(AssetDetail).show(None, self.app.home.catalog_dir)
        elif not self.has_class("-narrow"):
            # While a key is held down the cursor races through rows: load only where it stops.
            key = event.key
            self._details_timer = self.set_timer(DETAILS_DELAY_SECONDS, lambda: self._load_details(key))

    @work(thread=True, exclusive=True, group="library-details", exit_on_error=False)
    def _load_details(self, key: str) -> None:
        worker = get_current_worker()
        try:
            with self.app.open_catalog() as catalog:
                details = catalog.show(key)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            self.notify(error_message(error), title="Details", severity="error")
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_details, key, details)

    def _show_details(self, key: str, details: AssetDetails) -> None:
        if self.is_attached and self.query_one(AssetTable).cursor_key == key:
            self.query_one(AssetDetail).show(details, self.app.home.catalog_dir)

    @on(AssetTable.Selected)
    def _selected(self, event: AssetTable.Selected) -> None:
        self.action_details()

    def action_details(self) -> None:
        key = self.selected_asset_key()
        if key is None:
            self.notify("No asset is highlighted.", severity="warning")
            return
        self.app.push_screen(DetailsScreen(key))

    def selected_asset_key(self) -> str | None:
        return self.query_one(AssetTable).cursor_key

    def action_scan(self) -> None:
        if self.app.notify_unavailable("catalog"):
            return
        activity = self.query_one(ActivityBar)
        self._scan(activity, activity.progress_for("Scanning"))

    @work(thread=True, group="library-scan", exit_on_error=False)
    def _scan(self, activity: ActivityBar, progress: Progress) -> None:
        try:
            with self.app.open_catalog() as catalog:
                report = catalog.scan(progress=progress)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            self.notify(error_message(error), title="Scan failed", severity="error")
            return
        finally:
            self.app.call_from_thread(activity.done, "Scanning")
        broken = f", {len(report.broken)} not usable (broken or unsafe)" if report.broken else ""
        self.notify(f"{report.files_seen} files, {report.assets_added} new assets, {report.files_missing} missing"
                    f"{broken}", title="Scan finished", severity="warning" if report.broken else "information")
        self.app.call_from_thread(self.app.catalog_changed)

    def action_refresh_remotes(self) -> None:
        if self.app.notify_unavailable("remote_state"):
            return
        if not list_remotes(self.app.home):
            self.notify("This home has no remote yet: add one with `sdhub remote add NAME s3://BUCKET/PREFIX`.",
                        title="Remotes", severity="warning")
            return
        activity = self.query_one(ActivityBar)
        activity.progress_for("Asking the remotes")
        self._refresh_remotes(activity)

    @work(thread=True, exclusive=True, group="library-remotes", exit_on_error=False)
    def _refresh_remotes(self, activity: ActivityBar) -> None:
        try:
            held = feature("remote_state")(self.app.home)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            self.notify(error_message(error), title="Remotes", severity="error")
            return
        finally:
            self.app.call_from_thread(activity.done, "Asking the remotes")
        self.app.call_from_thread(self._remotes_known, held)

    def _remotes_known(self, held: set[str]) -> None:
        self._on_remotes = held
        self.query_one(AssetTable).columns = WHERE_COLUMNS
        self.reload()
