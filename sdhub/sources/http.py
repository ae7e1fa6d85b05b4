"""HTTP requests for the sources: retries with backoff, redirects followed by hand, tokens kept home.

Redirects are followed here rather than by ``requests`` so the rule for credentials is ours and
visible: the ``Authorization`` header goes only to the origin (scheme, host, port) the token
belongs to, never to the signed storage URL a download redirects to. 429 and 5xx answers and
dropped connections are retried with exponential backoff, honouring ``Retry-After`` up to a cap.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3

from sdhub import __version__
from sdhub.config import env
from sdhub.errors import AuthError, NetworkError, NotFoundError, SdhubError

USER_AGENT = f"sdhub/{__version__} (+https://github.com/sdhub)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
#: A dropped or refused connection: worth another try.
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass
class RetryPolicy:
    """How often and how long to retry: ``attempts`` tries, doubling waits, ``max_wait`` per wait."""

    attempts: int = 6
    base_wait: float = 1.0
    #: ``SDHUB_HTTP_MAX_WAIT`` caps every wait (seconds), e.g. to keep scripts and tests snappy.
    max_wait: float = field(default_factory=lambda: float(env("SDHUB_HTTP_MAX_WAIT", "60") or 60))
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Sleep before try ``attempt + 1`` and return how long: Retry-After if given, else backoff."""
        seconds = retry_after if retry_after is not None else self.base_wait * (2 ** attempt)
        seconds = max(0.0, min(seconds, self.max_wait))
        self.sleep(seconds)
        return seconds


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports filled in: what 'the same server' means."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def redact(url: str) -> str:
    """A URL fit for messages: no query string (signatures, tokens) and no user info."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def retry_after_seconds(response: requests.Response) -> float | None:
    """The server's ``Retry-After`` as seconds (number or HTTP date); None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_text(response: requests.Response) -> str:
    """A short description of an error answer: the JSON ``error``/``message`` fields or the status."""
    detail = ""
    if "json" in response.headers.get("Content-Type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("error", "message") if isinstance(body.get(k), (str, int))]
            detail = ": ".join(dict.fromkeys(parts))
    reason = f"HTTP {response.status_code}" + (f" {response.reason}" if response.reason else "")
    return f"{reason} ({detail[:300]})" if detail else reason


def generic_error(response: requests.Response, what: str) -> SdhubError:
    """The error for a failed answer from a server sdhub knows nothing special about."""
    text = f"{what}: {redact(response.url)} answered {error_text(response)}"
    if response.status_code == 404 or response.status_code == 410:
        return NotFoundError(text)
    if response.status_code in (401, 403):
        return AuthError(text + "; the server wants credentials sdhub does not have")
    if response.status_code in RETRY_STATUSES:
        return NetworkError(text + "; try again later")
    return NetworkError(text)


class HttpClient:
    """A ``requests`` session with sdhub's redirect, credential and retry rules."""

    def __init__(self, *, token: str | None = None, token_origin: str | None = None,
                 policy: RetryPolicy | None = None, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self._token = token
        self._token_origin = origin(token_origin) if token_origin else None
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def _headers_for(self, url: str, headers: Mapping[str, str] | None) -> dict[str, str]:
        sent = dict(headers or {})
        if self._token and self._token_origin == origin(url):
            sent["Authorization"] = f"Bearer {self._token}"
        return sent

    def open(self, url: str, *, headers: Mapping[str, str] | None = None, stream: bool = False,
             method: str = "GET", params: Mapping[str, object] | None = None, json: object = None,
             retry: bool = True, what: str = "request") -> requests.Response:
        """One request with redirects followed by hand; 429/5xx and dropped connections retried.

        Returns the final response whatever its status (callers decide what an error means);
        raises ``NetworkError`` when the server cannot be reached or keeps failing.
        """
        attempts = self.policy.attempts if retry else 1
        last_problem = ""
        for attempt in range(attempts):
            try:
                response = self._follow(method, url, headers, stream, params, json)
            except TRANSIENT_ERRORS as error:
                last_problem = f"connection failed ({type(error).__name__})"
                if attempt + 1 < attempts:
                    self.policy.wait(attempt)
                continue
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                wait = retry_after_seconds(response)
                last_problem = error_text(response)
                response.close()
                self.policy.wait(attempt, wait)
                continue
            return response
        raise NetworkError(f"{what}: {redact(url)} failed after {attempts} tries: {last_problem}; "
                           "try again later")

    def _follow(self, method: str, url: str, headers: Mapping[str, str] | None, stream: bool,
                params: Mapping[str, object] | None, json: object) -> requests.Response:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self.session.request(
                method, current, headers=self._headers_for(current, headers), stream=stream,
                params=params, json=json, timeout=self.timeout, allow_redirects=False,
            )
            params = None  # already part of the URL the server redirected from
            if response.status_code not in REDIRECT_STATUSES or "Location" not in response.headers:
                return response
            target = urljoin(response.url, response.headers["Location"])
            response.close()
            if urlsplit(target).scheme not in ("http", "https"):
                raise NetworkError(f"{redact(current)} redirected to a non-HTTP address; refusing to follow")
            if response.status_code == 303:
                method, json = "GET", None
            current = target
        raise NetworkError(f"{redact(url)} redirected more than {MAX_REDIRECTS} times")

    def close(self) -> None:
        self.session.close()


#: Failures while reading a body: the connection dropped, stalled past the timeout or broke the protocol.
BODY_READ_ERRORS = (urllib3.exceptions.HTTPError, requests.RequestException, OSError)


class ResponseBody:
    """The body of a streamed answer, read into the caller's own buffers.

    A body with a Content-Length and no transfer coding is read from the connection's buffered
    socket straight into the caller's buffer: no bytes object per read and no copy. Any other
    body goes through urllib3 and is copied in. Either way a read returns what the connection has
    (at most one socket read), so a slow server still delivers small pieces promptly.
    """

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        answer = getattr(response.raw, "_fp", None)  # urllib3 keeps http.client's answer here (1.x and 2.x)
        self._answer: http.client.HTTPResponse | None = None
        if (isinstance(answer, http.client.HTTPResponse) and not answer.chunked
                and isinstance(answer.length, int) and isinstance(answer.fp, io.BufferedReader)):
            self._answer = answer

    @property
    def remaining(self) -> int | None:
        """Bytes the server announced that have not been read yet; None when it did not say."""
        if self._answer is None:
            return getattr(self.response.raw, "length_remaining", None)
        return self._answer.length

    def readinto(self, buffer: memoryview) -> int:
        """Read up to ``len(buffer)`` bytes into ``buffer``; 0 at the end of the body (or of the connection).

        Raises one of ``BODY_READ_ERRORS`` when the connection fails.
        """
        answer = self._answer
        if answer is None:
            data = self.response.raw.read1(len(buffer))
            buffer[:len(data)] = data
            return len(data)
        if not answer.length or answer.fp is None or not buffer:
            return 0
        count = answer.fp.readinto1(buffer[:answer.length])
        answer.length -= count  # http.client's own count, kept so it knows when the body is over
        if not answer.length:
            # The whole body is read: the connection can serve the next request, as urllib3 does itself.
            answer.close()
            self.response.raw.release_conn()
        return count

    def close(self) -> None:
        self.response.close()
