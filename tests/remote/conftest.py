"""A real moto S3 server for the remote tests, one per session; every test gets its own prefix in its bucket."""

from __future__ import annotations

import itertools
from typing import Iterator

import pytest

from sdhub.testing.s3_server import ACCESS_KEY, SECRET_KEY, TEST_PART_SIZE, S3Server

#: Small parts, so tiny test files go up in several parts (the server is told to accept them).
PART_SIZE = TEST_PART_SIZE
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    with S3Server("moto", min_part_size=PART_SIZE) as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """AWS credentials for the server in the environment (as a user would set them) and small parts."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("SDHUB_REMOTE_PART_SIZE", str(PART_SIZE))
    monkeypatch.setenv("SDHUB_REMOTE_CONNECTIONS", "4")
    return s3


@pytest.fixture
def s3_url() -> str:
    """A fresh prefix in the session's bucket: each test sees an empty remote."""
    return f"s3://library/t{next(_prefixes)}"
