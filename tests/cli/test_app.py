"""The ``sdhub`` command itself: usage mistakes, version, help."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args, message", [
    (["hash", "--bogus"], "No such option: --bogus"),
    (["bogus"], "No such command 'bogus'"),
    (["hash"], "Missing argument"),
])
def test_usage_mistakes_exit_2_with_the_reason_and_no_internal_error(run_cli, args, message) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr and "internal error" not in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_version_and_help_exit_0(run_cli) -> None:
    version = run_cli("--version")
    assert version.exit_code == 0 and version.stdout.startswith("sdhub ")
    assert run_cli("hash", "--help").exit_code == 0


def test_console_script_reports_a_usage_mistake_in_a_fresh_process() -> None:
    result = subprocess.run([sys.executable, "-c", "from sdhub.cli.app import main; main()", "hash", "--bogus"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "No such option: --bogus" in result.stderr
