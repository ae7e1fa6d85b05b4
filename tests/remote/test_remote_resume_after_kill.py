"""A push and a pull killed half-way (SIGKILL) resume: finished parts are not sent or fetched again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sdhub
from sdhub.catalog import Catalog
from sdhub.config import Home, init_home
from sdhub.remote.download import part_path
from sdhub.remote.layout import blob_key
from sdhub.remote.settings import add_remote, get_remote
from sdhub.testing import factory
from sdhub.testing.s3_server import TEST_PART_SIZE as PART_SIZE
from sdhub.testing.s3_server import S3Server, SlowProxy




def _sdhub(home: Home, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SDHUB_REMOTE_CONNECTIONS": "2"}
    return subprocess.Popen([sys.executable, "-m", "sdhub", "--home", str(home.root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _wait_for(condition, process: subprocess.Popen, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the transfer never got half-way"
        time.sleep(0.05)


def _lora_home(root: Path, layout: str) -> Home:
    home = init_home(root, layout)
    home.folder("lora").mkdir(parents=True, exist_ok=True)
    factory.lora(home.folder("lora") / "ink_style.safetensors", seed=3)
    sdhub.scan(home)
    return home


def test_a_killed_push_resumes_without_resending_finished_parts(s3_env: S3Server, s3_url: str,
                                                                tmp_path: Path) -> None:
    home = _lora_home(tmp_path / "one", "a1111")
    with Catalog(home) as catalog:
        asset = catalog.find("ink_style")
    parts_total = -(-asset.size // PART_SIZE)
    assert parts_total >= 6
    proxy = SlowProxy(s3_env.port, rate=40_000)
    add_remote(home, "shared", s3_url, endpoint=proxy.url)
    key = get_remote(home, "shared").key(blob_key(asset.sha256))
    client = s3_env.client()

    def listed_parts() -> int:
        uploads = client.list_multipart_uploads(Bucket="library", Prefix=key).get("Uploads", [])
        return max((len(client.list_parts(Bucket="library", Key=key, UploadId=u["UploadId"]).get("Parts", []))
                    for u in uploads), default=0)

    process = _sdhub(home, "push", "--all")
    _wait_for(lambda: listed_parts() >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    proxy.close()
    finished = listed_parts()
    while (time.sleep(0.5), listed_parts())[1] != finished:  # a part the server was still storing
        finished = listed_parts()
    assert 2 <= finished < parts_total
    assert client.list_objects_v2(Bucket="library", Prefix=key).get("KeyCount", 0) == 0  # no blob yet

    add_remote(home, "shared", s3_url, endpoint=s3_env.url, replace=True)
    again = _sdhub(home, "push", "--all", "--json")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    sent = json.loads(out)["assets"][0]
    assert sent["parts_reused"] == finished and sent["parts_sent"] == parts_total - finished
    blob = client.get_object(Bucket="library", Key=key)["Body"].read()
    assert blob == Path(asset.files[0].path).read_bytes()


def test_a_killed_pull_resumes_from_its_part_file(s3_env: S3Server, s3_url: str, tmp_path: Path) -> None:
    one = _lora_home(tmp_path / "one", "a1111")
    add_remote(one, "shared", s3_url, endpoint=s3_env.url)
    sdhub.remote.push("shared", home=one, all_assets=True)
    with Catalog(one) as catalog:
        asset = catalog.find("ink_style")
    two = init_home(tmp_path / "two", "comfyui")
    proxy = SlowProxy(s3_env.port, rate=40_000)
    add_remote(two, "shared", s3_url, endpoint=proxy.url)
    part = part_path(two.folder("lora"), asset.sha256)

    process = _sdhub(two, "pull", "ink_style")
    _wait_for(lambda: part.exists() and part.stat().st_size >= 3 * PART_SIZE, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    proxy.close()
    kept = part.stat().st_size
    assert 3 * PART_SIZE <= kept < asset.size
    final = two.folder("lora") / "ink_style.safetensors"
    assert not final.exists()

    add_remote(two, "shared", s3_url, endpoint=s3_env.url, replace=True)
    again = _sdhub(two, "pull", "ink_style", "--json")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    pulled = json.loads(out)
    assert pulled["assets"][0]["resumed_from"] == kept - kept % PART_SIZE
    assert pulled["bytes_received"] == asset.size - pulled["assets"][0]["resumed_from"]
    assert final.read_bytes() == Path(asset.files[0].path).read_bytes()
    assert not part.exists()
