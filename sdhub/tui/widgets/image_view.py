"""Pictures in the terminal: previews and test images.

Where the terminal speaks a graphics protocol (kitty's terminal graphics protocol; sixel in xterm,
foot, WezTerm, iTerm2 and others) the picture is drawn with real pixels by ``textual-image``.
Everywhere else it is drawn with half blocks: each cell shows two pixels (upper in the foreground
colour, lower in the background colour), which works in every colour terminal and is what the
tests draw, so snapshots do not depend on the terminal they run in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

UPPER_HALF = "▀"
#: How pictures can be drawn; "auto" (for ``choose_protocol``) asks the terminal.
PROTOCOLS = ("kitty", "sixel", "halfblocks")
HALF_BLOCKS = "halfblocks"

Pixel = tuple[int, int, int]


def choose_protocol(wanted: str = "auto") -> str:
    """The protocol pictures will be drawn with: ``wanted``, or with "auto" the best one the
    terminal answers to (half blocks when stdout is not a terminal, or it answers to none).

    Call it before the app starts: asking the terminal needs its input, which Textual reads
    once it runs, and ``textual-image`` measures the terminal's cell size when imported.
    """
    if wanted not in ("auto", *PROTOCOLS):
        raise ValueError(f"unknown picture protocol {wanted!r}; choose auto, {', '.join(PROTOCOLS)}")
    if wanted == HALF_BLOCKS or wanted == "auto" and not (sys.__stdout__ and sys.__stdout__.isatty()):
        return HALF_BLOCKS
    try:
        from textual_image import renderable, widget  # noqa: F401  (importing asks the terminal)
    except Exception:  # a missing or broken optional renderer: half blocks always work
        return HALF_BLOCKS
    if wanted != "auto":
        return wanted
    if renderable.Image is renderable.SixelImage:
        return "sixel"
    if renderable.Image is renderable.TGPImage:
        return "kitty"
    return HALF_BLOCKS


def graphic_widget_class(protocol: str) -> type[Widget]:
    """The ``textual-image`` widget that draws pictures with ``protocol`` ("kitty" or "sixel")."""
    from textual_image.widget import SixelImage, TGPImage

    return {"kitty": TGPImage, "sixel": SixelImage}[protocol]


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


def _readable_image(path: Path) -> Any:
    """``path`` opened and checked, so a damaged file fails here rather than while drawing."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy()


class ImageView(Widget):
    """Shows a PNG/JPEG/WebP file scaled to the widget; nothing when there is no image.

    The protocol is the app's ``image_protocol`` (half blocks when the app has none).
    """

    DEFAULT_CSS = """
    ImageView { height: 12; width: 1fr; align: center top; }
    ImageView > .graphic { width: auto; height: auto; }
    """

    def __init__(self, path: Path | None = None, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._path = path
        self._cache_key: tuple[Path | None, int, int] | None = None
        self._strips: list[Strip] = []
        self._graphic: Widget | None = None
        self.error: str | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def protocol(self) -> str:
        """How this view draws: "kitty", "sixel" or "halfblocks"."""
        return getattr(self.app, "image_protocol", HALF_BLOCKS)

    @property
    def graphic(self) -> Widget | None:
        """The ``textual-image`` widget drawing the picture, when a graphics protocol is in use."""
        return self._graphic

    def on_mount(self) -> None:
        if self.protocol != HALF_BLOCKS:
            self._graphic = graphic_widget_class(self.protocol)(classes="graphic")
            self.mount(self._graphic)
        self.show(self._path)

    def show(self, path: Path | None) -> None:
        """Display ``path`` (None clears the picture)."""
        self._path = path
        self._cache_key = None
        if self._graphic is not None:
            self.error = None
            image = None
            if path is not None:
                try:
                    image = _readable_image(path)
                except (OSError, ValueError) as error:
                    self.error = f"preview unreadable: {error}"
            self._graphic.image = image
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
        width = self.size.width
        if self._graphic is None:
            self._ensure_strips()
        if self.error and y == 0:
            return Strip([Segment(self.error[:width])]).adjust_cell_length(width, self.rich_style)
        if self._graphic is not None or y >= len(self._strips):
            return Strip.blank(width, self.rich_style)
        return self._strips[y].apply_style(self.rich_style).adjust_cell_length(width, self.rich_style)
