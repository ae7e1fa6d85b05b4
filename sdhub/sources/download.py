"""The one downloader: resumable, verified, atomic, for Civitai files and plain URLs.

Bytes go to a hidden ``.sdhub-<key>.part`` file in the target folder (``key`` derives from the
URL, so running the same command again finds it and resumes with ``Range``). A SHA-256 of the
bytes is computed while they arrive; the file is renamed into place only when it is complete
and matches the published hash. A body that is an HTML or JSON page, or shorter than the server
announced, never becomes a model file. A lock per download lets several run at once.

Each connection reads into a few reused buffers; its writer thread writes a filled buffer (whole
blocks straight to the disk, see ``part_file``) while the next one fills, and the hashing thread then
hashes it from memory.

A download starts with one connection and one request for the whole rest of the file. When the
server takes byte ranges and that connection is slow, more join while each addition makes the
download faster (``ramp``), up to ``connections`` (default ``DEFAULT_MAX_CONNECTIONS``): a CDN
that throttles each connection gets several. Only then is the part of that first answer not read
yet cut into blocks, handed out in file order so the hash keeps up; once none is left, a free
connection takes the second half of the largest piece still being fetched, so no connection idles
while one finishes.
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
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import requests

from sdhub.errors import BadInputError, Interrupted, NetworkError, SdhubError, UsageError, VerificationError
from sdhub.progress import NULL_PROGRESS, Progress, interrupted
from sdhub.sources.filenames import SAFE_EXTENSIONS, content_disposition_filename, sanitize_filename, url_filename
from sdhub.sources.http import (
    BODY_READ_ERRORS, TRANSIENT_ERRORS, HttpClient, ResponseBody, generic_error, redact,
)
from sdhub.sources.part_file import DIRECT_ALIGNMENT, PartFile, new_buffer
from sdhub.sources.placing import PART_PREFIX, exclusive_lock, place_file, sha256_file
from sdhub.sources.prefix_hash import PrefixHasher
from sdhub.sources import ramp

#: Each connection receives into a few buffers of this size, reused once written and hashed.
CHUNK_SIZE = 4 << 20
BUFFERS_PER_CONNECTION = 6
#: A buffer that is not full yet is written anyway after this long, so a slow server shows progress.
FLUSH_SECONDS = 0.25
#: Added connections fetch blocks of at least this size, one range request each.
MIN_SEGMENT_BYTES = 16 << 20
MAX_BLOCKS = 1024
#: A piece still being fetched is split for a free connection only when each half is at least this big.
MIN_SPLIT_BYTES = 256 << 10
#: One read asks for at most this much: what a split must leave to the connection already reading.
READ_CLAIM_BYTES = 1 << 20
#: Without a ``connections`` limit, a download grows to at most this many (what a throttling CDN needs).
DEFAULT_MAX_CONNECTIONS = 8
#: How often the download checks whether to add a connection, and how often it reports progress.
RAMP_TICK_SECONDS = 0.025
PROGRESS_SECONDS = 0.2
STATE_SAVE_SECONDS = 0.5
REFUSED_CONTENT_TYPES = ("text/html", "application/json", "application/xhtml", "text/xml", "application/xml")
_HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body|<\?xml)", re.IGNORECASE)
_JSON_ERROR_START = re.compile(rb'^\s*\{\s*"(error|message|code|detail)"\s*:')

ErrorDescriber = Callable[[requests.Response], SdhubError]


class _Dropped(Exception):
    """The connection ended before the bytes we were promised."""


class _Receiver:
    """One connection's receive side: buffers reused once written and hashed (receiving allocates
    nothing), the bytes received so far (counted per read, for the ramp's measurements), and a
    writer thread that writes filled buffers in order while the next one fills (a direct write
    waits for the disk; done by the receiving thread, it would stop receiving meanwhile)."""

    def __init__(self, count: int = BUFFERS_PER_CONNECTION, size: int = CHUNK_SIZE) -> None:
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._left_to_make = count
        self._size = size
        #: Whether this connection has had an answer yet (the ramp waits for new ones to start).
        self.answered = False
        self.received = 0
        self._writer: ThreadPoolExecutor | None = None
        self._writes: deque[Future[None]] = deque()
        self._write_failure: BaseException | None = None

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

    def write_behind(self, write: Callable[[], None], release: Callable[[], None]) -> None:
        """Run ``write`` on the writer thread after the writes handed over before it.

        Once a write has failed, later ones only ``release`` their buffers: the bytes after a gap
        must not count as written. The failure is raised here or by ``drain``.
        """
        while self._writes and self._writes[0].done():
            self._writes.popleft().result()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdhub-write")
        self._writes.append(self._writer.submit(self._write_in_order, write, release))

    def _write_in_order(self, write: Callable[[], None], release: Callable[[], None]) -> None:
        if self._write_failure is not None:
            release()
            return
        try:
            write()
        except BaseException as error:
            self._write_failure = error
            raise

    def drain(self) -> None:
        """Wait until every buffer handed over is written; raise the first write's failure."""
        while self._writes:
            self._writes.popleft().exception()
        if self._write_failure is not None:
            failure, self._write_failure = self._write_failure, None
            raise failure

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)


