"""Two writers at once lose nothing; corrupt blobs are refused; errors are one line and never show credentials."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import sdhub
from sdhub.catalog import Catalog
from sdhub.config import Home, init_home
from sdhub.errors import AuthError, NetworkError, NotFoundError, VerificationError
from sdhub.remote.bucket import Bucket
from sdhub.remote.index import read_index
from sdhub.remote.layout import blob_key
from sdhub.remote.settings import get_remote
from sdhub.testing import factory
from sdhub.testing.s3_server import SECRET_KEY, S3Server


def _home_with_loras(root: Path, seeds: range, url: str, endpoint: str) -> Home:
    home = init_home(root, "a1111")
    folder = home.folder("lora")
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        factory.lora(folder / f"style_{seed}.safetensors", seed=seed)
    sdhub.scan(home)
    sdhub.remote.add_remote(home, "shared", url, endpoint=endpoint)
    return home


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional-writes", "deltas"])
def test_two_machines_pushing_at_once_lose_nothing(s3_env: S3Server, s3_url: str, tmp_path: Path,
                                                   conditional: bool) -> None:
    homes = [_home_with_loras(tmp_path / f"m{n}", range(n * 4, n * 4 + 4), s3_url, s3_env.url) for n in (0, 1)]
    if not conditional:  # as on a store that ignores If-Match (rclone serve s3): per-writer deltas
        from sdhub.remote.settings import record_conditional_writes
        for home in homes:
            record_conditional_writes(home, "shared", False)
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def push(home: Home) -> None:
        barrier.wait()
        try:
            reports.append(sdhub.remote.push("shared", home=home, all_assets=True))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=push, args=(home,)) for home in homes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    expected = set()
    for home in homes:
        with Catalog(home) as catalog:
            expected |= {a.sha256 for a in catalog.list_assets()}
    index = read_index(Bucket(get_remote(homes[0], "shared")))
    assert set(index.assets) == expected and len(expected) == 8
    if conditional:
        assert get_remote(homes[0], "shared").conditional_writes is True
    else:
        assert index.deltas == 2


def test_a_corrupt_blob_is_refused_and_nothing_is_left(s3_env: S3Server, s3_url: str, tmp_path: Path,
                                                       run_cli) -> None:
    one = _home_with_loras(tmp_path / "one", range(1), s3_url, s3_env.url)
    two = init_home(tmp_path / "two", "comfyui")
    sdhub.remote.add_remote(two, "shared", s3_url, endpoint=s3_env.url)
    sdhub.remote.push("shared", home=one, all_assets=True)
    with Catalog(one) as catalog:
        asset = catalog.list_assets()[0]
    remote = get_remote(one, "shared")
    good = s3_env.client().get_object(Bucket="library", Key=remote.key(blob_key(asset.sha256)))["Body"].read()
    bad = bytes([good[0] ^ 0xFF]) + good[1:]
    s3_env.client().put_object(Bucket="library", Key=remote.key(blob_key(asset.sha256)), Body=bad)

    result = run_cli("--home", two.root, "pull", "--all")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "is corrupt" in result.stderr and "nothing was written" in result.stderr
    folder = two.folder("lora")
    assert not folder.exists() or [p.name for p in folder.iterdir()] == []
    with Catalog(two) as catalog:
        assert catalog.list_assets() == []

    with pytest.raises(VerificationError):  # the same through the API; a shorter blob too
        s3_env.client().put_object(Bucket="library", Key=remote.key(blob_key(asset.sha256)), Body=good[:-5])
        sdhub.remote.pull("shared", home=two, all_assets=True)


def test_errors_are_one_line_and_never_show_the_secret(s3_env: S3Server, s3_url: str, tmp_path: Path, run_cli,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    home = _home_with_loras(tmp_path / "one", range(1), s3_url, s3_env.url)
    outputs = [run_cli("--home", home.root, "push", "--all", "--json"),
               run_cli("--home", home.root, "remote", "ls", "--json"),
               run_cli("--home", home.root, "ls", "--remote", "shared", "--json")]
    assert all(o.exit_code == 0 for o in outputs)

    sdhub.remote.add_remote(home, "nobucket", "s3://missing-bucket/x", endpoint=s3_env.url)
    with pytest.raises(NotFoundError, match="bucket 'missing-bucket' does not exist"):
        sdhub.remote.push("nobucket", home=home, all_assets=True)
    sdhub.remote.add_remote(home, "down", "s3://library/x", endpoint="http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    outputs.append(run_cli("--home", home.root, "push", "--all", "--remote", "down"))
    assert outputs[-1].exit_code == 1 and "cannot reach the remote down" in outputs[-1].stderr
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + SECRET_KEY)
    outputs.append(run_cli("--home", home.root, "push", "--all", "--remote", "shared"))
    # moto accepts any key pair; a store that checks says 403, which reads as one line too
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AuthError, match="no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"):
        sdhub.remote.push("shared", home=home, all_assets=True)
    outputs.append(run_cli("--home", home.root, "push", "--all", "--remote", "shared"))
    assert outputs[-1].exit_code == 1 and outputs[-1].stderr.count("\n") == 1

    for output in outputs:
        assert SECRET_KEY not in output.stdout + output.stderr
    for path in home.root.rglob("*"):
        if path.is_file():
            assert SECRET_KEY.encode() not in path.read_bytes(), path
    assert json.loads((home.catalog_dir / "settings.json").read_text())["remotes"]["shared"].keys() == \
        {"url", "endpoint", "profile", "conditional_writes"}


def test_network_errors_name_the_remote(s3_env: S3Server, tmp_path: Path) -> None:
    home = init_home(tmp_path / "h", "sdhub")
    sdhub.remote.add_remote(home, "down", "s3://library/x", endpoint="http://127.0.0.1:9")
    with pytest.raises(NetworkError, match="cannot reach the remote down at http://127.0.0.1:9"):
        sdhub.remote.remote_assets("down", home)


def test_a_blob_of_the_wrong_size_or_missing_is_refused_and_nothing_is_left(s3_env: S3Server, s3_url: str,
                                                                             tmp_path: Path, run_cli) -> None:
    one = _home_with_loras(tmp_path / "one", range(1), s3_url, s3_env.url)
    two = init_home(tmp_path / "two", "comfyui")
    sdhub.remote.add_remote(two, "shared", s3_url, endpoint=s3_env.url)
    sdhub.remote.push("shared", home=one, all_assets=True)
    with Catalog(one) as catalog:
        asset = catalog.list_assets()[0]
    key = get_remote(one, "shared").key(blob_key(asset.sha256))
    good = s3_env.client().get_object(Bucket="library", Key=key)["Body"].read()
    folder = two.folder("lora")

    s3_env.client().put_object(Bucket="library", Key=key, Body=good[:-100])
    result = run_cli("--home", two.root, "pull", "--all")
    assert result.exit_code == 1
    assert f"{len(good) - 100} bytes, not the {len(good)}" in result.stderr and "nothing was written" in result.stderr
    assert not folder.exists() or [p.name for p in folder.iterdir()] == []

    s3_env.client().delete_object(Bucket="library", Key=key)
    result = run_cli("--home", two.root, "pull", "--all")
    assert result.exit_code != 0 and "is missing from the remote shared" in result.stderr
    assert not folder.exists() or [p.name for p in folder.iterdir()] == []
    with Catalog(two) as catalog:
        assert catalog.list_assets() == []
