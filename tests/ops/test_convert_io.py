"""How convert and prune read and write: each source byte read once, the output in whole blocks.

The writer reads a source's tensor bytes once, hashes them on the way through for
``sdhub.source_sha256`` and writes page-aligned blocks (directly to disk where the file system
allows). These tests make the blocks tiny so a small factory checkpoint crosses many of them.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from safetensors import safe_open

from sdhub.formats import safetensors_writer
from sdhub.ops.convert import convert
from sdhub.ops import hashing
from sdhub.ops.hashing import BackgroundSha256
from sdhub.ops.prune import PruneOptions, prune
from sdhub.testing import factory


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.sd1_checkpoint(tmp_path_factory.mktemp("io") / "sd1-ema.ckpt", fmt="ckpt", ema=True)


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of two pages and two of them, casts in 1 KiB pieces: every hand-off path is taken."""
    monkeypatch.setattr(safetensors_writer, "_BLOCK_BYTES", 2 * safetensors_writer.DIRECT_ALIGNMENT)
    monkeypatch.setattr(safetensors_writer, "_BLOCK_COUNT", 2)
    monkeypatch.setattr(safetensors_writer, "_CHUNK_BYTES", 1024)
    monkeypatch.setattr(safetensors_writer, "_CHUNK_COUNT", 2)


def _read_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


@pytest.mark.parametrize("dtype", ["keep", "fp16"])
def test_conversion_across_many_blocks_is_exact_and_hashes_the_source(checkpoint: Path, tmp_path: Path,
                                                                      tiny_blocks: None, dtype: str) -> None:
    report = convert(checkpoint, tmp_path / "out.safetensors", dtype=dtype, verify=True)
    assert report.verified
    assert report.source_sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    with safe_open(report.output, "pt") as written:
        assert written.metadata()["sdhub.source_sha256"] == report.source_sha256


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="reads are counted from /proc/self/io (Linux)")
def test_convert_reads_the_source_once_for_copy_and_hash(checkpoint: Path, tmp_path: Path) -> None:
    before = _read_bytes()
    report = convert(checkpoint, tmp_path / "once.safetensors")
    read = _read_bytes() - before
    size = checkpoint.stat().st_size
    assert report.source_sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert read < 1.2 * size, f"read {read} bytes of a {size}-byte source"  # a second hashing pass reads 2x


def test_prune_hashes_its_source_while_writing(checkpoint: Path, tmp_path: Path, tiny_blocks: None) -> None:
    report = prune(checkpoint, tmp_path / "pruned.safetensors", PruneOptions(ema="use", dtype="fp16"))
    assert report.source_sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_source_digest_fed_in_any_order_is_the_file_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces fed out of order, overlapping or not at all: whatever was not fed in order is read."""
    monkeypatch.setattr(hashing, "_KEEP_AHEAD_GAP", 100_000)  # the first piece is kept, not read up to
    path = tmp_path / "data.bin"
    data = random.Random(3).randbytes(300_000)
    path.write_bytes(data)
    pieces = [(290_000, 300_000), (0, 1000), (1000, 5000), (9000, 20000), (4000, 12000), (150_000, 160_000),
              (60_000, 70_000), (295_000, 296_000)]
    digest = BackgroundSha256(path)
    with open(path, "rb") as handle:
        assert digest.wanted() and digest.same_file(handle.fileno())
    for start, end in pieces:
        digest.feed(start, memoryview(data)[start:end])
    assert digest.result() == hashlib.sha256(data).hexdigest()
    assert digest.result() == hashlib.sha256(data).hexdigest()  # asked twice, the same answer
    assert not BackgroundSha256(path, known="ab" * 32).wanted()
