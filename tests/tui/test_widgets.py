"""The small widgets on their own: the progress adapter and the picture (half blocks or sixel)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from textual.app import App, ComposeResult
from textual.geometry import Region
from textual_image.widget import SixelImage, TGPImage

from sdhub.errors import Interrupted
from sdhub.tui.widgets.image_view import ImageView, choose_protocol, graphic_widget_class, half_block_rows
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


def test_the_picture_protocol_is_the_one_asked_for_and_half_blocks_need_no_terminal() -> None:
    assert choose_protocol("halfblocks") == "halfblocks"
    assert choose_protocol("sixel") == "sixel" and choose_protocol("kitty") == "kitty"
    assert graphic_widget_class("kitty") is TGPImage and graphic_widget_class("sixel") is SixelImage
    with pytest.raises(ValueError, match="unknown picture protocol"):
        choose_protocol("ascii-art")


def test_sdhub_tui_refuses_an_unknown_picture_protocol_in_one_line(run_cli, tmp_home) -> None:
    result = run_cli("--home", tmp_home.root, "tui", "--images", "ascii-art")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "sdhub: error: unknown picture protocol 'ascii-art'; choose auto, kitty, sixel, halfblocks"]


class PictureApp(App[None]):
    """One picture, drawn with ``image_protocol`` as the sdhub app would."""

    def __init__(self, path: Path | None, protocol: str) -> None:
        super().__init__()
        self.path, self.image_protocol = path, protocol

    def compose(self) -> ComposeResult:
        yield ImageView(self.path)


def picture(path: Path) -> Path:
    image = Image.new("RGB", (64, 96), (200, 30, 40))
    image.save(path)
    return path


@pytest.mark.anyio
async def test_with_sixel_the_picture_is_sent_as_sixel_data(tmp_path: Path) -> None:
    app = PictureApp(picture(tmp_path / "preview.png"), "sixel")
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(ImageView)
        await pilot.pause()
        assert isinstance(view.graphic, SixelImage)
        inner = view.graphic.children[0]
        lines = inner.render_lines(Region(0, 0, inner.size.width, inner.size.height))
        sent = "".join(segment.text for line in lines for segment in line)
        assert "\x1bP" in sent  # a sixel image starts with DCS
        assert 0 < view.graphic.size.height <= view.size.height  # scaled into the view, not cropped


@pytest.mark.anyio
async def test_a_damaged_picture_is_a_line_of_text_in_either_protocol(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for protocol in ("sixel", "halfblocks"):
        app = PictureApp(damaged, protocol)
        async with app.run_test(size=(60, 20)) as pilot:
            view = app.query_one(ImageView)
            await pilot.pause()
            first_line = "".join(segment.text for segment in view.render_line(0))
            assert first_line.startswith("preview unreadable"), protocol
