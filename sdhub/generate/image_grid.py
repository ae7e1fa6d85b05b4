"""Overlapping tiles of an image and their blending back, as A1111's ``split_grid``/``combine_grid``.

Tiles are spread evenly so the first starts at 0 and the last ends at the image's edge; neighbours
overlap by at least ``overlap`` pixels. When they are put back, each tile's first ``overlap`` columns
(and each row's first ``overlap`` lines) fade in over what is already there with a linear ramp
``255 * i / overlap`` (8-bit, truncated), the rest of the tile is pasted as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdhub.errors import UsageError


@dataclass
class Tile:
    """One tile: its left edge and its image (replaced by the processed tile before combining)."""

    x: int
    image: Any


@dataclass
class TileRow:
    """One row of tiles: its top edge and its tiles, left to right."""

    y: int
    tiles: list[Tile] = field(default_factory=list)


@dataclass
class TileGrid:
    """An image cut into overlapping tiles of ``tile_width`` x ``tile_height``."""

    rows: list[TileRow]
    tile_width: int
    tile_height: int
    image_width: int
    image_height: int
    overlap: int

    @property
    def tiles(self) -> list[Tile]:
        """All tiles, row by row (the order A1111 processes them in)."""
        return [tile for row in self.rows for tile in row.tiles]

    def scaled(self, factor: int) -> "TileGrid":
        """The same grid ``factor`` times larger (tiles keep their images: set them afterwards)."""
        rows = [TileRow(row.y * factor, [Tile(tile.x * factor, tile.image) for tile in row.tiles])
                for row in self.rows]
        return TileGrid(rows, self.tile_width * factor, self.tile_height * factor, self.image_width * factor,
                        self.image_height * factor, self.overlap * factor)


def tile_positions(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along one side of ``length`` pixels (A1111's even spread, clamped to the edge)."""
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1) if count > 1 else 0
    positions = []
    for index in range(count):
        start = int(index * step)
        positions.append(length - tile if start + tile >= length else start)
    return positions


def split_grid(image: Any, tile_width: int, tile_height: int, overlap: int) -> TileGrid:
    """Cut a PIL image into overlapping tiles. An image smaller than a tile gives one tile reaching
    past its top-left corner, the outside black (A1111's crop), and the blend cuts it off again."""
    if overlap < 0 or overlap >= min(tile_width, tile_height):
        raise UsageError(f"the tile overlap must be between 0 and the tile size less one, not {overlap}")
    rows = []
    for y in tile_positions(image.height, tile_height, overlap):
        row = TileRow(y)
        for x in tile_positions(image.width, tile_width, overlap):
            row.tiles.append(Tile(x, image.crop((x, y, x + tile_width, y + tile_height))))
        rows.append(row)
    return TileGrid(rows, tile_width, tile_height, image.width, image.height, overlap)


def _ramp(length: int, across: int, horizontal: bool) -> Any:
    from PIL import Image

    values = (np.arange(length, dtype=np.float32) * 255 / length).astype(np.uint8)
    mask = np.repeat(values[None, :], across, axis=0) if horizontal else np.repeat(values[:, None], across, axis=1)
    return Image.fromarray(mask, "L")


def combine_grid(grid: TileGrid) -> Any:
    """Blend the grid's (processed) tiles back into one RGB image, fading each overlap in."""
    from PIL import Image

    overlap = grid.overlap
    column_mask = _ramp(overlap, grid.tile_height, horizontal=True) if overlap else None
    row_mask = _ramp(overlap, grid.image_width, horizontal=False) if overlap else None
    combined = Image.new("RGB", (grid.image_width, grid.image_height))
    for row in grid.rows:
        height = grid.tile_height
        strip = Image.new("RGB", (grid.image_width, height))
        for tile in row.tiles:
            if tile.x == 0 or not overlap:
                strip.paste(tile.image, (tile.x, 0))
                continue
            strip.paste(tile.image.crop((0, 0, overlap, height)), (tile.x, 0), mask=column_mask)
            strip.paste(tile.image.crop((overlap, 0, grid.tile_width, height)), (tile.x + overlap, 0))
        if row.y == 0 or not overlap:
            combined.paste(strip, (0, row.y))
            continue
        combined.paste(strip.crop((0, 0, grid.image_width, overlap)), (0, row.y), mask=row_mask)
        combined.paste(strip.crop((0, overlap, grid.image_width, height)), (0, row.y + overlap))
    return combined
