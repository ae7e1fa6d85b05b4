"""The one downloader: resumable, verified, atomic, for Civitai files and plain URLs.

Bytes go to a hidden ``.sdhub-<key>.part`` file in the target folder (``key`` derives from the
URL, so running the same command again finds it and resumes with ``Range``). A SHA-256 of the
bytes is computed while they arrive; the file is renamed into place only when it is complete
and matches the published hash. A body that is an HTML or JSON page, or shorter than the server
announced, never becomes a model file. A lock per download lets several run at once.

Each connection reads into a few reused buffers; a buffer is written (whole blocks straight to the
disk, see ``part_file``) and then hashed from memory by the hashing thread while the next one fills.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import queue
import re
import threading
import time
from collections import deque
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import requests

from sdhub.errors import BadInputError, Interrupted, NetworkError, SdhubError, UsageError, VerificationError
from sdhub.progress import NULL_PROGRESS, Progress, interrupted
from sdhub.sources.filenames import SAFE_EXTENSIONS, content_disposition_filename, sanitize_filename, url_filename
from sdhub.sources.http import BODY_READ_ERRORS, TRANSIENT_ERRORS, HttpClient, ResponseBody, generic_error, redact
from sdhub.sources.part_file import DIRECT_ALIGNMENT, PartFile, new_buffer
from sdhub.sources.placing import PART_PREFIX, exclusive_lock, place_file, sha256_file
from sdhub.sources.prefix_hash import PrefixHasher

#: Each connection receives into a few buffers of this size, reused once written and hashed.
CHUNK_SIZE = 4 << 20
BUFFERS_PER_CONNECTION = 6
#: A buffer that is not full yet is written anyway after this long, so a slow server shows progress.
FLUSH_SECONDS = 0.25
#: Parallel downloads fetch blocks of at least this size, one range request each.
MIN_SEGMENT_BYTES = 16 << 20
MAX_BLOCKS = 1024
#: A connection this fast gets no company: more connections only help slower (throttled) ones.
FAST_CONNECTION_BYTES_PER_SECOND = 200e6
STATE_SAVE_SECONDS = 0.5
REFUSED_CONTENT_TYPES = ("text/html", "application/json", "application/xhtml", "text/xml", "application/xml")
_HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body|<\?xml)", re.IGNORECASE)
_JSON_ERROR_START = re.compile(rb'^\s*\{\s*"(error|message|code|detail)"\s*:')

ErrorDescriber = Callable[[requests.Response], SdhubError]


class _Dropped(Exception):
    """The connection ended before the bytes we were promised."""


class _Buffers:
    """One connection's receive buffers, each reused once written and hashed: receiving allocates nothing."""

    def __init__(self, count: int = BUFFERS_PER_CONNECTION, size: int = CHUNK_SIZE) -> None:
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._left_to_make = count
        self._size = size

    def take(self, stop_waiting: Callable[[], bool]) -> mmap.mmap | None:
        """A free buffer, or None once ``stop_waiting()`` says so while all are busy."""
        if self._left_to_make and self._free.empty():
            self._left_to_make -= 1
            return new_buffer(self._size)
        while True:
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                if stop_waiting():
                    return None

    def give_back(self, buffer: mmap.mmap) -> None:
        self._free.put(buffer)


@dataclass
class Segment:
    """A byte range of the file fetched by one connection: [start, end), ``done`` bytes so far."""

    start: int
    end: int | None
    done: int = 0

    @property
    def position(self) -> int:
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.end is not None and self.position >= self.end


@dataclass
class DownloadResult:
    """Where a download landed and what it is; ``reused`` when identical bytes were already there."""

    path: Path
    name: str
    size: int
    sha256: str
    url: str
    reused: bool = False
    resumed_from: int = 0
    connections: int = 1
    seconds: float = 0.0

    @property
    def bytes_per_second(self) -> float:
        fetched = self.size - self.resumed_from
        return fetched / self.seconds if self.seconds > 0 and not self.reused else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path), "name": self.name, "size": self.size, "sha256": self.sha256,
            "url": self.url, "reused": self.reused, "resumed_from": self.resumed_from,
            "connections": self.connections, "seconds": round(self.seconds, 3),
            "bytes_per_second": round(self.bytes_per_second),
        }


