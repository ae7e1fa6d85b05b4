"""The downloader against the imitation Civitai: redirects, names, resume, verification, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from sdhub.errors import (
    AuthError, BadInputError, Interrupted, NetworkError, NotFoundError, SdhubError, UsageError, VerificationError,
)
from sdhub.progress import RecordingProgress
from sdhub.sources import download as downloader
from sdhub.sources import ramp
from sdhub.sources.civitai import CivitaiClient
from sdhub.sources.download import download
from sdhub.sources.http import HttpClient, RetryPolicy
from sdhub.sources.refs import CivitaiRef
from sdhub.testing.civitai_server import CivitaiServer

SAFETENSORS_ID, PICKLE_ID, VERSION_ID = 194, 5149, 1292


def payload(size: int, seed: int = 0) -> bytes:
    """Incompressible bytes standing in for a model file."""
    block = hashlib.sha256(str(seed).encode()).digest()
    out = bytearray()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


@pytest.fixture
def model_bytes() -> bytes:
    return payload(3_000_000)


@pytest.fixture
def served(civitai: CivitaiServer, fixture_json, model_bytes: bytes) -> CivitaiServer:
    civitai.add_model(fixture_json("model"), {SAFETENSORS_ID: model_bytes, PICKLE_ID: payload(1_000_000, 1)})
    return civitai


def fetch(folder: Path, *, token: str | None = None, format: str | None = None, connections: int | None = 1,
          progress=None, attempts: int = 4, sleep=lambda seconds: None):
    client = CivitaiClient(token=token, use_config_token=False,
                           policy=RetryPolicy(attempts=attempts, base_wait=0.01, sleep=sleep))
    choice = client.resolve(CivitaiRef(model_id=1102), format=format)
    kwargs = {"progress": progress} if progress is not None else {}
    return download(client.http, choice.download_url, folder, expected_sha256=choice.sha256,
                    fallback_name=choice.file["name"], connections=connections,
                    quarantine_dir=folder.parent / "quarantine", describe_error=client.describe_download_error,
                    **kwargs)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_follows_the_redirect_and_keeps_the_token_home(served: CivitaiServer, tmp_path: Path,
                                                               model_bytes: bytes) -> None:
    served.require_login.add(VERSION_ID)
    result = fetch(tmp_path / "models", token="good-token")
    assert result.path == tmp_path / "models" / "synthwavepunk_v3Alpha.safetensors"
    assert result.path.read_bytes() == model_bytes
    assert result.sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert files_in(tmp_path / "models") == ["synthwavepunk_v3Alpha.safetensors"]  # no .part, no lock left
    site = [r for r in served.requests_to("site") if r.path.startswith("/api/download/")]
    storage = served.requests_to("storage")
    assert site and all(r.headers.get("Authorization") == "Bearer good-token" for r in site)
    assert storage and all("Authorization" not in r.headers for r in storage)
    assert all("good-token" not in r.path for r in served.log)


def test_progress_reports_bytes_of_a_known_total(served: CivitaiServer, tmp_path: Path, model_bytes: bytes) -> None:
    progress = RecordingProgress()
    fetch(tmp_path, progress=progress)
    task = progress.tasks[-1]
    assert task.unit == "bytes" and task.total == len(model_bytes)
    assert task.completed == len(model_bytes) and task.finished


def test_utf8_file_names_from_content_disposition(served: CivitaiServer, tmp_path: Path) -> None:
    served.served(SAFETENSORS_ID).disposition = (
        "attachment; filename=\"fallback.safetensors\"; filename*=UTF-8''%E6%A8%A1%E5%9E%8B%20v2.safetensors")
    assert fetch(tmp_path).path.name == "模型 v2.safetensors"


@pytest.mark.parametrize("disposition, expected", [
    ('attachment; filename="../../evil.safetensors"', "evil.safetensors"),
    ("attachment; filename*=UTF-8''..%2F..%2F.bashrc", "bashrc.safetensors"),
    ('attachment; filename="..\\\\..\\\\run.sh"', "run_sh.safetensors"),
    ('attachment; filename="a\x01b\x7f.ckpt"', "ab.ckpt"),
])
def test_server_chosen_names_cannot_leave_the_folder(served: CivitaiServer, tmp_path: Path, disposition: str,
                                                    expected: str) -> None:
    served.served(SAFETENSORS_ID).disposition = disposition
    folder = tmp_path / "deep" / "models"
    result = fetch(folder)
    assert result.path == folder / expected
    assert files_in(folder) == [expected]
    assert files_in(tmp_path) == ["deep"] and files_in(tmp_path / "deep") == ["models"]


def test_a_dropped_connection_resumes_with_a_range(served: CivitaiServer, tmp_path: Path, model_bytes: bytes) -> None:
    served.served(SAFETENSORS_ID).drop_after = 1_200_000
    result = fetch(tmp_path)
    assert result.path.read_bytes() == model_bytes
    ranges = [r.headers.get("Range") for r in served.requests_to("storage")]
    assert ranges[0] is None and ranges[1] == "bytes=1200000-"
    # Each retry asks Civitai again for a fresh signed address.
    assert len([r for r in served.requests_to("site") if r.path.startswith("/api/download/")]) == 2


def test_a_body_shorter_than_announced_is_never_placed(served: CivitaiServer, tmp_path: Path,
                                                       model_bytes: bytes) -> None:
    served.served(SAFETENSORS_ID).drop_after = 1_000_000
    with pytest.raises(NetworkError, match="kept dropping.*run the same command to resume"):
        fetch(tmp_path, attempts=1)
    names = files_in(tmp_path)
    assert "synthwavepunk_v3Alpha.safetensors" not in names
    parts = [n for n in names if n.endswith(".part")]
    assert len(parts) == 1 and (tmp_path / parts[0]).stat().st_size == 1_000_000
    # Running again once the server behaves finishes from the .part.
    served.served(SAFETENSORS_ID).drop_after = None
    result = fetch(tmp_path)
    assert result.resumed_from == 1_000_000 and result.path.read_bytes() == model_bytes
    assert served.requests_to("storage")[-1].headers["Range"] == "bytes=1000000-"
    assert files_in(tmp_path) == ["synthwavepunk_v3Alpha.safetensors"]


def test_a_server_ignoring_range_restarts_cleanly(served: CivitaiServer, tmp_path: Path, model_bytes: bytes) -> None:
    served.served(SAFETENSORS_ID).drop_after = 1_000_000
    with pytest.raises(NetworkError):
        fetch(tmp_path, attempts=1)
    served.served(SAFETENSORS_ID).drop_after = None
    served.served(SAFETENSORS_ID).ignore_range = True
    progress = RecordingProgress()
    result = fetch(tmp_path, progress=progress)
    assert result.path.read_bytes() == model_bytes
    assert result.resumed_from == 0
    assert any("cannot resume" in m for m in progress.messages)
    assert served.requests_to("storage")[-1].headers.get("Range") == "bytes=1000000-"


def test_bytes_that_do_not_match_the_published_hash_are_quarantined(civitai: CivitaiServer, fixture_json,
                                                                    tmp_path: Path) -> None:
    civitai.add_model(fixture_json("model"), {SAFETENSORS_ID: payload(500_000), PICKLE_ID: b"x"},
                      wrong_hash={SAFETENSORS_ID})
    folder = tmp_path / "models"
    with pytest.raises(VerificationError) as caught:
        fetch(folder)
    message = str(caught.value)
    assert "SHA-256" in message and "not placed" in message and "quarantine" in message
    assert files_in(folder) == []
    quarantined = list((tmp_path / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].read_bytes() == payload(500_000)


def test_a_login_page_is_never_saved_as_a_model(served: CivitaiServer, tmp_path: Path) -> None:
    served.login_page_for.add(VERSION_ID)
    with pytest.raises(AuthError, match="login page.*CIVITAI_TOKEN"):
        fetch(tmp_path / "models")
    assert files_in(tmp_path / "models") == []


@pytest.mark.parametrize("body", [
    b'{"error": "Unauthorized", "message": "The creator of this asset requires you to be logged in"}',
    b"<!DOCTYPE html><html><body>Please sign in</body></html>",
])
def test_error_bodies_sent_as_files_are_refused(served: CivitaiServer, tmp_path: Path, body: bytes) -> None:
    served.served(SAFETENSORS_ID).body_override = (body, "application/octet-stream")
    with pytest.raises((AuthError, BadInputError)):
        fetch(tmp_path / "models")
    assert files_in(tmp_path / "models") == []


def test_login_required_without_a_token_says_what_to_do(served: CivitaiServer, tmp_path: Path) -> None:
    served.require_login.add(VERSION_ID)
    with pytest.raises(AuthError) as caught:
        fetch(tmp_path)
    assert "requires you to be logged in" in str(caught.value) and "CIVITAI_TOKEN" in str(caught.value)
    assert files_in(tmp_path) == []


def test_a_rejected_token_is_not_repeated_in_the_message(served: CivitaiServer, tmp_path: Path) -> None:
    served.require_login.add(VERSION_ID)
    with pytest.raises(AuthError) as caught:
        fetch(tmp_path, token="sk-leaky-123")
    assert "did not accept the API token" in str(caught.value)
    assert "sk-leaky-123" not in str(caught.value)


def test_early_access_says_until_when_and_what_to_do(served: CivitaiServer, tmp_path: Path) -> None:
    served.early_access[VERSION_ID] = "2030-01-01T00:00:00.000Z"
    with pytest.raises(AuthError, match="Early Access until 2030-01-01.*buy early access"):
        fetch(tmp_path, token="good-token")


def test_a_429_on_the_download_is_retried(served: CivitaiServer, tmp_path: Path, model_bytes: bytes) -> None:
    served.rate_limit(2, retry_after=1, prefix="/api/download/")
    assert fetch(tmp_path).path.read_bytes() == model_bytes


def test_a_missing_file_choice_is_not_found(served: CivitaiServer, tmp_path: Path) -> None:
    client = CivitaiClient(use_config_token=False)
    url = f"{served.url}/api/download/models/{VERSION_ID}?format=GGUF"
    with pytest.raises(NotFoundError, match="File not found"):
        download(client.http, url, tmp_path, describe_error=client.describe_download_error)


def test_a_different_file_under_the_same_name_gets_a_suffix(served: CivitaiServer, tmp_path: Path,
                                                            model_bytes: bytes) -> None:
    (tmp_path / "synthwavepunk_v3Alpha.safetensors").write_bytes(b"someone else's model")
    result = fetch(tmp_path)
    assert result.path.name == "synthwavepunk_v3Alpha-2.safetensors" and not result.reused
    assert (tmp_path / "synthwavepunk_v3Alpha.safetensors").read_bytes() == b"someone else's model"
    again = fetch(tmp_path)
    assert again.reused and again.path.name == "synthwavepunk_v3Alpha-2.safetensors"
    assert files_in(tmp_path) == ["synthwavepunk_v3Alpha-2.safetensors", "synthwavepunk_v3Alpha.safetensors"]


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of 256 KiB, so a 3 MB file is shared among connections as a large one would be."""
    monkeypatch.setattr(downloader, "MIN_SEGMENT_BYTES", 256 * 1024)


