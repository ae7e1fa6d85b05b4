"""A table of catalog rows that stays fast with tens of thousands of assets.

Textual's ``DataTable`` measures every cell of every row it is given (about a second for 10,000
rows), so a keystroke in the search box could not update it in time. This table renders only the
lines on screen (the line API): replacing all rows costs the same for ten rows or a million.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sdhub.text import printable


@dataclass(frozen=True)
class Column:
    """A column: ``width`` in cells, or None for columns that share the remaining space; a column
    with ``hide_below`` is left out of tables narrower than that many cells."""

    key: str
    label: str
    width: int | None = None
    align_right: bool = False
    hide_below: int = 0


@dataclass(frozen=True)
class TableRow:
    """One row: a key the screens use to find the asset, the cell texts and a style name."""

    key: str
    cells: tuple[str, ...]
    style: str = ""  # "" or a component class suffix: "missing", "broken"


GAP = 1
MIN_FLEX_WIDTH = 8


class AssetTable(ScrollView, can_focus=True):
    """A header line and one line per row, with a cursor row; only visible lines are drawn."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    COMPONENT_CLASSES = {
        "asset-table--header",
        "asset-table--cursor",
        "asset-table--missing",
        "asset-table--broken",
        "asset-table--empty",
    }

    DEFAULT_CSS = """
    AssetTable { height: 1fr; overflow-x: hidden; }
    AssetTable > .asset-table--header { text-style: bold; background: $panel; color: $foreground; }
    AssetTable > .asset-table--cursor { background: $block-cursor-blurred-background; }
    AssetTable:focus > .asset-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    AssetTable > .asset-table--missing { color: $text-muted; text-style: italic; }
    AssetTable > .asset-table--broken { color: $text-error; }
    AssetTable > .asset-table--empty { color: $text-muted; }
    """

    cursor: reactive[int] = reactive(0, always_update=True)

    class Highlighted(Message):
        """The cursor moved to another row (``key`` is None when the table is empty)."""

        def __init__(self, table: "AssetTable", key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class Selected(Message):
        """Enter or a double click on a row."""

        def __init__(self, table: "AssetTable", key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class HeaderClicked(Message):
        """A click on a column label (screens sort by it)."""

        def __init__(self, table: "AssetTable", column: str) -> None:
            super().__init__()
            self.table = table
            self.column = column

    def __init__(self, columns: list[Column], *, empty_text: str = "Nothing here.",
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = columns
        self.rows: list[TableRow] = []
        self.sort_column: str | None = None
        self.sort_descending = False
        self.empty_text = empty_text
        #: Incremented every time the rows are replaced; benchmarks and tests wait on it.
        self.generation = 0
        self._last_highlighted: str | None = None

    # -- data ------------------------------------------------------------------------------------

    def set_rows(self, rows: list[TableRow]) -> None:
        """Replace every row, keeping the cursor on the same key when it is still there."""
        current = self.cursor_key
        self.rows = rows
        self.generation += 1
        index = 0
        if current is not None:
            for position, row in enumerate(rows):
                if row.key == current:
                    index = position
                    break
        self.virtual_size = Size(self.size.width, len(rows) + 1)
        self.cursor = index
        self.refresh()

    def set_sort(self, column: str | None, descending: bool = False) -> None:
        """Show which column the rows are sorted by (the rows arrive sorted)."""
        self.sort_column, self.sort_descending = column, descending
        self.refresh()

    @property
    def cursor_key(self) -> str | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor].key
        return None

    @property
    def row_count(self) -> int:
        return len(self.rows)

    # -- cursor ----------------------------------------------------------------------------------

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.rows) - 1)) if self.rows else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()
        key = self.cursor_key
        if key != self._last_highlighted:
            self._last_highlighted = key
            self.post_message(self.Highlighted(self, key))

    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        top = round(self.scroll_y)
        visible = self._visible_rows()
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= self._visible_rows()

    def action_page_down(self) -> None:
        self.cursor += self._visible_rows()

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self.rows) - 1

    def key_enter(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.Selected(self, self.cursor_key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x)
            if column is not None:
                self.post_message(self.HeaderClicked(self, column))
            return
        index = round(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self.rows):
            self.cursor = index
            if event.chain >= 2:
                self.post_message(self.Selected(self, self.rows[index].key))

    # -- drawing ---------------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows) + 1)
        self._scroll_cursor_into_view()

    def _widths(self) -> list[int]:
        """Each column's width; 0 for a column left out at this width."""
        width = self.scrollable_content_region.width
        shown = [c for c in self.columns if width >= c.hide_below]
        fixed = sum(c.width or 0 for c in shown) + GAP * (len(shown) - 1)
        flexible = sum(1 for c in shown if c.width is None) or 1
        share, extra = divmod(max(0, width - fixed), flexible)
        widths, flex_seen = [], 0
        for column in self.columns:
            if column not in shown:
                widths.append(0)
            elif column.width is not None:
                widths.append(column.width)
            else:
                widths.append(max(MIN_FLEX_WIDTH, share + (1 if flex_seen < extra else 0)))
                flex_seen += 1
        return widths

    def _column_at(self, x: int) -> str | None:
        start = 0
        for column, width in zip(self.columns, self._widths()):
            if width and start <= x < start + width + GAP:
                return column.key
            start += width + GAP if width else 0
        return None

    @staticmethod
    def _fit(text: str, width: int, right: bool = False) -> str:
        if cell_len(text) > width:
            return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
        padding = " " * (width - cell_len(text))
        return padding + text if right else text + padding

    def _line_text(self, cells: tuple[str, ...] | list[str], widths: list[int]) -> str:
        # File names and names from servers may hold terminal escapes: shown as text, never sent.
        parts = [self._fit(printable(cell), width, column.align_right)
                 for cell, width, column in zip(cells, widths, self.columns) if width]
        return (" " * GAP).join(parts)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._widths()
        base = self.rich_style
        if y == 0:
            labels = []
            for column in self.columns:
                label = column.label
                if column.key == self.sort_column:
                    label += " ▼" if self.sort_descending else " ▲"
                labels.append(label)
            style = base + self.get_component_rich_style("asset-table--header")
            return Strip([Segment(set_cell_size(self._line_text(labels, widths), width), style)], width)
        index = round(self.scroll_y) + y - 1
        if not self.rows and y == 1:
            style = base + self.get_component_rich_style("asset-table--empty")
            return Strip([Segment(set_cell_size(" " + self.empty_text, width), style)], width)
        if index >= len(self.rows):
            return Strip([Segment(" " * width, base)], width)
        row = self.rows[index]
        style: Style = base
        if row.style:
            style += self.get_component_rich_style(f"asset-table--{row.style}")
        if index == self.cursor:
            style += self.get_component_rich_style("asset-table--cursor")
        return Strip([Segment(set_cell_size(self._line_text(row.cells, widths), width), style)], width)
