"""The TUI's renderer of the progress protocol: core code reports from a worker thread, the
adapter posts messages that the screens turn into progress bars, speeds and ETAs."""

from __future__ import annotations

import itertools
import threading
import time

from textual.message import Message
from textual.message_pump import MessagePump

from sdhub.progress import Cancellable, Cancellation

#: Minimum seconds between two progress messages of one task: enough for a smooth bar
#: without flooding the event loop with one message per downloaded chunk.
POST_INTERVAL = 0.1
_task_ids = itertools.count(1)


class TaskProgress(Message):
    """A task of a job started, advanced or finished (``speed`` in units per second)."""

    def __init__(self, job: str, task: int, description: str, completed: float, total: float | None,
                 unit: str, speed: float | None, finished: bool) -> None:
        super().__init__()
        self.job = job
        self.task = task
        self.description = description
        self.completed = completed
        self.total = total
        self.unit = unit
        self.speed = speed
        self.finished = finished

    @property
    def eta(self) -> float | None:
        """Seconds left at the current speed, when both are known."""
        if self.total is None or not self.speed:
            return None
        return max(0.0, (self.total - self.completed) / self.speed)


class ProgressText(Message):
    """A message from core code about a job (shown as a notification or status line)."""

    def __init__(self, job: str, text: str) -> None:
        super().__init__()
        self.job = job
        self.text = text


class TuiTask:
    """One task: counts what core code reports and posts it, at most every ``POST_INTERVAL``."""

    def __init__(self, owner: "TuiProgress", description: str, total: float | None, unit: str) -> None:
        self._owner = owner
        self.id = next(_task_ids)
        self.description = description
        self.total = total
        self.unit = unit
        self.completed = 0.0
        self.finished = False
        self._lock = threading.Lock()
        self._last_post = 0.0
        self._speed: float | None = None
        self._window_start = time.monotonic()
        self._window_completed = 0.0
        self._post(force=True)

    def advance(self, amount: float = 1) -> None:
        self._owner.check_cancelled()
        with self._lock:
            self.completed += amount
        self._post()

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        self._owner.check_cancelled()
        with self._lock:
            changed = (total is not None and total != self.total
                       or description is not None and description != self.description)
            if completed is not None:
                self.completed = completed
            if total is not None:
                self.total = total
            if description is not None:
                self.description = description
        self._post(force=changed)

    def finish(self) -> None:
        self.finished = True
        self._post(force=True)

    def __enter__(self) -> "TuiTask":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def _measure_speed(self, now: float) -> None:
        elapsed = now - self._window_start
        if elapsed >= 0.5:
            rate = (self.completed - self._window_completed) / elapsed
            # A moving average keeps the shown speed (and ETA) from jumping with every chunk.
            self._speed = rate if self._speed is None else 0.6 * self._speed + 0.4 * rate
            self._window_start, self._window_completed = now, self.completed

    def _post(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_post < POST_INTERVAL:
            return
        with self._lock:
            self._measure_speed(now)
            self._last_post = now
            message = TaskProgress(self._owner.job, self.id, self.description, self.completed, self.total,
                                   self.unit, self._speed, self.finished)
        self._owner.target.post_message(message)


class TuiProgress(Cancellable):
    """Implements ``sdhub.progress.Progress`` for one job; cancelling makes the next report raise."""

    def __init__(self, target: MessagePump, job: str) -> None:
        self.target = target
        self.job = job
        self.cancellation = self.cancel_requested = Cancellation()
        self.tasks: list[TuiTask] = []

    def task(self, description: str, total: float | None = None, unit: str = "") -> TuiTask:
        task = TuiTask(self, description, total, unit)
        self.tasks.append(task)
        return task

    def message(self, text: str) -> None:
        self.target.post_message(ProgressText(self.job, text))

    def cancel(self, reason: str = "") -> None:
        """Ask the work to stop at its next progress report or check."""
        self.cancellation.cancel(reason or f"{self.job}: cancelled")

    def check_cancelled(self) -> None:
        # Core code reports progress between chunks, so raising here stops it at a safe point
        # where it cleans up (a download keeps its resumable .part).
        self.check()