@dataclass
class Segment:
    """A byte range of the file fetched by one connection: [start, end), ``done`` bytes written so far."""

    start: int
    end: int | None
    done: int = 0
    #: How far its connection's current read may reach (a split never cuts below it); not saved.
    reading_to: int = 0
    #: Bytes received, some perhaps still on their way to the disk (``done`` <= ``received``); not saved.
    received: int = 0

    def __post_init__(self) -> None:
        self.received = max(self.received, self.done)

    @property
    def position(self) -> int:
        """Where the written bytes end."""
        return self.start + self.done

    @property
    def next_byte(self) -> int:
        """Where the connection receives next."""
        return self.start + self.received

    @property
    def complete(self) -> bool:
        return self.end is not None and self.position >= self.end

    @property
    def all_received(self) -> bool:
        return self.end is not None and self.next_byte >= self.end


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
                 expected_size: int | None, fallback_name: str, connections: int | None,
                 quarantine_dir: Path | None, progress: Progress, describe: ErrorDescriber, what: str) -> None:
        self.client = client
        self.url = url
        self.folder = folder
        self.expected_sha256 = expected_sha256.lower() if expected_sha256 else None
        self.expected_size = expected_size
        self.fallback_name = fallback_name
        self.max_connections = DEFAULT_MAX_CONNECTIONS if connections is None else max(1, connections)
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
        self.ranges_ok = False
        self._started = 0
        self._running = 0
        self._receiving = 0  # started connections that have had an answer (or ended)
        self._receivers: list[_Receiver] = []
        self.ramp = ramp.ConnectionRamp(cap=1)

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
            segment.done = segment.received = max(0, min(segment.done, size - segment.start))

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
    def _headers(self, start: int, end: int | None, probe: bool = False) -> dict[str, str]:
        """The request's headers; ``probe`` asks for ``bytes=0-`` so a 206 proves the server takes ranges."""
        headers = {"Accept-Encoding": "identity"}
        if start > 0 or end is not None or probe:
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

    def _open(self, url: str, start: int, end: int | None, probe: bool = False) -> requests.Response:
        response = self.client.open(url, headers=self._headers(start, end, probe), stream=True, what=self.what)
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
                keep.start, keep.done, keep.received = 0, 0, 0
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
        probe = self.max_connections > 1 and start == 0 and end is None
        response = self._open(self.url, start, end, probe)
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
        # A 206 proves it; without a probe (one connection wanted), the server's word is enough.
        self.ranges_ok = self.total is not None and (response.status_code == 206 or (
            not probe and response.headers.get("Accept-Ranges", "").lower() == "bytes"))
        if not self.segments:
            # One piece, the whole file, on one answer: cut into blocks only once a connection is added.
            self.segments = [Segment(0, self.total)]
        elif len(self.segments) == 1 and self.segments[0].end is None:
            self.segments[0].end = self.total
        return response

    def _block_bytes(self) -> int:
        """The size of the blocks a long piece is cut into for added connections."""
        block = max(MIN_SEGMENT_BYTES, -(-(self.total or 0) // MAX_BLOCKS))
        return block + -block % DIRECT_ALIGNMENT

    # -- fetching -------------------------------------------------------------------------------
    def _work(self, pending: deque[Segment], segment: Segment | None, body: ResponseBody | None,
              proven: bool) -> None:
        """One connection's loop: fetch pieces, next in file order first, until none is left.

        An added connection (not ``proven``) leaves quietly, giving its piece back, if the server
        refuses its first request: the download goes on with the connections it has.
        """
        buffers = _Receiver()
        with self._segments_lock:
            self._receivers.append(buffers)
        leftover: ResponseBody | None = None
        leftover_at = -1  # where ``leftover`` (an answer still open) has got to
        try:
            while not self.abort.is_set():
                if segment is None:
                    segment = self._next_piece(pending)
                    if segment is None:
                        break
                    # Keep reading the same answer when the next piece starts where it has got to.
                    if leftover is not None and leftover_at == segment.position:
                        body, leftover = leftover, None
                    leftover = _close(leftover)
                if not proven:
                    body = self._open_added(segment, pending)
                    if body is None:
                        return
                    proven = True
                self._answered(buffers)
                leftover = self._fetch(segment, body, buffers)
                leftover_at = segment.end if segment.end is not None else -1
                segment, body = None, None
        finally:
            _close(leftover)
            buffers.close()
            self._answered(buffers)  # an ended connection is not waited for
            with self._segments_lock:
                self._running -= 1

    def _answered(self, buffers: _Receiver) -> None:
        """Count a connection as started (the ramp measures once all have started)."""
        with self._segments_lock:
            if not buffers.answered:
                buffers.answered = True
                self._receiving += 1

    def _next_piece(self, pending: deque[Segment]) -> Segment | None:
        """The next piece in file order or, when none is left, a part of the largest one being fetched:
        the blocks after its current read if it is long (the first answer, for the whole file), else its
        second half."""
        with self._segments_lock:
            if pending:
                return pending.popleft()
            found = self._largest_unread()
            if found is None:
                return None
            index, from_offset, left = found
            victim = self.segments[index]
            block = self._block_bytes()
            if left >= 2 * block:
                # Blocks in file order just ahead of the piece's connection (halves would be far apart,
                # and the in-order hash would have to read the bytes far ahead back from the disk).
                cut, end = from_offset + -from_offset % block, from_offset + left
                blocks = [Segment(start, min(start + block, end)) for start in range(cut, end, block)]
                victim.end = cut
                self.segments[index + 1:index + 1] = blocks
                pending.extend(blocks[1:])
                return blocks[0]
            split = from_offset + left // 2
            split += -split % DIRECT_ALIGNMENT  # direct writes need aligned offsets
            piece = Segment(split, victim.end)
            victim.end = split
            self.segments.insert(index + 1, piece)
            return piece

    def _largest_unread(self) -> tuple[int, int, int] | None:
        """(index, offset, bytes) of the largest span no connection has started reading, if worth splitting.

        Call with the segments lock held.
        """
        best: tuple[int, int, int] | None = None
        for index, segment in enumerate(self.segments):
            if segment.complete or segment.end is None:
                continue
            from_offset = max(segment.next_byte, segment.reading_to)
            left = segment.end - from_offset
            if left >= 2 * MIN_SPLIT_BYTES and (best is None or left > best[2]):
                best = (index, from_offset, left)
        return best

    def _open_added(self, segment: Segment, pending: deque[Segment]) -> ResponseBody | None:
        """An added connection's first answer; None (the piece given back) when the server refuses it.

        Tried once, without retries: a server that limits connections answers 429/503, resets the
        connection or ignores the range, and the download then keeps the connections it has.
        """
        try:
            response: requests.Response | None = self.client.open(
                self.segment_url, headers=self._headers(segment.next_byte, segment.end), stream=True,
                retry=False, what=self.what)
        except (NetworkError, *TRANSIENT_ERRORS):
            response = None
        if response is not None and response.status_code == 206 \
                and (self._content_range(response) or (None,))[0] == segment.next_byte:
            self._check(response)  # a 206 that is an error page is still an error
            return ResponseBody(response)
        if response is not None:
            response.close()
        self.ramp.settle()
        with self._segments_lock:
            # Back in file order; a neighbour's open answer may run straight into it.
            index = next((i for i, s in enumerate(pending) if s.start > segment.start), len(pending))
            pending.insert(index, segment)
        return None

    def _fetch(self, segment: Segment, body: ResponseBody | None, buffers: _Receiver) -> ResponseBody | None:
        """Fetch one segment, retrying dropped connections; return the answer if it goes on past it."""
        failures = 0
        url = self.segment_url
        while not segment.all_received and not self.abort.is_set():
            try:
                if body is None:
                    # A lone segment asks for "the rest" (bytes=N-), as any resuming client would.
                    end = segment.end if len(self.segments) > 1 else None
                    body = ResponseBody(self._open(url, segment.next_byte, end))
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
        if body is not None and segment.all_received and (body.remaining or 0) > 0:
            return body  # the rest of the file follows on this connection
        return _close(body)

    def _accept_range_answer(self, segment: Segment, response: requests.Response) -> None:
        """Check that a range request got the range; a lone download may start over instead."""
        if response.status_code == 206:
            if (self._content_range(response) or (None,))[0] != segment.next_byte:
                raise _Dropped("the server sent a different byte range")
            return
        if len(self.segments) > 1:
            raise NetworkError(f"{self.what}: {redact(response.url)} stopped honouring byte ranges; "
                               "run the command again with --connections 1")
        if segment.next_byte > 0:
            self.progress.message(f"{self.name}: the server cannot resume; starting again from the beginning")
            self._restart(keep=segment)

    def _stream(self, segment: Segment, body: ResponseBody, buffers: _Receiver) -> None:
        """Receive one segment: fill a buffer, hand it to the writer thread (which then hands it to
        the hasher), fill the next meanwhile; return once every byte received is written."""
        try:
            while not segment.all_received and not self.abort.is_set():
                buffer = buffers.take(self._stop_waiting)
                if buffer is None:
                    return
                view = memoryview(buffer)
                release = partial(buffers.give_back, buffer)
                offset = segment.next_byte
                # A resumed .part may end mid-block: fill up to the next block boundary first, so every
                # later buffer lands on one and can go straight to the disk.
                wanted = len(view) - offset % DIRECT_ALIGNMENT if offset % DIRECT_ALIGNMENT else len(view)
                filled, ended, failure = self._fill(body, view[:wanted], buffers, segment)
                if filled and offset == 0 and looks_like_error_page(view[:min(filled, 512)]):
                    release()
                    raise self.describe(body.response)
                if filled:
                    with self._segments_lock:
                        segment.received += filled
                    buffers.write_behind(partial(self._write, segment, offset, view[:filled], release), release)
                else:
                    release()
                if failure is not None:
                    raise failure
                if ended and not segment.all_received:
                    if segment.end is not None:
                        raise _Dropped("the body ended early")
                    with self._segments_lock:
                        segment.end = segment.next_byte
                        self.total = segment.end
        finally:
            buffers.drain()

    def _write(self, segment: Segment, offset: int, data: memoryview, release: Callable[[], None]) -> None:
        """Write received bytes (on the connection's writer thread), count them, hand them to the hasher."""
        try:
            self._file.write(data, offset)  # type: ignore[union-attr]
        except BaseException:
            release()
            raise
        with self._segments_lock:
            segment.done += len(data)
        if self._hasher is not None:
            self._hasher.feed(offset, data, release)
        else:
            release()

    def _fill(self, body: ResponseBody, view: memoryview, receiver: _Receiver,
              segment: Segment) -> tuple[int, bool, _Dropped | None]:
        """Read ``segment``'s next bytes into ``view`` until it is full, the piece or the body ends,
        or ``FLUSH_SECONDS`` pass.

        Returns the bytes read, whether the body ended, and the failure that stopped it (the
        bytes read before a failure are kept). A free connection may split the piece meanwhile:
        each read says how far it may reach (``reading_to``), and a split leaves that much.
        """
        filled = 0
        offset = segment.next_byte
        deadline = time.monotonic() + FLUSH_SECONDS
        try:
            while True:
                with self._segments_lock:
                    limit = len(view) if segment.end is None else min(len(view), segment.end - offset)
                    reach = min(limit, filled + READ_CLAIM_BYTES)
                    segment.reading_to = offset + reach
                if filled >= limit:
                    break
                count = body.readinto(view[filled:reach])
                if not count:
                    return filled, True, None
                filled += count
                receiver.received += count
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
        # Read at the start of each download, so a test can make connections count as fast or slow.
        self.ramp = ramp.ConnectionRamp(cap=self.max_connections if self.ranges_ok else 1,
                                        window=ramp.RAMP_WINDOW_SECONDS, fast=ramp.FAST_CONNECTION_BYTES_PER_SECOND)
        try:
            with ThreadPoolExecutor(max_workers=self.max_connections, thread_name_prefix="sdhub-download") as pool:
                # The first answer is for the first pending segment: that connection starts with it.
                opening = pending.popleft() if first is not None else None
                body = ResponseBody(first) if first is not None else None
                futures = [self._start(pool, pending, opening, body, proven=True)]
                first = None
                try:
                    last_report = 0.0
                    while True:
                        done, running = wait(futures, timeout=RAMP_TICK_SECONDS, return_when=FIRST_EXCEPTION)
                        now = time.monotonic()
                        if now - last_report >= PROGRESS_SECONDS:
                            last_report = now
                            # A progress renderer may raise here to cancel (the TUI does): workers stop below.
                            task.update(completed=self._fetched(), total=self.total)
                            self._save_state()
                        failed = [f for f in done if f.exception() is not None]
                        if failed:
                            raise failed[0].exception()  # type: ignore[misc]
                        if not running:
                            if not pending or self.abort.is_set():
                                task.update(completed=self._fetched(), total=self.total)
                                break
                            # Only added connections were refused and gave their pieces back: one more
                            # connection, with retries, takes them (and says so if ranges stopped working).
                            futures.append(self._start(pool, pending, None, None, proven=True))
                        futures += [self._start(pool, pending, None, None, proven=False)
                                    for _ in range(self._connections_to_add(now, pending))]
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

    def _start(self, pool: ThreadPoolExecutor, pending: deque[Segment], segment: Segment | None,
               body: ResponseBody | None, *, proven: bool) -> Future[None]:
        with self._segments_lock:
            self._started += 1
            self._running += 1
        return pool.submit(self._work, pending, segment, body, proven)

    def _connections_to_add(self, now: float, pending: deque[Segment]) -> int:
        """What the ramp says, as long as there is still work for another connection."""
        with self._segments_lock:
            all_receiving = self._receiving >= self._started
            received = sum(receiver.received for receiver in self._receivers)
        added = self.ramp.observe(now, received, all_receiving)
        if added:
            with self._segments_lock:
                worth_it = bool(pending) or self._largest_unread() is not None
            if not worth_it:
                self.ramp.settle()
                return 0
        return added

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
                              reused=reused, resumed_from=resumed_from,
                              connections=max(1, sum(1 for r in self._receivers if r.received)),
                              seconds=time.monotonic() - started)


def _close(body: ResponseBody | None) -> None:
    """Close an answer if there is one; always returns None (for ``body = _close(body)``)."""
    if body is not None:
        body.close()
    return None


def download(client: HttpClient, url: str, folder: Path, *, expected_sha256: str | None = None,
             expected_size: int | None = None, fallback_name: str = "download.bin", connections: int | None = None,
             quarantine_dir: Path | None = None, progress: Progress = NULL_PROGRESS,
             describe_error: ErrorDescriber | None = None, what: str = "download") -> DownloadResult:
    """Download ``url`` into ``folder``: resumable, verified against ``expected_sha256``, atomic.

    The file name comes from the server's Content-Disposition (sanitised), else the URL, else
    ``fallback_name``. Identical bytes already under that name are reused; a different file
    gets a numbered name. A hash or size mismatch moves the bytes to ``quarantine_dir``.
    ``connections`` caps the parallel connections (None: up to ``DEFAULT_MAX_CONNECTIONS``, added
    while they make the download faster); 1 keeps one.
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
