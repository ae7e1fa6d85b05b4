"""Shared fixtures: homes in temporary folders and an in-process CLI runner."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from sdhub.cli.state import STATE
from sdhub.config import Home, init_home
from sdhub.testing.hub_server import HubServer
from sdhub.testing.s3_server import ACCESS_KEY, SECRET_KEY, TEST_PART_SIZE, S3Server


def pytest_configure(config: pytest.Config) -> None:
    # The suite runs one worker per core (pytest -n 2); torch's own thread pool on top of that
    # only makes the workers fight over the same cores.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's real home, tokens or Hugging Face cache, or reaches the network."""
    for name in ("SDHUB_HOME", "CIVITAI_TOKEN", "HF_TOKEN", "SDHUB_CIVITAI_URL"):
        monkeypatch.delenv(name, raising=False)
    user_dir = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("XDG_DATA_HOME", str(user_dir / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_dir / "config"))
    monkeypatch.setenv("HF_HOME", str(user_dir / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    STATE.home = None
    STATE.debug = False


@pytest.fixture
def tmp_home(tmp_path: Path) -> Home:
    """A fresh, empty home in sdhub's own layout."""
    return init_home(tmp_path / "home", "sdhub")


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run ``sdhub ARGS`` in-process and return its exit code, stdout and stderr."""
    from sdhub.cli.app import main

    def run(*args: str | os.PathLike[str], cwd: Path | None = None) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        previous = Path.cwd()
        os.chdir(cwd or tmp_path)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main([str(a) for a in args])
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            os.chdir(previous)
            STATE.home = None
            STATE.debug = False
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture(scope="session")
def pipeline_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A tiny SD1 diffusers pipeline as diffusers saves it: each file's path inside the folder -> bytes."""
    from diffusers import StableDiffusionPipeline

    from sdhub.testing import factory

    folder = tmp_path_factory.mktemp("pipeline")
    checkpoint = factory.sd1_checkpoint(folder / "sd1.safetensors")
    config = factory.diffusers_config_dir(folder / "sd1-config")
    pipeline = StableDiffusionPipeline.from_single_file(str(checkpoint), config=str(config), local_files_only=True,
                                                        safety_checker=None)
    saved = folder / "saved"
    pipeline.save_pretrained(saved)
    return {p.relative_to(saved).as_posix(): p.read_bytes() for p in sorted(saved.rglob("*")) if p.is_file()}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running imitation Hugging Face Hub; HF_ENDPOINT points at it and offline mode is off."""
    import huggingface_hub.constants

    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        # huggingface_hub reads HF_HUB_OFFLINE once at import; this conftest sets it for every other test.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield server


_s3_prefixes = itertools.count()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real moto S3 server, one per session (the remote and TUI tests share it)."""
    # Small parts, so tiny test files go up in several parts (the server is told to accept them).
    with S3Server("moto", min_part_size=TEST_PART_SIZE) as server:
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
    monkeypatch.setenv("SDHUB_REMOTE_PART_SIZE", str(TEST_PART_SIZE))
    monkeypatch.setenv("SDHUB_REMOTE_CONNECTIONS", "4")
    return s3


@pytest.fixture
def s3_url() -> str:
    """A fresh prefix in the session's bucket: each test sees an empty remote."""
    return f"s3://library/t{next(_s3_prefixes)}"
