"""The Downloads panel: one row per download with a progress bar, speed, ETA and state."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from sdhub.tui import keys
from sdhub.tui.download_jobs import DownloadJob
from sdhub.units import human_size

BAR_WIDTH = 16
COLUMNS = (("name", "Name"), ("state", "State"), ("progress", "Progress"), ("size", "Size"),
           ("speed", "Speed"), ("eta", "ETA"))


def progress_bar(completed: float, total: float | None, width: int = BAR_WIDTH) -> Text:
    """A text bar with the percentage (or a byte count when the total is unknown)."""
    if not total:
        return Text(human_size(completed) if completed else "", style="dim")
    fraction = max(0.0, min(1.0, completed / total))
    filled = int(round(fraction * width))
    return Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "dim"), f" {fraction * 100:3.0f}%")


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


STATE_STYLES = {"done": "green", "failed": "red", "cancelled": "yellow", "interrupted": "yellow", "running": "",
                "queued": "dim"}


def job_cells(job: DownloadJob) -> tuple[object, ...]:
    state = job.step if job.status == "running" and job.step else job.status
    size = human_size(job.total) if job.total else (human_size(job.completed) if job.completed else "")
    speed = f"{human_size(job.speed)}/s" if job.speed and job.status == "running" else ""
    return (job.label, Text(state, style=STATE_STYLES.get(job.status, "")),
            progress_bar(job.completed, job.total), size, speed, format_eta(job.eta))


def job_summary(job: DownloadJob) -> Text:
    """The line under the table for the highlighted download: its error, or where it landed."""
    text = Text(f"{job.ref}", style="bold")
    if job.status == "failed" and job.error:
        text.append(f"\n{job.error}", style="red")
    elif job.path:
        text.append(f"\n{job.path}")
    return text


class DownloadsPanel(Vertical):
    """Shows ``app.downloads``; call ``refresh_jobs`` after a ``DownloadsChanged`` message."""

    BINDINGS = keys.bindings("downloads")

    DEFAULT_CSS = """
    DownloadsPanel { height: 1fr; }
    DownloadsPanel DataTable { height: 1fr; }
    DownloadsPanel #download-detail { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield DataTable(id="download-table", cursor_type="row", zebra_stripes=False)
        yield Static("", id="download-detail")

    @property
    def table(self) -> DataTable:
        return self.query_one("#download-table", DataTable)

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.table.add_column(label, key=key)
        self.refresh_jobs()

    def focus(self, scroll_visible: bool = True) -> "DownloadsPanel":
        self.table.focus(scroll_visible)
        return self

    def refresh_jobs(self, job_id: str | None = None) -> None:
        """Redraw one job's row (adding it if new), or every row when ``job_id`` is None."""
        jobs = self.app.downloads.jobs
        table = self.table
        targets = [jobs[job_id]] if job_id in jobs else list(jobs.values())
        for job in targets:
            cells = job_cells(job)
            if job.id in table.rows:
                for (key, _), value in zip(COLUMNS, cells):
                    table.update_cell(job.id, key, value, update_width=True)
            else:
                table.add_row(*cells, key=job.id)
        self._show_highlighted()

    def on_data_table_row_highlighted(self) -> None:
        self._show_highlighted()

    def _show_highlighted(self) -> None:
        job_id = self.highlighted_job
        job = self.app.downloads.jobs.get(job_id) if job_id else None
        self.query_one("#download-detail", Static).update(job_summary(job) if job else "")

    @property
    def highlighted_job(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value
    def action_cancel_download(self) -> None:
        job = self.highlighted_job
        if job is None:
            self.notify("No download is highlighted.", severity="warning")
        else:
            self.app.downloads.cancel(job)

    def action_retry_download(self) -> None:
        job = self.highlighted_job
        if job is None:
            self.notify("No download is highlighted.", severity="warning")
        else:
            self.app.downloads.retry(job)
