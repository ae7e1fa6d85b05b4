"""A one-line bar that shows the long work running from a screen (prune, hash, scan, tests)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from sdhub.tui.widgets.progress import TaskProgress, TuiProgress


class ActivityBar(Horizontal):
    """Hidden when idle; otherwise the current task's description and a progress bar."""

    DEFAULT_CSS = """
    ActivityBar { height: 1; display: none; padding: 0 1; background: $boost; }
    ActivityBar.-busy { display: block; }
    ActivityBar Label { width: 1fr; }
    ActivityBar ProgressBar { width: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._active_jobs: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Label("", id="activity-label", markup=False)
        yield ProgressBar(total=None, show_eta=True, id="activity-bar")

    def progress_for(self, job: str) -> TuiProgress:
        """A progress adapter whose reports this bar shows."""
        self._active_jobs[job] = self._active_jobs.get(job, 0) + 1
        self.add_class("-busy")
        self.query_one(Label).update(job)
        return TuiProgress(self, job)

    def done(self, job: str) -> None:
        """The work of ``job`` has ended (whatever the outcome)."""
        count = self._active_jobs.get(job, 0) - 1
        if count > 0:
            self._active_jobs[job] = count
        else:
            self._active_jobs.pop(job, None)
        if not self._active_jobs:
            self.remove_class("-busy")

    def on_task_progress(self, message: TaskProgress) -> None:
        message.stop()
        if message.job not in self._active_jobs:
            return
        self.query_one(Label).update(f"{message.job}: {message.description}")
        bar = self.query_one(ProgressBar)
        bar.update(total=message.total, progress=message.completed)
