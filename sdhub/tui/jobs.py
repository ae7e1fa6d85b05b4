"""The long jobs the app has running (convert, prune, tests, scans, the demo), by the progress
adapter each reports to, so that quitting can name them, cancel them and wait until they stop."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sdhub.tui.widgets.progress import TuiProgress


@dataclass(eq=False)
class RunningJob:
    """One job: what the user started (its title) and the progress it reports to."""

    title: str
    progress: TuiProgress


class RunningJobs:
    """Jobs start on the app's thread and end from their worker threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: list[RunningJob] = []

    def add(self, title: str, progress: TuiProgress) -> RunningJob:
        job = RunningJob(title, progress)
        with self._lock:
            self._jobs.append(job)
        return job

    def remove(self, job: RunningJob) -> None:
        """The job's work has returned (whatever the outcome)."""
        with self._lock:
            if job in self._jobs:
                self._jobs.remove(job)

    def running(self) -> list[RunningJob]:
        with self._lock:
            return list(self._jobs)

    def cancel_all(self, reason: str) -> None:
        """Ask every job to stop at its next progress report (``Interrupted`` with ``reason``)."""
        for job in self.running():
            job.progress.cancel(reason)
