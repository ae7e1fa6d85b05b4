"""What the imitation servers (``civitai_server``, ``hub_server``) share: real HTTP servers on
127.0.0.1 running in threads, a log of the requests they saw, and a request handler that answers
with a body or with the byte range a ``Range`` header asks for.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar


@dataclass
class RequestRecord:
    """One request as a server saw it (for tests that check what a client sent where)."""

    server: str
    method: str
    path: str
    headers: dict[str, str]


class ImitationServers:
    """Named HTTP servers on ``host`` (ports chosen by the system) that share this owner and its request log.

    Start and stop them with ``with`` or ``start()``/``stop()``.
    """

    #: Log header names in lower case (for clients that send them so, as httpx does).
    lower_case_header_names = False

    def __init__(self, host: str, handlers: dict[str, type[ImitationHandler[Any]]]) -> None:
        self.host = host
        self.log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._servers = {name: _ThreadedServer(host, handler, self, name) for name, handler in handlers.items()}

    def server_url(self, name: str) -> str:
        """The base URL of the server called ``name``."""
        return f"http://{self.host}:{self._servers[name].server_address[1]}"

    def start(self) -> Self:
        for server in self._servers.values():
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, server: str, handler: BaseHTTPRequestHandler) -> None:
        """Add the request ``handler`` is answering to the log, as seen by ``server``."""
        headers = dict(handler.headers.items())
        if self.lower_case_header_names:
            headers = {name.lower(): value for name, value in headers.items()}
        with self._lock:
            self.log.append(RequestRecord(server, handler.command, handler.path, headers))

    def requests_to(self, server: str) -> list[RequestRecord]:
        """The logged requests that ``server`` answered, oldest first."""
        return [r for r in self.log if r.server == server]


OwnerT = TypeVar("OwnerT", bound=ImitationServers)


class _ThreadedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, handler: type[BaseHTTPRequestHandler], owner: ImitationServers, name: str) -> None:
        super().__init__((host, 0), handler)
        self.owner = owner
        self.name = name


class ImitationHandler(BaseHTTPRequestHandler, Generic[OwnerT]):
    """A quiet HTTP/1.1 handler that knows its owner and sends bodies and byte ranges."""

    protocol_version = "HTTP/1.1"
    #: The Content-Type of a body sent without one named.
    default_content_type = "application/json"

    @property
    def owner(self) -> OwnerT:
        return self.server.owner  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass

    def _record(self) -> None:
        self.owner.record(self.server.name, self)  # type: ignore[attr-defined]

    def _send(self, status: int, body: bytes = b"", content_type: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or self.default_content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers=headers)

    def _send_range_head(self, size: int, headers: dict[str, str], *, honour_range: bool = True) -> tuple[int, int] | None:
        """Send the status and headers for the part of ``size`` bytes that the ``Range`` header asks for.

        Returns the ``(start, end)`` to write next, or None when the range cannot be served (a 416 was sent).
        """
        start, end, status = 0, size, 200
        range_header = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip()) if range_header and honour_range else None
        if match:
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
            if start >= size:
                self._send(416, headers={"Content-Range": f"bytes */{size}"})
                return None
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        for name, value in headers.items():
            self.send_header(name, value)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        return start, end
