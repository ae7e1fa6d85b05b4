"""The progress protocol's cancellation: any front-end (or script) can stop long work, and says why."""

from __future__ import annotations

import threading

import pytest

from sdhub.errors import Interrupted
from sdhub.progress import (
    PROCESS_CANCELLATION,
    NullProgress,
    RecordingProgress,
    check_cancelled,
    reporting_stop,
)


@pytest.fixture
def process_stop():
    """The process-wide cancellation, cleared again after the test (a signal handler sets it in the CLI)."""
    yield PROCESS_CANCELLATION
    PROCESS_CANCELLATION.clear()


def test_a_cancelled_progress_stops_the_next_report_and_check() -> None:
    progress = RecordingProgress()
    task = progress.task("Writing", total=10, unit="bytes")
    task.advance(4)
    threading.Thread(target=progress.cancel, args=("convert: cancelled",)).start()  # from another thread
    progress.cancellation.wait(5)
    with pytest.raises(Interrupted, match="^convert: cancelled$"):
        task.advance(1)
    with pytest.raises(Interrupted):
        task.update(completed=9)
    with pytest.raises(Interrupted):
        check_cancelled(progress)
    assert task.completed == 4  # nothing counted after the stop
    assert progress.cancelled


def test_a_fresh_null_progress_can_be_cancelled_without_affecting_others() -> None:
    quiet, other = NullProgress(), NullProgress()
    quiet.cancel()
    with pytest.raises(Interrupted):
        quiet.task("Hashing").advance(1)
    other.task("Hashing").advance(1)  # goes on


def test_a_process_stop_reaches_every_progress_even_old_ones(process_stop) -> None:
    class OldStyle:  # written before cancellation was part of the protocol: task() and message() only
        def task(self, description, total=None, unit=""):
            return None

        def message(self, text):
            pass

    process_stop.cancel("terminated")
    for progress in (RecordingProgress(), NullProgress(), OldStyle(), None):
        with pytest.raises(Interrupted, match="^terminated$"):
            check_cancelled(progress)
    with pytest.raises(Interrupted):
        RecordingProgress().task("Reading").advance(1)


def test_a_stop_says_what_each_layer_of_the_work_left(process_stop) -> None:
    with pytest.raises(Interrupted) as stopped:
        with reporting_stop(lambda: "2 of 3 files converted before it"):
            with reporting_stop(lambda: "no output written (c.safetensors)"):
                raise KeyboardInterrupt
    assert str(stopped.value) == "interrupted; no output written (c.safetensors); 2 of 3 files converted before it"
    assert stopped.value.exit_code == 130
    process_stop.cancel("terminated")
    with pytest.raises(Interrupted, match="^terminated; nothing written$"):
        with reporting_stop(lambda: "nothing written"):
            raise KeyboardInterrupt  # the signal handler's, after it recorded SIGTERM
