"""The progress protocol: core code reports, front-ends render.

Core functions take an optional ``progress: Progress`` argument and call
``progress.task(description, total)`` to get a task they ``advance`` and ``finish``; they never
print. The CLI passes a rich-backed implementation, the TUI its own, tests a recording one, and
``NULL_PROGRESS`` ignores everything. Totals and amounts are plain numbers (bytes, files, steps),
with ``unit`` saying which, so a renderer can show rates and ETAs.

Cancellation travels the same way: every progress object carries a ``Cancellation`` that a
front-end sets (the TUI's quit key, a library caller's own thread), and the process has one more,
``PROCESS_CANCELLATION``, that the CLI's Ctrl-C and SIGTERM handlers set. A task's ``advance`` and
``update`` raise ``Interrupted`` once either is set, and core code calls ``check_cancelled(progress)``
between units of work that report nothing, so long work stops within a fraction of a second at a
point where it can clean up.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from sdhub.errors import Interrupted


class Cancellation(threading.Event):
    """A request to stop long work: set from any thread (or a signal handler), checked by the work."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = "interrupted"

    def cancel(self, reason: str = "interrupted") -> None:
        """Ask the work to stop at its next check; the first reason given is kept."""
        if not self.is_set():
            self.reason = reason
        self.set()

    def check(self) -> None:
        """Raise ``Interrupted`` (with the reason) if cancellation was asked for."""
        if self.is_set():
            raise Interrupted(self.reason)


#: Set by the CLI's Ctrl-C and SIGTERM handlers: every check in the process honours it.
PROCESS_CANCELLATION = Cancellation()


def check_cancelled(progress: Any = None) -> None:
    """Raise ``Interrupted`` if the process was told to stop or ``progress`` was cancelled.

    Core code calls this between units of work that do not report (a file opened, a plan made,
    right before an output is published). A progress object without ``check`` (one written
    before cancellation was part of the protocol) is subject to the process-wide check alone.
    """
    PROCESS_CANCELLATION.check()
    check = getattr(progress, "check", None)
    if check is not None:
        check()


@contextlib.contextmanager
def reporting_stop(left: Callable[[], str]) -> Iterator[None]:
    """Turn a stop inside the block (Ctrl-C's KeyboardInterrupt, a cancel) into one ``Interrupted``
    that also says what the work leaves behind: ``left()``, e.g. "no output written (x.safetensors)".

    What an inner operation said it left is kept before the outer one's words.
    """
    try:
        yield
    except (KeyboardInterrupt, Interrupted) as stop:
        raise interrupted(stop, left()) from None


def interrupted(stop: BaseException, left: str) -> Interrupted:
    """The ``Interrupted`` for ``stop`` (a KeyboardInterrupt or an Interrupted) that adds what the work left."""
    if isinstance(stop, Interrupted):
        return Interrupted(stop.reason, left="; ".join(filter(None, (stop.left, left))))
    return Interrupted(PROCESS_CANCELLATION.reason if PROCESS_CANCELLATION.is_set() else "interrupted", left=left)


class Cancellable:
    """Mixin for progress implementations: ``cancel()`` from anywhere, ``check()`` in the work."""

    cancellation: Cancellation

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the work reporting here to stop at its next progress report or check."""
        self.cancellation.cancel(reason)

    @property
    def cancelled(self) -> bool:
        """Whether this work or the whole process was asked to stop."""
        return self.cancellation.is_set() or PROCESS_CANCELLATION.is_set()

    def check(self) -> None:
        """Raise ``Interrupted`` if this work or the whole process was asked to stop."""
        PROCESS_CANCELLATION.check()
        self.cancellation.check()


class ProgressTask(Protocol):
    """One unit of long work with a known or unknown total; ``advance`` and ``update`` raise
    ``Interrupted`` once the work was cancelled."""

    def advance(self, amount: float = 1) -> None: ...

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None: ...

    def finish(self) -> None: ...


class Progress(Protocol):
    """Something that can start tasks, show messages about long work, and say when to stop."""

    def task(self, description: str, total: float | None = None, unit: str = "") -> ProgressTask: ...

    def message(self, text: str) -> None: ...

    def check(self) -> None:
        """Raise ``Interrupted`` if the work was asked to stop (see ``Cancellable``)."""


class _NullTask:
    def __init__(self, owner: "NullProgress") -> None:
        self._owner = owner

    def advance(self, amount: float = 1) -> None:
        self._owner.check()

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        self._owner.check()

    def finish(self) -> None:
        pass

    def __enter__(self) -> "_NullTask":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


class NullProgress(Cancellable):
    """Progress that shows nothing: the default for library calls (a fresh one can be cancelled)."""

    def __init__(self) -> None:
        self.cancellation = Cancellation()

    def task(self, description: str, total: float | None = None, unit: str = "") -> _NullTask:
        return _NullTask(self)

    def message(self, text: str) -> None:
        pass


NULL_PROGRESS = NullProgress()


class QuietProgress(NullProgress):
    """Shows nothing but stops when ``follow`` is cancelled: for work beside a reported task
    (the source's SHA-256 hashed while its conversion is written)."""

    def __init__(self, follow: Any) -> None:
        super().__init__()
        self._follow = follow

    def check(self) -> None:
        super().check()
        check_cancelled(self._follow)


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
    owner: Cancellable | None = field(default=None, repr=False, compare=False)

    def _check(self) -> None:
        if self.owner is not None:
            self.owner.check()
        else:
            PROCESS_CANCELLATION.check()

    def advance(self, amount: float = 1) -> None:
        self._check()
        with self._lock:
            self.completed += amount
            self.updates += 1

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        self._check()
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
class RecordingProgress(Cancellable):
    """Progress that remembers every task and message (thread-safe); ``cancel()`` stops the work."""

    tasks: list[RecordedTask] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    cancellation: Cancellation = field(default_factory=Cancellation, repr=False, compare=False)

    def task(self, description: str, total: float | None = None, unit: str = "") -> RecordedTask:
        recorded = RecordedTask(description, total, unit, owner=self)
        self.tasks.append(recorded)
        return recorded

    def message(self, text: str) -> None:
        self.messages.append(text)
