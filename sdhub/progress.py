"""The progress protocol: core code reports, front-ends render.

Core functions take an optional ``progress: Progress`` argument and call
``progress.task(description, total)`` to get a task they ``advance`` and ``finish``; they never
print. The CLI passes a rich-backed implementation, the TUI its own, tests a recording one, and
``NULL_PROGRESS`` ignores everything. Totals and amounts are plain numbers (bytes, files, steps),
with ``unit`` saying which, so a renderer can show rates and ETAs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol


class ProgressTask(Protocol):
    """One unit of long work with a known or unknown total."""

    def advance(self, amount: float = 1) -> None: ...

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None: ...

    def finish(self) -> None: ...


class Progress(Protocol):
    """Something that can start tasks and show messages about long work."""

    def task(self, description: str, total: float | None = None, unit: str = "") -> ProgressTask: ...

    def message(self, text: str) -> None: ...


class _NullTask:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        pass

    def finish(self) -> None:
        pass

    def __enter__(self) -> "_NullTask":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


class NullProgress:
    """Progress that goes nowhere: the default for library calls."""

    def task(self, description: str, total: float | None = None, unit: str = "") -> _NullTask:
        return _NullTask()

    def message(self, text: str) -> None:
        pass


NULL_PROGRESS = NullProgress()


@dataclass
class RecordedTask:
    """A task as seen by ``RecordingProgress``: what was reported, for tests and the TUI."""

    description: str
    total: float | None
    unit: str
    completed: float = 0.0
    finished: bool = False
    updates: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def advance(self, amount: float = 1) -> None:
        with self._lock:
            self.completed += amount
            self.updates += 1

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        with self._lock:
            if completed is not None:
                self.completed = completed
            if total is not None:
                self.total = total
            if description is not None:
                self.description = description
            self.updates += 1

    def finish(self) -> None:
        self.finished = True

    def __enter__(self) -> "RecordedTask":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


@dataclass
class RecordingProgress:
    """Progress that remembers every task and message (thread-safe)."""

    tasks: list[RecordedTask] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def task(self, description: str, total: float | None = None, unit: str = "") -> RecordedTask:
        recorded = RecordedTask(description, total, unit)
        self.tasks.append(recorded)
        return recorded

    def message(self, text: str) -> None:
        self.messages.append(text)