def part_paths(folder: Path, url: str) -> tuple[Path, Path, Path]:
    """The ``.part`` file, its resume state and its lock for a download of ``url`` into ``folder``."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:20]
    base = folder / f"{PART_PREFIX}{key}"
    return base.with_name(base.name + ".part"), base.with_name(base.name + ".part.json"), \
        base.with_name(base.name + ".lock")


def looks_like_error_page(first_bytes: bytes) -> bool:
    """True for the start of an HTML page or a JSON error object: not a model file."""
    return bool(_HTML_START.match(first_bytes) or _JSON_ERROR_START.match(first_bytes))


def default_describer(what: str) -> ErrorDescriber:
    """Turn a refused answer into an error for a server sdhub knows nothing special about."""

    def describe(response: requests.Response) -> SdhubError:
        if 200 <= response.status_code < 300:
            hint = " (a login page: the file needs credentials)" if "login" in response.url.lower() else ""
            return BadInputError(f"{what}: {redact(response.url)} sent a web page or an error message instead "
                                 f"of a model file{hint}; nothing was saved")
        return generic_error(response, what)

    return describe


class _Download:
    def __init__(self, client: HttpClient, url: str, folder: Path, *, expected_sha256: str | None,
                 expected_size: int | None, fallback_name: str, connections: int,
                 quarantine_dir: Path | None, progress: Progress, describe: ErrorDescriber, what: str) -> None:
        self.client = client
        self.url = url
        self.folder = folder
        self.expected_sha256 = expected_sha256.lower() if expected_sha256 else None
        self.expected_size = expected_size
        self.fallback_name = fallback_name
        self.connections = max(1, connections)
        self.quarantine_dir = quarantine_dir
        self.progress = progress
        self.describe = describe
        self.what = what
        self.part, self.state_path, self.lock_path = part_paths(folder, url)
        self.segments: list[Segment] = []
        self.validator: str | None = None
        self.total: int | None = None
        self.name = sanitize_filename(fallback_name)
        self.segment_url = url
        self.abort = threading.Event()
        self._segments_lock = threading.Lock()
        self._file: PartFile | None = None
        self._hasher: PrefixHasher | None = None
        self._last_save = 0.0
        self.workers = 1
        self.workers_used = 0
        self._first_block_done = threading.Event()
        self._first_block_rate = 0.0

    # -- resume state ---------------------------------------------------------------------------
    def _load_state(self) -> None:
        if not self.part.exists():
            self.state_path.unlink(missing_ok=True)
            return
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            self.segments = [Segment(int(s), None if e is None else int(e), int(d)) for s, e, d in state["segments"]]
            self.total = state.get("total")
            self.validator = state.get("validator")
        except (OSError, ValueError, KeyError, TypeError):
            # A .part without readable state is trusted only as a sequential prefix.
            self.segments = [Segment(0, None, self.part.stat().st_size)]
            self.total = None
        size = self.part.stat().st_size
        for segment in self.segments:
            # Bytes recorded but never written (a crash between write and save) are fetched again.
            segment.done = max(0, min(segment.done, size - segment.start))

    def _save_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_save < STATE_SAVE_SECONDS:
            return
        self._last_save = now
        with self._segments_lock:
            segments = [[s.start, s.end, s.done] for s in self.segments]
        data = {"segments": segments, "total": self.total, "validator": self.validator, "name": self.name}
        temp = self.state_path.with_name(self.state_path.name + ".tmp")
        temp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(temp, self.state_path)

    def _fetched(self) -> int:
        with self._segments_lock:
            return sum(s.done for s in self.segments)

    def _frontier(self) -> int:
        with self._segments_lock:
            for segment in self.segments:
                if not segment.complete:
                    return segment.position
            return self.segments[-1].position if self.segments else 0

    # -- responses ------------------------------------------------------------------------------
    def _headers(self, start: int, end: int | None) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}
        if start > 0 or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
            if self.validator and not self.validator.startswith("W/"):
                headers["If-Range"] = self.validator
        return headers

    def _check(self, response: requests.Response) -> None:
        if response.status_code == 416:
            return
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not (200 <= response.status_code < 300) or content_type.startswith(REFUSED_CONTENT_TYPES):
            error = self.describe(response)
            response.close()
            raise error
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # Asked for the bytes as they are (Accept-Encoding: identity): a compressed body's bytes,
            # offsets and length are not the file's, so it can be neither resumed nor verified.
            response.close()
            raise NetworkError(f"{self.what}: {redact(response.url)} sent the file compressed "
                               f"(Content-Encoding: {encoding}) although sdhub asked for it as is; "
                               "nothing was saved. Try again later or download it another way")

    def _open(self, url: str, start: int, end: int | None) -> requests.Response:
        response = self.client.open(url, headers=self._headers(start, end), stream=True, what=self.what)
        self._check(response)
        return response

    @staticmethod
    def _content_range(response: requests.Response) -> tuple[int, int | None, int | None] | None:
        match = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
        if not match:
            return None
        total = None if match.group(3) == "*" else int(match.group(3))
        return int(match.group(1)), int(match.group(2)) + 1, total

    def _name_from(self, response: requests.Response) -> str:
        name = content_disposition_filename(response.headers.get("Content-Disposition"))
        if not name:
            from_url = url_filename(response.url)
            if from_url and Path(from_url).suffix.lower() in SAFE_EXTENSIONS:
                name = from_url
        return sanitize_filename(name or self.fallback_name, self.fallback_name)

    def _restart(self, keep: Segment | None = None) -> None:
        """Throw away the bytes so far (the server will send the whole file again)."""
        with self._segments_lock:
            self.segments = [keep] if keep else []
            if keep is not None:
                keep.start, keep.done = 0, 0
        self._file.truncate()  # type: ignore[union-attr]
        if self._hasher is not None:
            self._hasher.restart()

    def _first_response(self) -> requests.Response | None:
        """Open the first connection; decide the name, the total and the segments from its answer."""
        pending = next((s for s in self.segments if not s.complete), None)
        if self.segments and pending is None:
            return None
        start = pending.position if pending else 0
        end = pending.end if pending and len(self.segments) > 1 else None
        response = self._open(self.url, start, end)
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        self.name = self._name_from(response)
        self.segment_url = response.url
        if response.status_code == 416:
            # Asked past the end: the .part already holds the whole file if the sizes agree.
            match = re.match(r"bytes\s+\*/(\d+)", response.headers.get("Content-Range", ""))
            response.close()
            if match and self.segments and int(match.group(1)) == self.part.stat().st_size:
                self.total = int(match.group(1))
                self.segments = [Segment(0, self.total, self.total)]
                return None
            self._restart()
            response = self._open(self.url, 0, None)
        elif response.status_code == 206:
            content_range = self._content_range(response)
            changed = (self.validator and validator and validator != self.validator) or (
                content_range and self.total is not None and content_range[2] not in (None, self.total))
            if content_range is None or content_range[0] != start or changed:
                response.close()
                self._restart()
                response = self._open(self.url, 0, None)
        elif start > 0:
            self.progress.message(f"{self.name}: the server cannot resume; starting again from the beginning")
            self._restart()
        if response.status_code == 206:
            content_range = self._content_range(response)
            self.total = content_range[2] if content_range else None
        else:
            length = response.headers.get("Content-Length")
            self.total = int(length) if length and length.isdigit() else None
        self.validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        if not self.segments:
            self.segments = self._plan(response)
        elif len(self.segments) == 1 and self.segments[0].end is None:
            self.segments[0].end = self.total
        return response

    def _plan(self, response: requests.Response) -> list[Segment]:
        """One segment, or (parallel) blocks handed out in file order so the hash keeps up."""
        ranges_ok = response.status_code == 206 or response.headers.get("Accept-Ranges", "").lower() == "bytes"
        if self.total is None or not ranges_ok or self.connections == 1 or self.total < 2 * MIN_SEGMENT_BYTES:
            return [Segment(0, self.total)]
        block = max(MIN_SEGMENT_BYTES, -(-self.total // MAX_BLOCKS))
        return [Segment(start, min(start + block, self.total)) for start in range(0, self.total, block)]

    # -- fetching -------------------------------------------------------------------------------
    def _work(self, pending: deque[Segment], segment: Segment | None, body: ResponseBody | None,
              leader: bool) -> None:
        """One connection's loop: fetch segments, next in file order first, until none is left.

        Extra connections (not the ``leader``) join only if the first block takes longer than it
        would at ``FAST_CONNECTION_BYTES_PER_SECOND``: one connection that is already that fast
        gains nothing from more (on a LAN or localhost they only cost CPU).
        """
        if not leader:
            block = next(iter(pending), None)
            size = (block.end or 0) - block.start if block else 0
            done = self._first_block_done.wait(timeout=size / FAST_CONNECTION_BYTES_PER_SECOND)
            if done and self._first_block_rate >= FAST_CONNECTION_BYTES_PER_SECOND:
                return
        with self._segments_lock:
            self.workers_used += 1
        started = time.monotonic()
        buffers = _Buffers()
        leftover: ResponseBody | None = None
        leftover_at = -1  # where ``leftover`` (an answer still open) has got to
        try:
            while not self.abort.is_set():
                if segment is None:
                    with self._segments_lock:
                        if not pending:
                            break
                        segment = pending.popleft()
                    # Keep reading the same answer when the next block starts where it has got to.
                    if leftover is not None and leftover_at == segment.position:
                        body, leftover = leftover, None
                    leftover = _close(leftover)
                before = segment.done
                leftover = self._fetch(segment, body, buffers)
                leftover_at = segment.end
                if leader and not self._first_block_done.is_set():
                    elapsed = max(time.monotonic() - started, 1e-9)
                    self._first_block_rate = (segment.done - before) / elapsed
                    self._first_block_done.set()
                segment, body = None, None
        finally:
            _close(leftover)
            if leader:
                self._first_block_done.set()

    def _fetch(self, segment: Segment, body: ResponseBody | None, buffers: _Buffers) -> ResponseBody | None:
        """Fetch one segment, retrying dropped connections; return the answer if it goes on past it."""
        failures = 0
        url = self.segment_url
        while not segment.complete and not self.abort.is_set():
            try:
                if body is None:
                    # A lone segment asks for "the rest" (bytes=N-), as any resuming client would.
                    end = segment.end if len(self.segments) > 1 else None
                    body = ResponseBody(self._open(url, segment.position, end))
                    self._accept_range_answer(segment, body.response)
                self._stream(segment, body, buffers)
                failures = 0
            except (_Dropped, *TRANSIENT_ERRORS) as error:
                body = _close(body)
                failures += 1
                if failures >= self.client.policy.attempts:
                    raise NetworkError(
                        f"{self.what}: the connection to {redact(url)} kept dropping ({error}); "
                        f"{self._fetched()} bytes are kept in {self.part.name}: run the same command to resume"
                    ) from None
                self.client.policy.wait(failures - 1)
                # A signed storage URL may have expired: ask the original address for a fresh one.
                url = self.url
            except BaseException:
                _close(body)
                raise
        if body is not None and segment.complete and (body.remaining or 0) > 0:
            return body  # the rest of the file follows on this connection
        return _close(body)

    def _accept_range_answer(self, segment: Segment, response: requests.Response) -> None:
        """Check that a range request got the range; a lone download may start over instead."""
        if response.status_code == 206:
            if (self._content_range(response) or (None,))[0] != segment.position:
                raise _Dropped("the server sent a different byte range")
            return
        if len(self.segments) > 1:
            raise NetworkError(f"{self.what}: {redact(response.url)} stopped honouring byte ranges; "
                               "run the command again with --connections 1")
        if segment.position > 0:
            self.progress.message(f"{self.name}: the server cannot resume; starting again from the beginning")
            self._restart(keep=segment)

    def _stream(self, segment: Segment, body: ResponseBody, buffers: _Buffers) -> None:
        """Receive one segment: fill a buffer, write it, hand it to the hasher, and again."""
        while not segment.complete and not self.abort.is_set():
            buffer = buffers.take(self._stop_waiting)
            if buffer is None:
                return
            view = memoryview(buffer)
            offset = segment.position
            # A resumed .part may end mid-block: fill up to the next block boundary first, so every
            # later buffer lands on one and can go straight to the disk.
            wanted = len(view) - offset % DIRECT_ALIGNMENT if offset % DIRECT_ALIGNMENT else len(view)
            if segment.end is not None:
                wanted = min(wanted, segment.end - offset)
            filled, ended, failure = self._fill(body, view[:wanted])
            if filled and offset == 0 and looks_like_error_page(view[:min(filled, 512)]):
                raise self.describe(body.response)
            if filled:
                self._file.write(view[:filled], offset)  # type: ignore[union-attr]
                with self._segments_lock:
                    segment.done += filled
            if filled and self._hasher is not None:
                self._hasher.feed(offset, view[:filled], partial(buffers.give_back, buffer))
            else:
                buffers.give_back(buffer)
            if failure is not None:
                raise failure
            if ended and not segment.complete:
                if segment.end is not None:
                    raise _Dropped("the body ended early")
                with self._segments_lock:
                    segment.end = segment.position
                    self.total = segment.end

    def _fill(self, body: ResponseBody, view: memoryview) -> tuple[int, bool, _Dropped | None]:
        """Read into ``view`` until it is full, the body ends, or ``FLUSH_SECONDS`` pass.

        Returns the bytes read, whether the body ended, and the failure that stopped it (the
        bytes read before a failure are kept).
        """
        filled = 0
        deadline = time.monotonic() + FLUSH_SECONDS
        try:
            while filled < len(view):
                count = body.readinto(view[filled:])
                if not count:
                    return filled, True, None
                filled += count
                if time.monotonic() > deadline or self.abort.is_set():
                    break
        except BODY_READ_ERRORS as error:
            return filled, False, _Dropped(type(error).__name__)
        return filled, False, None

    def _stop_waiting(self) -> bool:
        """While a connection waits for a buffer to be hashed: stop if the download is over."""
        if self._hasher is not None and not self._hasher.is_alive() and self._hasher.error is not None:
            raise self._hasher.error
        return self.abort.is_set()

    def _run_transfer(self, first: requests.Response | None) -> None:
        task = self.progress.task(f"Downloading {self.name}", total=self.total, unit="bytes")
        task.update(completed=self._fetched())
        pending = deque(s for s in self.segments if not s.complete)
        self.workers = max(1, min(self.connections, len(pending)))
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sdhub-download") as pool:
                # The first answer is for the first pending segment: that worker starts with it.
                opening = pending.popleft() if first is not None else None
                body = ResponseBody(first) if first is not None else None
                futures = [pool.submit(self._work, pending, opening, body, True)]
                futures += [pool.submit(self._work, pending, None, None, False) for _ in range(self.workers - 1)]
                first = None
                try:
                    while True:
                        done, running = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
                        # A progress renderer may raise here to cancel (the TUI does): workers stop below.
                        task.update(completed=self._fetched(), total=self.total)
                        self._save_state()
                        failed = [f for f in done if f.exception() is not None]
                        if failed:
                            raise failed[0].exception()  # type: ignore[misc]
                        if not running:
                            break
                except (KeyboardInterrupt, Interrupted) as stop:
                    self.abort.set()
                    wait(futures)  # what the connections still write counts in what is kept
                    raise interrupted(stop, f"{self._fetched()} bytes of {self.name} kept in {self.part.name}: "
                                            "run the same command to resume") from None
                finally:
                    self.abort.set()
                    wait(futures)
        finally:
            if first is not None:
                first.close()
            self._save_state(force=True)
            task.finish()

    # -- finishing ------------------------------------------------------------------------------
    def _quarantine(self, sha256: str) -> Path | None:
        if self.quarantine_dir is None:
            self.part.unlink(missing_ok=True)
            return None
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / f"{self.name}.{sha256[:12]}.quarantined"
        os.replace(self.part, target)
        return target

    def already_there(self) -> DownloadResult | None:
        """The published bytes already under the expected name (another sdhub just fetched them)."""
        candidate = self.folder / self.name
        if self.expected_sha256 is None or self.part.exists() or not candidate.is_file():
            return None
        if sha256_file(candidate) != self.expected_sha256:
            return None
        size = candidate.stat().st_size
        return DownloadResult(path=candidate, name=candidate.name, size=size, sha256=self.expected_sha256,
                              url=redact(self.url), reused=True)

    def run(self) -> DownloadResult:
        started = time.monotonic()
        self._load_state()
        resumed_from = self._fetched()
        self._file = PartFile(self.part)
        try:
            first = self._first_response()
            if self._fetched() == 0:
                resumed_from = 0
            self._hasher = PrefixHasher(self.part, self._frontier)
            self._hasher.start()
            try:
                self._run_transfer(first)
            except BaseException:
                self._hasher.abandon()
                raise
            size = self._fetched()
            sha256 = self._hasher.finish(size)
            if self.total is not None and size != self.total:
                raise NetworkError(f"{self.what}: got {size} of {self.total} bytes; run the same command to resume")
            self._file.sync()
        except BaseException:
            if self._fetched() == 0:
                self.part.unlink(missing_ok=True)
                self.state_path.unlink(missing_ok=True)
            raise
        finally:
            self._file.close()
        self.state_path.unlink(missing_ok=True)
        problem = None
        if self.expected_size is not None and size != self.expected_size:
            problem = f"is {size} bytes, the source publishes {self.expected_size}"
        elif self.expected_sha256 and sha256 != self.expected_sha256:
            problem = f"has SHA-256 {sha256[:16]}..., the source publishes {self.expected_sha256[:16]}..."
        if problem:
            kept = self._quarantine(sha256)
            where = f"; quarantined as {kept}" if kept else ""
            raise VerificationError(f"downloaded {self.name} {problem}: it was not placed{where}")
        path, reused = place_file(self.part, self.folder, self.name, sha256, size)
        return DownloadResult(path=path, name=path.name, size=size, sha256=sha256, url=redact(self.url),
                              reused=reused, resumed_from=resumed_from, connections=max(1, self.workers_used),
                              seconds=time.monotonic() - started)


def _close(body: ResponseBody | None) -> None:
    """Close an answer if there is one; always returns None (for ``body = _close(body)``)."""
    if body is not None:
        body.close()
    return None


def download(client: HttpClient, url: str, folder: Path, *, expected_sha256: str | None = None,
             expected_size: int | None = None, fallback_name: str = "download.bin", connections: int = 1,
             quarantine_dir: Path | None = None, progress: Progress = NULL_PROGRESS,
             describe_error: ErrorDescriber | None = None, what: str = "download") -> DownloadResult:
    """Download ``url`` into ``folder``: resumable, verified against ``expected_sha256``, atomic.

    The file name comes from the server's Content-Disposition (sanitised), else the URL, else
    ``fallback_name``. Identical bytes already under that name are reused; a different file
    gets a numbered name. A hash or size mismatch moves the bytes to ``quarantine_dir``.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{what}: cannot create the folder {folder}: {error.strerror or error}") from None
    job = _Download(client, url, folder, expected_sha256=expected_sha256, expected_size=expected_size,
                    fallback_name=fallback_name, connections=connections, quarantine_dir=quarantine_dir,
                    progress=progress, describe=describe_error or default_describer(what), what=what)
    try:
        with exclusive_lock(job.lock_path, progress):
            return job.already_there() or job.run()
    except requests.RequestException as error:
        raise NetworkError(f"{what}: {redact(url)} failed ({type(error).__name__}); run the same command "
                           "to try again") from None
    except OSError as error:
        # The disk side: full, read-only, permissions. What was downloaded so far stays in the .part.
        raise SdhubError(f"{what}: cannot write in {folder}: {error.strerror or error}") from None
