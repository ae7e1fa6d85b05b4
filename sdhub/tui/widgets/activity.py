"""A one-line bar that shows the long work running from a screen (prune, hash, scan, tests)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from sdhub.tui.jobs import RunningJob, RunningJobs
from sdhub.tui.widgets.progress import TaskProgress, TuiProgress


class ActivityBar(Horizontal):
    """Hidden when idle; otherwise the current task's description and a progress bar.

    Every job started here is also registered with the app's ``RunningJobs`` (when it has one),
    so that quitting knows what is still running.
    """

    DEFAULT_CSS = """
    ActivityBar { height: 1; display: none; padding: 0 1; background: $boost; }
    ActivityBar.-busy { display: block; }
    ActivityBar #activity-label { width: 1fr; height: 1; }
    ActivityBar ProgressBar { width: auto; height: 1; margin: 0 0 0 1; }
    ActivityBar ProgressBar Bar { width: 24; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._active_jobs: dict[str, list[RunningJob | None]] = {}

    def compose(self) -> ComposeResult:
        yield Label("", id="activity-label", markup=False)
        yield ProgressBar(total=None, show_eta=True, id="activity-bar")

    def _registry(self) -> RunningJobs | None:
        registry = getattr(self.app, "jobs", None)
        return registry if isinstance(registry, RunningJobs) else None

    def progress_for(self, job: str) -> TuiProgress:
        """A progress adapter whose reports this bar shows."""
        progress = TuiProgress(self, job)
        registry = self._registry()
        entry = registry.add(job, progress) if registry is not None else None
        self._active_jobs.setdefault(job, []).append(entry)
        self.add_class("-busy")
        self.query_one("#activity-label", Label).update(job)
        return progress

    def done(self, job: str) -> None:
        """The work of ``job`` has ended (whatever the outcome)."""
        entries = self._active_jobs.get(job, [])
        entry = entries.pop(0) if entries else None
        if not entries:
            self._active_jobs.pop(job, None)
        registry = self._registry()
        if entry is not None and registry is not None:
            registry.remove(entry)
        if not self._active_jobs:
            self.remove_class("-busy")

    def on_task_progress(self, message: TaskProgress) -> None:
        message.stop()
        if message.job not in self._active_jobs:
            return
        self.query_one("#activity-label", Label).update(f"{message.job}: {message.description}")
        bar = self.query_one(ProgressBar)
        bar.update(total=message.total, progress=message.completed)
