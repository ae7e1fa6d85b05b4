"""The library table says where each asset is (here, remote, both) once the user asks the remotes with ``m``."""

from __future__ import annotations

import pytest
import torch

import sdhub
from sdhub.config import Home
from sdhub.remote import push
from sdhub.remote.settings import add_remote
from sdhub.testing import factory
from sdhub.testing.s3_server import S3Server
from sdhub.tui.app import SdhubApp
from sdhub.tui.screens.library import CELL
from sdhub.tui.widgets.asset_table import AssetTable
from tui_support import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def home_with_two_loras(tmp_home: Home) -> Home:
    folder = tmp_home.folder("lora")
    folder.mkdir(parents=True, exist_ok=True)
    factory.lora(folder / "ink_style.safetensors")
    factory.lora(folder / "pencil_style.safetensors", dtype=torch.float16)
    sdhub.scan(tmp_home)
    return tmp_home


def _where(table: AssetTable) -> dict[str, str]:
    return {row.cells[CELL["name"]]: row.cells[CELL["where"]] for row in table.rows if len(row.cells) > CELL["where"]}


async def test_m_marks_the_asset_pushed_to_the_remote(home_with_two_loras: Home, s3_env: S3Server,
                                                      s3_url: str) -> None:
    home = home_with_two_loras
    add_remote(home, "shared", s3_url, endpoint=s3_env.url)
    push("shared", ["ink_style"], home)

    app = SdhubApp(home)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(AssetTable)
        await wait_until(lambda: table.row_count == 2, pilot)
        # Until the user asks, the table neither asks the remote nor shows a Where column.
        assert "where" not in [c.key for c in table.columns]
        assert _where(table) == {}

        await pilot.press("m")
        await wait_until(lambda: len(_where(table)) == 2, pilot)
        assert _where(table) == {"ink_style": "both", "pencil_style": "here"}
        assert "Where" in table.render_line(0).text


async def test_m_without_a_remote_says_how_to_add_one(home_with_two_loras: Home) -> None:
    app = SdhubApp(home_with_two_loras)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(AssetTable)
        await wait_until(lambda: table.row_count == 2, pilot)
        await pilot.press("m")
        await wait_until(lambda: any("remote add" in n.message for n in app._notifications), pilot)
        assert _where(table) == {}
