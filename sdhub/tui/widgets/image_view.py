"""A picture drawn with half blocks: each cell shows two pixels (upper in the foreground colour,
lower in the background colour), which works in every colour terminal."""

from __future__ import annotations

from pathlib import Path

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

UPPER_HALF = "▀"

Pixel = tuple[int, int, int]


def half_block_rows(path: Path, width: int, height: int) -> list[list[tuple[Pixel, Pixel]]]:
    """The image scaled to fit ``width`` x ``height`` cells, as rows of (upper, lower) RGB pairs."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = min(width / image.width, (height * 2) / image.height)
        size = (max(1, int(image.width * scale)), max(2, int(image.height * scale)))
        small = image.resize(size, Image.Resampling.LANCZOS)
    pixels = small.load()
    return [[(pixels[x, top], pixels[x, top + 1]) for x in range(small.width)]
            for top in range(0, small.height - 1, 2)]


class ImageView(Widget):
    """Shows a PNG/JPEG/WebP file scaled to the widget; nothing when there is no image."""

    DEFAULT_CSS = """
    ImageView { height: 12; width: 1fr; }
    """

    def __init__(self, path: Path | None = None, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._path = path
        self._cache_key: tuple[Path | None, int, int] | None = None
        self._strips: list[Strip] = []
        self.error: str | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    def show(self, path: Path | None) -> None:
        """Display ``path`` (None clears the picture)."""
        self._path = path
        self._cache_key = None
        self.refresh()

    def _ensure_strips(self) -> None:
        width, height = self.size
        key = (self._path, width, height)
        if key == self._cache_key:
            return
        self._cache_key = key
        self._strips, self.error = [], None
        if self._path is None or width == 0 or height == 0:
            return
        try:
            rows = half_block_rows(self._path, width, height)
        except (OSError, ValueError) as error:
            # A damaged preview is shown as a line of text, never as a crash of the app.
            self.error = f"preview unreadable: {error}"
            return
        for row in rows:
            left = (width - len(row)) // 2
            segments = [Segment(" " * left)] if left > 0 else []
            segments += [
                Segment(UPPER_HALF, Style(color=Color.from_rgb(*upper), bgcolor=Color.from_rgb(*lower)))
                for upper, lower in row
            ]
            self._strips.append(Strip(segments))

    def render_line(self, y: int) -> Strip:
        self._ensure_strips()
        width = self.size.width
        if self.error and y == 0:
            return Strip([Segment(self.error[:width])]).adjust_cell_length(width, self.rich_style)
        if y >= len(self._strips):
            return Strip.blank(width, self.rich_style)
        return self._strips[y].apply_style(self.rich_style).adjust_cell_length(width, self.rich_style)
