"""Imitation Civitai and Hugging Face servers on 127.0.0.1, and the fixtures' example answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sdhub.testing.civitai_server import CivitaiServer

FIXTURES = Path(__file__).parent / "fixtures" / "civitai"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The imitation servers are on 127.0.0.1: a proxy configured on the machine must not get in between."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fixture_json() -> Callable[[str], dict[str, Any]]:
    """Load one captured Civitai answer from tests/sources/fixtures/civitai/."""
    return lambda name: json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture
def civitai(monkeypatch: pytest.MonkeyPatch) -> Iterator[CivitaiServer]:
    """A running imitation Civitai (site + storage host); SDHUB_CIVITAI_URL points at it."""
    with CivitaiServer() as server:
        monkeypatch.setenv("SDHUB_CIVITAI_URL", server.url)
        # Retry waits are real sleeps; keep them short so failure paths stay fast.
        monkeypatch.setenv("SDHUB_HTTP_MAX_WAIT", "0.05")
        yield server


