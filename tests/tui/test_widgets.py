"""The small widgets on their own: the progress adapter and the half-block picture."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from sdhub.errors import Interrupted
from sdhub.tui.widgets.image_view import half_block_rows
from sdhub.tui.widgets.progress import TaskProgress, TuiProgress


class Inbox:
    """Where the adapter posts (in the app: a widget's message queue)."""

    def __init__(self) -> None:
        self.messages: list[object] = []

    def post_message(self, message: object) -> bool:
        self.messages.append(message)
        return True


def test_progress_reports_are_throttled_but_the_start_and_the_end_always_arrive() -> None:
    inbox = Inbox()
    task = TuiProgress(inbox, "download").task("Downloading x", total=1000, unit="bytes")
    for _ in range(1000):
        task.advance(1)
    task.finish()
    reports = [m for m in inbox.messages if isinstance(m, TaskProgress)]
    assert 2 <= len(reports) < 50  # not one message per chunk
    assert reports[0].completed == 0 and not reports[0].finished
    assert reports[-1].completed == 1000 and reports[-1].finished and reports[-1].job == "download"


def test_cancel_stops_the_work_at_its_next_report() -> None:
    progress = TuiProgress(Inbox(), "download")
    task = progress.task("Downloading x", total=10, unit="bytes")
    task.advance(1)
    progress.cancel()
    with pytest.raises(Interrupted):
        task.advance(1)
    with pytest.raises(Interrupted):
        task.update(completed=5)


def test_half_blocks_pair_the_upper_and_lower_pixel_of_each_cell(tmp_path: Path) -> None:
    picture = Image.new("RGB", (2, 2))
    picture.putpixel((0, 0), (255, 0, 0))
    picture.putpixel((0, 1), (0, 0, 255))
    picture.putpixel((1, 0), (0, 255, 0))
    picture.putpixel((1, 1), (255, 255, 255))
    picture.save(tmp_path / "p.png")
    rows = half_block_rows(tmp_path / "p.png", width=2, height=1)
    assert rows == [[((255, 0, 0), (0, 0, 255)), ((0, 255, 0), (255, 255, 255))]]
