"""The TUI's list of downloads: each one runs ``sdhub.library.get`` in a worker thread.

The list is remembered in the home's catalog folder, so a download that was running when the app
stopped starts again next time, and the downloader resumes it from its ``.part`` file.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdhub.atomic import atomic_output
from sdhub.config import Home
from sdhub.errors import Interrupted
from sdhub.tui.backend import error_message, feature
from sdhub.tui.widgets.progress import TaskProgress, TuiProgress

if TYPE_CHECKING:
    from sdhub.tui.app import SdhubApp

STATE_FILE = "tui-downloads.json"
#: States that mean "not finished": such a download starts again when the app starts.
ACTIVE = ("queued", "running", "interrupted")


@dataclass
class DownloadJob:
    """One download as the Downloads panel shows it."""

    id: str
    ref: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"  # queued, running, done, failed, cancelled, interrupted
    step: str = ""
    completed: float = 0.0
    total: float | None = None
    speed: float | None = None
    error: str | None = None
    path: str | None = None
    warnings: list[str] = field(default_factory=list)  # what the library said besides "done"
    progress: TuiProgress | None = field(default=None, repr=False, compare=False)

    @property
    def eta(self) -> float | None:
        if self.total is None or not self.speed or self.status != "running":
            return None
        return max(0.0, (self.total - self.completed) / self.speed)

    def to_state(self) -> dict[str, Any]:
        """What is remembered across restarts (everything but the live progress adapter)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "progress"}


class DownloadJobs:
    """Starts, cancels and retries downloads, and keeps the list across restarts."""

    def __init__(self, app: "SdhubApp", home: Home) -> None:
        self.app = app
        self.home = home
        self.jobs: dict[str, DownloadJob] = {}
        self._ids = itertools.count(1)
        self._closing = False
        self._save_lock = threading.Lock()

    @property
    def state_path(self) -> Path:
        return self.home.catalog_dir / STATE_FILE

    def add(self, ref: str, *, label: str | None = None, **options: Any) -> DownloadJob:
        """Queue ``ref`` (anything ``sdhub get`` accepts) and start downloading it."""
        job = DownloadJob(id=f"job-{next(self._ids)}", ref=ref, label=label or ref, options=options)
        self.jobs[job.id] = job
        self.start(job)
        return job

    def start(self, job: DownloadJob) -> None:
        job.status, job.error, job.step = "running", None, "starting"
        job.speed = None
        job.progress = TuiProgress(self.app, job.id)
        self._changed(job)
        self.app.run_worker(partial(self._download, job), thread=True, group="downloads",
                            name=f"download {job.ref}", exit_on_error=False)

    def _download(self, job: DownloadJob) -> None:
        # Runs in a worker thread. The outcome is recorded (and saved) here, so it is kept even
        # when the app has already closed; the app is told only while it still runs.
        result, error = None, None
        try:
            get = feature("get")  # imported here, off the UI thread
            result = get(job.ref, self.home, progress=job.progress, **job.options)
            status = "done"
        except Interrupted:
            status = "interrupted" if self._closing else "cancelled"
        except Exception as failure:  # SdhubError, or a library bug: it must not take the app down
            status, error = "failed", error_message(failure)
        if result is not None:
            job.path = str(result.path)
            job.label = result.path.name
            job.warnings = list(result.warnings)
            if job.total is not None:
                job.completed = job.total
        job.status, job.error, job.speed, job.step = status, error, None, status
        self._save()
        try:
            self.app.call_from_thread(self._announce, job)
        except RuntimeError:
            pass  # the app has closed; the remembered list says what happened

    def _announce(self, job: DownloadJob) -> None:
        self._changed(job, persist=False)
        if job.status == "done":
            self.app.notify(f"{job.label} is in the library", title="Download finished")
            for warning in job.warnings:
                self.app.notify(warning, title=job.label, severity="warning", timeout=15)
            self.app.catalog_changed()
        elif job.status == "failed":
            self.app.notify(job.error or "download failed", title=f"Download failed: {job.label}",
                            severity="error", timeout=10)

    def cancel(self, job_id: str) -> None:
        """Stop a running download (its ``.part`` stays, so retry resumes it)."""
        job = self.jobs.get(job_id)
        if job and job.status == "running" and job.progress is not None:
            job.progress.cancel()
            job.step = "cancelling"
            self._changed(job, persist=False)

    def retry(self, job_id: str) -> None:
        """Start a failed, cancelled or interrupted download again (it resumes from its .part)."""
        job = self.jobs.get(job_id)
        if job and job.status in ("failed", "cancelled", "interrupted"):
            self.start(job)

    def interrupt_all(self) -> None:
        """The app is closing: stop every running download so that it resumes next time."""
        self._closing = True
        for job in self.jobs.values():
            if job.status == "running" and job.progress is not None:
                job.progress.cancel()

    def on_progress(self, message: TaskProgress) -> bool:
        """Apply a progress report of one of our jobs; False when it is not a download's."""
        job = self.jobs.get(message.job)
        if job is None:
            return False
        if job.status == "running":
            job.step = message.description
            if message.unit == "bytes" or job.total is None:
                job.completed, job.total, job.speed = message.completed, message.total, message.speed
            self._changed(job, persist=False)
        return True

    def _changed(self, job: DownloadJob, persist: bool = True) -> None:
        if persist:
            self._save()
        self.app.downloads_changed(job.id)

    # -- remembering the list --------------------------------------------------------------------

    def _save(self) -> None:
        if not self.home.catalog_dir.is_dir():
            return
        with self._save_lock:
            state = [job.to_state() for job in list(self.jobs.values())]
            try:
                with atomic_output(self.state_path) as handle:
                    handle.write(json.dumps(state, indent=1).encode("utf-8"))
            except OSError:
                # Remembering the list is a convenience; a read-only catalog folder must not stop downloads.
                pass

    def resume_interrupted(self) -> list[DownloadJob]:
        """Load the remembered list and start again every download that had not finished."""
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        resumed = []
        for entry in state if isinstance(state, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("ref"), str):
                continue
            total = entry.get("total")
            job = DownloadJob(id=f"job-{next(self._ids)}", ref=entry["ref"],
                              label=str(entry.get("label") or entry["ref"]),
                              options=dict(entry.get("options") or {}),
                              status=str(entry.get("status", "failed")), error=entry.get("error"),
                              path=entry.get("path"), completed=float(entry.get("completed") or 0),
                              total=float(total) if isinstance(total, (int, float)) else None)
            self.jobs[job.id] = job
            if job.status in ACTIVE:
                resumed.append(job)
        for job in resumed:
            self.start(job)
        if resumed:
            self.app.notify(f"resuming {len(resumed)} interrupted download(s)", title="Downloads")
        return resumed
