"""The CLI's renderer of the progress protocol: rich progress bars on stderr."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.markup import escape
from rich.text import Text

from sdhub.cli.render import stderr
from sdhub.progress import Cancellable, Cancellation
from sdhub.text import printable


class _AmountColumn(ProgressColumn):
    """Sizes and speed for byte tasks, ``n/total unit`` and rate for the others."""

    def __init__(self) -> None:
        super().__init__()
        self._download = DownloadColumn()
        self._speed = TransferSpeedColumn()
        self._count = MofNCompleteColumn()

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        if unit == "bytes":
            return Text.assemble(self._download.render(task), " ", self._speed.render(task))
        count = self._count.render(task)
        rate = f" {task.speed:.1f} {unit}/s" if task.speed and unit else ""
        return Text.assemble(count, f" {unit}" if unit else "", rate)


class RichTask:
    def __init__(self, owner: "RichProgress", task_id: TaskID) -> None:
        self._owner = owner
        self._bars = owner._bars
        self._id = task_id
        self._finished = False

    def advance(self, amount: float = 1) -> None:
        self._owner.check()
        self._bars.advance(self._id, amount)

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        self._owner.check()
        self._bars.update(self._id, completed=completed, total=total, description=description)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._bars.remove_task(self._id)

    def __enter__(self) -> "RichTask":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


class RichProgress(Cancellable):
    """Progress bars with rate and ETA on stderr; silent when stderr is not a terminal.

    Ctrl-C and SIGTERM cancel it through the process-wide cancellation (see ``sdhub.cli.signals``).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.cancellation = Cancellation()
        self._bars = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            _AmountColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
            disable=not (enabled and stderr.is_terminal),
        )

    def __enter__(self) -> "RichProgress":
        self._bars.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._bars.stop()

    def task(self, description: str, total: float | None = None, unit: str = "") -> RichTask:
        return RichTask(self, self._bars.add_task(description, total=total, unit=unit))

    def message(self, text: str) -> None:
        # Core code sends plain text, often naming files: never read as rich markup, controls escaped.
        self._bars.console.print(escape(printable(text)), highlight=False)
