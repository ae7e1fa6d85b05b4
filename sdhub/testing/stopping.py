"""A front-end that cancels work at a chosen progress report: "stopped mid-way" without big files or timing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sdhub.progress import RecordedTask, RecordingProgress


@dataclass
class _WatchedTask(RecordedTask):
    watcher: "CancelWhen | None" = field(default=None, repr=False, compare=False)

    def advance(self, amount: float = 1) -> None:
        super().advance(amount)
        self.watcher.watch(self)

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        super().update(completed=completed, total=total, description=description)
        self.watcher.watch(self)


class CancelWhen(RecordingProgress):
    """Records like ``RecordingProgress`` and calls ``cancel()`` after the first report for which
    ``when(task)`` is true, as a user pressing Stop at that moment would; the work's next report or
    check raises ``Interrupted``. ``cancelled_at`` is (description, completed) of that report."""

    def __init__(self, when: Callable[[RecordedTask], bool]) -> None:
        super().__init__()
        self.when = when
        self.cancelled_at: tuple[str, float] | None = None

    def task(self, description: str, total: float | None = None, unit: str = "") -> RecordedTask:
        recorded = _WatchedTask(description, total, unit, owner=self, watcher=self)
        self.tasks.append(recorded)
        return recorded

    def watch(self, task: RecordedTask) -> None:
        if self.cancelled_at is None and self.when(task):
            self.cancelled_at = (task.description, task.completed)
            self.cancel("cancelled")