@pytest.fixture
def slow_enough_for_company(small_pieces: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection counts as slow, so connections are added after the first window."""
    monkeypatch.setattr(ramp, "FAST_CONNECTION_BYTES_PER_SECOND", 1e15)


def _release_when_asked(served: CivitaiServer, requests: int) -> threading.Thread:
    """Let the held download go on once ``requests`` have reached the storage host (or after 60 s)."""
    def wait() -> None:
        deadline = time.monotonic() + 60
        while len(served.requests_to("storage")) < requests and time.monotonic() < deadline:
            time.sleep(0.01)
        served.served(SAFETENSORS_ID).release.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def _ranges_asked(served: CivitaiServer) -> list[tuple[int, int | None]]:
    """The byte ranges the storage host was asked for, in order (``None`` for an open end)."""
    asked = []
    for record in served.requests_to("storage"):
        start, end = record.headers["Range"][len("bytes="):].split("-")
        asked.append((int(start), int(end) + 1 if end else None))
    return asked


def test_parallel_ranges_when_the_server_allows_them(served: CivitaiServer, tmp_path: Path, model_bytes: bytes,
                                                     slow_enough_for_company: None) -> None:
    # The first answer stops after its first blocks until the three added connections have asked, so
    # on a fast machine it cannot finish the whole file alone.
    served.served(SAFETENSORS_ID).hold_at = 2 * 256 * 1024 + 1
    _release_when_asked(served, 4)
    result = fetch(tmp_path, connections=4)
    assert result.connections == 4 and result.path.read_bytes() == model_bytes
    # The first request asks for "bytes=0-" (a 206 proves the server takes ranges); the added
    # connections ask for pieces no other connection fetched.
    asked = _ranges_asked(served)
    assert asked[0] == (0, None)
    pieces = sorted(asked[1:])
    assert pieces and all(end is not None and start < end <= len(model_bytes) for start, end in pieces)
    assert all(end <= following for (_, end), (following, _) in zip(pieces, pieces[1:]))
    assert pieces[-1][1] == len(model_bytes)
    # The rest of the first answer was cut into blocks just ahead of where it had got to (not halves far
    # apart), so the hash takes the added connections' bytes from memory.
    block = downloader.MIN_SEGMENT_BYTES
    assert all(end - start <= block for start, end in pieces)  # type: ignore[operator]
    assert pieces[0][0] <= 2 * block + 1 + downloader.READ_CLAIM_BYTES + block


@pytest.mark.parametrize("status", [429, 503])
def test_an_added_connection_the_server_refuses_gives_its_piece_back(served: CivitaiServer, tmp_path: Path,
                                                                     model_bytes: bytes, status: int,
                                                                     slow_enough_for_company: None) -> None:
    served.served(SAFETENSORS_ID).connection_limit = 1
    served.served(SAFETENSORS_ID).refusal_status = status
    # The first answer waits until the three added connections have asked (and been refused), so it is
    # still open when they ask.
    served.served(SAFETENSORS_ID).hold_at = 256 * 1024
    _release_when_asked(served, 4)
    waits: list[float] = []
    result = fetch(tmp_path, connections=4, sleep=waits.append)
    assert result.path.read_bytes() == model_bytes
    assert result.sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert result.connections == 1
    # Each added connection asked once, without retries or backoff; the pieces they gave back were read on
    # the first answer, which runs straight into them: nothing was asked for again.
    assert waits == []
    asked = _ranges_asked(served)
    assert asked[0] == (0, None) and len(asked) == 4


def test_by_default_a_throttled_connection_gets_company(served: CivitaiServer, tmp_path: Path, model_bytes: bytes,
                                                        small_pieces: None) -> None:
    # 500 kB/s per connection, like a throttling CDN: one connection would need six seconds, so the
    # first measurement (a twentieth of a second) always finds it slow, whatever the machine's load.
    served.served(SAFETENSORS_ID).trickle = 500_000
    result = fetch(tmp_path, connections=None)
    assert result.connections > 1 and result.path.read_bytes() == model_bytes
    assert result.sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert result.connections <= downloader.DEFAULT_MAX_CONNECTIONS


def test_the_connections_option_caps_the_company(served: CivitaiServer, tmp_path: Path, model_bytes: bytes,
                                                 small_pieces: None) -> None:
    served.served(SAFETENSORS_ID).trickle = 500_000
    result = fetch(tmp_path, connections=2)
    assert result.connections == 2 and result.path.read_bytes() == model_bytes


def test_one_connection_when_asked_for_one(served: CivitaiServer, tmp_path: Path, model_bytes: bytes,
                                           small_pieces: None) -> None:
    served.served(SAFETENSORS_ID).trickle = 2_000_000
    result = fetch(tmp_path, connections=1)
    assert result.connections == 1 and result.path.read_bytes() == model_bytes
    # One plain request: no probe for ranges, nothing else asked.
    assert [r.headers.get("Range") for r in served.requests_to("storage")] == [None]


def test_one_connection_when_the_server_refuses_ranges(served: CivitaiServer, tmp_path: Path, fixture_json,
                                                       small_pieces: None) -> None:
    content = payload(600_000, 3)
    served.add_model(fixture_json("model"), {SAFETENSORS_ID: content})
    served.served(SAFETENSORS_ID).ignore_range = True  # it still says "Accept-Ranges: bytes"
    served.served(SAFETENSORS_ID).trickle = 1_000_000
    result = fetch(tmp_path, connections=None)
    assert result.connections == 1 and result.path.read_bytes() == content
    assert len(served.requests_to("storage")) == 1


def test_a_fast_connection_gets_no_company(served: CivitaiServer, tmp_path: Path, model_bytes: bytes,
                                           small_pieces: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ramp, "FAST_CONNECTION_BYTES_PER_SECOND", 1.0)  # every connection is "fast"
    served.served(SAFETENSORS_ID).trickle = 2_000_000
    result = fetch(tmp_path, connections=4)
    assert result.connections == 1 and result.path.read_bytes() == model_bytes
    # The one connection reads the whole answer it opened, piece after piece.
    assert [r.headers.get("Range") for r in served.requests_to("storage")] == ["bytes=0-"]


def test_a_fast_connection_fetches_the_whole_file_as_one_piece(served: CivitaiServer, tmp_path: Path,
                                                               model_bytes: bytes, small_pieces: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ramp, "FAST_CONNECTION_BYTES_PER_SECOND", 1.0)  # every connection is "fast"
    served.served(SAFETENSORS_ID).trickle = 2_000_000
    with pytest.raises(Interrupted):
        fetch(tmp_path, connections=None, progress=CancelAfter(1_000_000))
    # What the stopped download kept: one piece, the whole file (as with --connections 1), never cut up.
    state_file = next(tmp_path.glob(".sdhub-*.part.json"))
    segments = json.loads(state_file.read_text(encoding="utf-8"))["segments"]
    assert len(segments) == 1 and segments[0][:2] == [0, len(model_bytes)] and segments[0][2] >= 1_000_000
    served.served(SAFETENSORS_ID).trickle = None
    before = len(served.requests_to("storage"))
    result = fetch(tmp_path, connections=None)
    assert result.path.read_bytes() == model_bytes and result.resumed_from == segments[0][2]
    # Resumed as any client would: one request for the rest.
    assert [r.headers.get("Range") for r in served.requests_to("storage")[before:]] == [f"bytes={segments[0][2]}-"]


def test_a_failed_piece_is_retried_with_backoff_and_verified(served: CivitaiServer, tmp_path: Path,
                                                            model_bytes: bytes, slow_enough_for_company: None) -> None:
    served.served(SAFETENSORS_ID).drop_after = 2_000_000
    served.served(SAFETENSORS_ID).drops = 2  # the first answer (read only up to its first piece) uses one
    served.served(SAFETENSORS_ID).trickle = 2_000_000
    waits: list[float] = []
    result = fetch(tmp_path, connections=None, sleep=waits.append)
    assert result.path.read_bytes() == model_bytes
    assert result.sha256 == hashlib.sha256(model_bytes).hexdigest()
    # The failure waits (the first backoff step) before the piece is asked for again from where it stopped.
    assert waits == [0.01]
    assert [start for start, _ in _ranges_asked(served)].count(2_000_000) == 1


def test_a_killed_parallel_download_resumes_its_pieces(served: CivitaiServer, tmp_path: Path, model_bytes: bytes,
                                                       slow_enough_for_company: None) -> None:
    # Slow enough that even eight connections are far from the end when the download is stopped.
    served.served(SAFETENSORS_ID).trickle = 250_000
    with pytest.raises(Interrupted):
        fetch(tmp_path, connections=None, progress=CancelAfter(1_200_000))
    served.served(SAFETENSORS_ID).trickle = None
    before = len(served.requests_to("storage"))
    result = fetch(tmp_path, connections=None)
    assert result.path.read_bytes() == model_bytes and result.resumed_from >= 1_200_000
    asked = [r.headers.get("Range") for r in served.requests_to("storage")[before:]]
    assert asked and None not in asked and "bytes=0-" not in asked  # only the missing parts were fetched again


def test_several_downloads_at_once(served: CivitaiServer, tmp_path: Path, model_bytes: bytes) -> None:
    results, errors = [], []

    def run(format: str | None) -> None:
        try:
            results.append(fetch(tmp_path, format=format))
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f,)) for f in (None, "ckpt", None, "ckpt")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert files_in(tmp_path) == ["synthwavepunk_v3Alpha.ckpt", "synthwavepunk_v3Alpha.safetensors"]
    assert (tmp_path / "synthwavepunk_v3Alpha.safetensors").read_bytes() == model_bytes
    assert (tmp_path / "synthwavepunk_v3Alpha.ckpt").read_bytes() == payload(1_000_000, 1)
    assert sorted(r.reused for r in results) == [False, False, True, True]


def test_plain_urls_take_their_name_from_the_path(served: CivitaiServer, tmp_path: Path, model_bytes: bytes) -> None:
    url = served.storage_location(served.served(SAFETENSORS_ID))
    served.served(SAFETENSORS_ID).disposition = "inline"
    result = download(HttpClient(), url, tmp_path)
    assert result.name == "synthwavepunk_v3Alpha.safetensors"
    assert result.path.read_bytes() == model_bytes and result.sha256 == hashlib.sha256(model_bytes).hexdigest()


def test_a_token_never_follows_a_redirect_to_another_host(served: CivitaiServer, tmp_path: Path) -> None:
    # The storage host rejects requests carrying Authorization beside the signature (as S3 does),
    # so a leak would fail the download; the log shows it never arrived there either.
    client = HttpClient(token="site-token", token_origin=served.url)
    url = f"{served.url}/api/download/models/{VERSION_ID}"
    download(client, url, tmp_path)
    assert served.requests_to("site")[-1].headers["Authorization"] == "Bearer site-token"
    assert "Authorization" not in served.requests_to("storage")[-1].headers
    assert os.listdir(tmp_path) == ["synthwavepunk_v3Alpha.safetensors"]


class CancelAfter(RecordingProgress):
    """A front-end that cancels the work at its first progress report after ``bytes_seen`` bytes."""

    def __init__(self, bytes_seen: int) -> None:
        super().__init__()
        self.bytes_seen = bytes_seen

    def task(self, description, total=None, unit=""):
        task = super().task(description, total, unit)
        original = task.update

        def update(**kwargs):
            original(**kwargs)
            if (kwargs.get("completed") or 0) >= self.bytes_seen:
                raise Interrupted("cancelled")

        task.update = update  # type: ignore[method-assign]
        return task


def test_a_cancelled_download_keeps_its_part_and_resumes(served: CivitaiServer, tmp_path: Path,
                                                         model_bytes: bytes) -> None:
    served.served(SAFETENSORS_ID).trickle = 2_000_000
    with pytest.raises(Interrupted):
        fetch(tmp_path, progress=CancelAfter(500_000))
    assert [n for n in files_in(tmp_path) if not n.startswith(".sdhub-")] == []
    served.served(SAFETENSORS_ID).trickle = None
    result = fetch(tmp_path)
    assert result.resumed_from >= 500_000 and result.path.read_bytes() == model_bytes


@pytest.fixture
def file_size_limit():
    """Set a limit on the size of files this process writes (as a full disk would stop it); lifted afterwards."""
    resource = pytest.importorskip("resource")
    signal = pytest.importorskip("signal")
    if not hasattr(signal, "SIGXFSZ"):
        pytest.skip("no file size limit signal on this system")
    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write, not a killed process

    def limit(size: int | None) -> None:
        """Files may grow to ``size`` bytes (None: as before)."""
        resource.setrlimit(resource.RLIMIT_FSIZE, (previous_limit[0] if size is None else size, previous_limit[1]))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
    signal.signal(signal.SIGXFSZ, previous_handler)


def test_a_write_that_fails_stops_the_download_and_keeps_what_was_written(served: CivitaiServer, tmp_path: Path,
                                                                          fixture_json, file_size_limit) -> None:
    content = payload(3 * downloader.CHUNK_SIZE, 7)
    served.add_model(fixture_json("model"), {SAFETENSORS_ID: content})
    file_size_limit(downloader.CHUNK_SIZE + downloader.CHUNK_SIZE // 4)  # the second buffer cannot be written
    with pytest.raises(SdhubError, match="cannot write in .*File too large"):
        fetch(tmp_path, connections=1)
    file_size_limit(None)
    result = fetch(tmp_path, connections=1)
    # Only the buffer written whole counted as kept: the download resumes right after it.
    assert result.resumed_from == downloader.CHUNK_SIZE and result.path.read_bytes() == content


def test_a_target_folder_that_cannot_exist_is_one_clear_error(served: CivitaiServer, tmp_path: Path) -> None:
    (tmp_path / "models").write_text("a file where the folder should be")
    with pytest.raises(UsageError, match="cannot create the folder .*models"):
        fetch(tmp_path / "models" / "checkpoints")


def test_a_body_of_unknown_length_is_taken_whole(served: CivitaiServer, tmp_path: Path, model_bytes: bytes) -> None:
    served.served(SAFETENSORS_ID).chunked = True
    progress = RecordingProgress()
    result = fetch(tmp_path, progress=progress, connections=4)
    assert result.path.read_bytes() == model_bytes and result.connections == 1
    assert progress.tasks[-1].completed == len(model_bytes)


def test_a_compressed_body_despite_asking_for_identity_is_refused_and_nothing_saved(
        served: CivitaiServer, tmp_path: Path) -> None:
    served.served(SAFETENSORS_ID).gzip = True
    with pytest.raises(NetworkError, match="Content-Encoding: gzip"):
        fetch(tmp_path)
    assert files_in(tmp_path) == []
    storage = served.requests_to("storage")
    assert storage and all(r.headers.get("Accept-Encoding") == "identity" for r in storage)


def test_retry_after_may_be_an_http_date() -> None:
    import email.utils
    import time as clock

    import requests

    from sdhub.sources.http import retry_after_seconds

    response = requests.Response()
    response.headers["Retry-After"] = email.utils.formatdate(clock.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(response) <= 31
    response.headers["Retry-After"] = "12"
    assert retry_after_seconds(response) == 12
    response.headers["Retry-After"] = "soon"
    assert retry_after_seconds(response) is None


def test_a_download_stopped_through_its_progress_says_what_it_kept(served: CivitaiServer, tmp_path: Path,
                                                                   model_bytes: bytes) -> None:
    from sdhub.testing.stopping import CancelWhen

    served.served(SAFETENSORS_ID).trickle = 2_000_000
    progress = CancelWhen(lambda task: task.completed >= 500_000)
    with pytest.raises(Interrupted) as stopped:
        fetch(tmp_path, progress=progress)
    said = re.fullmatch(r"cancelled; (\d+) bytes of synthwavepunk_v3Alpha.safetensors kept in (\S+\.part): "
                        r"run the same command to resume", str(stopped.value))
    assert said, stopped.value
    kept, part = int(said[1]), tmp_path / said[2]
    assert kept >= 500_000 and part.stat().st_size >= kept
    served.served(SAFETENSORS_ID).trickle = None
    assert fetch(tmp_path).resumed_from == kept
