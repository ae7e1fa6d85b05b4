"""The downloads screen: every download of this session (and interrupted ones resumed at start)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from sdhub.tui.messages import DownloadsChanged
from sdhub.tui.widgets.downloads_panel import DownloadsPanel


class DownloadsScreen(Screen):
    """Progress, speed and ETA of each download; cancel and retry."""

    ACTION_SCOPES = ("downloads",)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Downloads  ·  x cancels, r retries (a retry resumes from the partial file)",
                     classes="screen-title")
        yield DownloadsPanel(id="downloads")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DownloadsPanel).focus()

    def on_screen_resume(self) -> None:
        self.query_one(DownloadsPanel).focus()

    def on_downloads_changed(self, message: DownloadsChanged) -> None:
        for panel in self.query(DownloadsPanel):
            panel.refresh_jobs(message.job)

    def action_cancel_download(self) -> None:
        self.query_one(DownloadsPanel).action_cancel_download()

    def action_retry_download(self) -> None:
        self.query_one(DownloadsPanel).action_retry_download()
