"""hash_file: every scheme against a straightforward independent computation."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import blake3
import pytest
import torch
import xxhash
from safetensors.torch import save_file

from sdhub.errors import NotFoundError, UsageError
from sdhub.ops import hashing
from sdhub.ops.hashing import hash_file
from sdhub.progress import NULL_PROGRESS, RecordingProgress


def _expected(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    with open(path, "rb") as handle:  # A1111's own steps: seek 1 MiB, read 64 KiB
        handle.seek(0x100000)
        legacy = hashlib.sha256(handle.read(0x10000)).hexdigest()[:8]
    crc = zlib.crc32(data)
    return {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "autov2": hashlib.sha256(data).hexdigest()[:10],
        "legacy_model_hash": legacy,
        "autov1": legacy if len(data) >= 2 * 1024 * 1024 else None,
        "crc32": struct.pack("<I", crc).hex(),
        "crc32_zlib": "%08x" % crc,
        "blake3": blake3.blake3(data).hexdigest(),
    }


def test_hello_world_matches_civitai_reference_vectors(tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world")
    hashes = hash_file(path)
    assert hashes.civitai() == {
        "SHA256": "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9",
        "AutoV2": "B94D27B993",
        "CRC32": "85114A0D",
        "BLAKE3": "D74981EFA70A0C880B8D8C1985D075DBCBF679B99A5F9914E5AAF96B831A9E24",
    }
    assert hashes.autov1 is None and hashes.autov3 is None and hashes.addnet_hash is None
    assert hashes.legacy_model_hash == "e3b0c442"  # A1111: files under 1 MiB hash the empty string
    assert hashes.crc32_zlib == "0d4a1185"


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024 + 1000, 2 * 1024 * 1024 - 1, 9 * 1024 * 1024 + 123])
@pytest.mark.parametrize("buffer_size", [65536 + 7, 4 * 1024 * 1024])
def test_every_scheme_matches_an_independent_computation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         size: int, buffer_size: int) -> None:
    # Small odd buffers make the legacy window and the chunks straddle buffer boundaries.
    monkeypatch.setattr(hashing, "_BUFFER_SIZE", buffer_size)
    path = tmp_path / "model.ckpt"
    path.write_bytes(os.urandom(size))
    hashes = hash_file(path).to_dict()
    expected = _expected(path)
    assert {key: hashes[key] for key in expected} == expected
    assert hashes["addnet_hash"] is None and hashes["autov3"] is None


def test_files_over_2_mib_get_civitai_autov1_equal_to_the_a1111_legacy_hash(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(os.urandom(3 * 1024 * 1024))
    hashes = hash_file(path)
    assert hashes.autov1 == hashes.legacy_model_hash != "e3b0c442"
    assert hashes.civitai()["AutoV1"] == hashes.legacy_model_hash.upper()


@pytest.mark.parametrize("buffer_size", [1000, 4 * 1024 * 1024])
def test_safetensors_addnet_hash_covers_the_tensor_data_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             buffer_size: int) -> None:
    monkeypatch.setattr(hashing, "_BUFFER_SIZE", buffer_size)
    tensors = {"lora_unet_x.lora_down.weight": torch.randn(64, 320), "lora_unet_x.alpha": torch.tensor(8.0)}
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(tensors, first, metadata={"ss_network_dim": "64"})
    save_file(tensors, second, metadata={"ss_network_dim": "64", "ss_output_name": "renamed by hand"})

    data = first.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    expected_addnet = hashlib.sha256(data[8 + header_length:]).hexdigest()
    a, b = hash_file(first), hash_file(second)
    assert a.addnet_hash == expected_addnet
    assert a.autov3 == expected_addnet[:12]
    assert a.sha256 == hashlib.sha256(data).hexdigest()
    # Editing metadata changes the file hash but not the addnet/AutoV3 hash.
    assert a.sha256 != b.sha256
    assert a.addnet_hash == b.addnet_hash


def test_a_file_named_safetensors_that_is_not_one_gets_no_addnet_hash(tmp_path: Path) -> None:
    path = tmp_path / "fake.safetensors"
    path.write_bytes(b"\xff" * 64)
    assert hash_file(path).addnet_hash is None


def test_progress_reports_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(os.urandom(5 * 1024 * 1024))
    progress = RecordingProgress()
    hash_file(path, progress=progress)
    (task,) = progress.tasks
    assert task.total == task.completed == 5 * 1024 * 1024
    assert task.unit == "bytes" and task.finished


def test_missing_file_and_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        hash_file(tmp_path / "nope.safetensors")
    with pytest.raises(UsageError, match="not a file"):
        hash_file(tmp_path)


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    assert hashing.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_component_hashes_ignore_container_prefix_and_key_order(tmp_path: Path) -> None:
    from sdhub.testing import factory

    state = factory.tiny_state_dicts("sd1")
    torch.save({"state_dict": state, "global_step": 1}, tmp_path / "model.ckpt")
    vae_alone = {k.removeprefix("first_stage_model."): v for k, v in reversed(list(state.items()))
                 if k.startswith("first_stage_model.")}
    save_file(vae_alone, tmp_path / "vae.safetensors")
    reordered = dict(reversed(list(state.items())))
    save_file(reordered, tmp_path / "model.safetensors")

    checkpoint = hashing.hash_components(tmp_path / "model.ckpt")
    assert set(checkpoint) == {"unet", "vae", "text_encoder"}
    assert hashing.hash_components(tmp_path / "model.safetensors") == checkpoint
    assert hashing.hash_components(tmp_path / "vae.safetensors") == {"vae": checkpoint["vae"]}

    # One changed value in the VAE changes only the VAE's hash.
    state["first_stage_model.decoder.conv_out.bias"] = state["first_stage_model.decoder.conv_out.bias"] + 1
    save_file(state, tmp_path / "changed.safetensors")
    changed = hashing.hash_components(tmp_path / "changed.safetensors")
    assert changed["vae"] != checkpoint["vae"]
    assert (changed["unet"], changed["text_encoder"]) == (checkpoint["unet"], checkpoint["text_encoder"])


def test_component_hash_is_sha256_over_sorted_canonical_entries(tmp_path: Path) -> None:
    tensors = {"first_stage_model.decoder.b": torch.arange(3, dtype=torch.float32),
               "first_stage_model.decoder.a": torch.ones(2, 2, dtype=torch.float16),
               "first_stage_model.encoder.c": torch.zeros(1)}
    save_file(tensors, tmp_path / "v.safetensors")
    expected = hashlib.sha256()
    for name in sorted(tensors):
        canonical = name.removeprefix("first_stage_model.")
        tensor = tensors[name]
        dtype = {torch.float32: "F32", torch.float16: "F16"}[tensor.dtype]
        content = xxhash.xxh3_128(tensor.numpy().tobytes()).hexdigest()
        expected.update(f"{canonical}\0{dtype}\0{list(tensor.shape)}\0{content}\n".encode())
    assert hashing.hash_components(tmp_path / "v.safetensors") == {"vae": expected.hexdigest()}


def test_strided_and_shared_tensors_in_a_ckpt_hash_like_their_contiguous_copies(tmp_path: Path) -> None:
    # Pickled tensors may be views: a transposed weight, or two tensors sharing one storage.
    from sdhub.testing import factory

    state = factory.tiny_state_dicts("sd1")
    key = next(k for k, v in state.items() if k.startswith("cond_stage_model.") and v.dim() == 2)
    viewed = dict(state)
    viewed[key] = state[key].t().contiguous().t()  # same values, column-major storage
    big = torch.cat([state[k].reshape(-1) for k in list(state)[:2]])
    first, second = list(state)[:2]
    viewed[first] = big[:state[first].numel()].view(state[first].shape)
    viewed[second] = big[state[first].numel():].view(state[second].shape)
    assert not viewed[key].is_contiguous()
    torch.save({"state_dict": viewed}, tmp_path / "views.ckpt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "plain.safetensors")
    assert hashing.hash_components(tmp_path / "views.ckpt") == hashing.hash_components(tmp_path / "plain.safetensors")


def _bytes_read() -> int:
    return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["rchar"])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's per-process I/O counters")
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_hash_model_reads_a_checkpoint_once_for_all_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           suffix: str) -> None:
    from sdhub.testing import factory

    monkeypatch.setattr(hashing, "_BUFFER_SIZE", 65536)  # the threaded path, as for real checkpoints
    path = factory.sd1_checkpoint(tmp_path / f"model{suffix}", fmt=suffix.lstrip("."))
    before = _bytes_read()
    result = hashing.hash_model(path)
    read = _bytes_read() - before
    assert result.kind == "checkpoint" and set(result.components) == {"unet", "vae", "text_encoder"}
    assert result.components == hashing.hash_components(path)
    assert result.file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stat().st_size <= read < 1.05 * path.stat().st_size


@pytest.mark.parametrize("cores, read_cost, expected", [
    (1, hashing._READ_COST, [[0, 1, 2, 3]]),
    (2, hashing._READ_COST, [[1, 3], [0, 2]]),  # the two SHA-256s on different cores
    (2, 0.5, [[1], [0, 2, 3]]),  # a costly read leaves the reader's lane one SHA-256 alone
    (8, hashing._READ_COST, [[], [0], [1], [2], [3]]),
])
def test_plan_lanes_spreads_the_costly_schemes_over_the_cores(cores: int, read_cost: float,
                                                              expected: list[list[int]]) -> None:
    costs = [hashing.SHA256_COST, hashing.SHA256_COST, hashing.BLAKE3_COST, hashing.CRC32_COST]
    assert hashing.plan_lanes(costs, cores, read_cost) == expected


def test_hash_model_adds_component_hashes_only_for_checkpoints_and_vaes(tmp_path: Path) -> None:
    from sdhub.testing import factory

    checkpoint = hashing.hash_model(factory.sd1_checkpoint(tmp_path / "model.safetensors"))
    assert checkpoint.kind == "checkpoint" and set(checkpoint.components) == {"unet", "vae", "text_encoder"}
    assert checkpoint.to_dict()["civitai"]["SHA256"] == checkpoint.file.sha256.upper()
    lora = hashing.hash_model(factory.lora(tmp_path / "lora.safetensors"))
    assert lora.kind == "lora" and lora.components is None and lora.file.autov3 is not None
    (tmp_path / "notes.txt").write_bytes(b"not a model")
    other = hashing.hash_model(tmp_path / "notes.txt")
    assert other.kind is None and other.components is None
    assert other.file.sha256 == hashlib.sha256(b"not a model").hexdigest()


def test_a_file_cut_short_while_it_is_hashed_is_refused_in_one_line(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program truncating the file mid-read (``cp new old`` over it) stops the hashing with a
    clear error, never a crash: sdhub reads files, it does not map them (a mapped page cut off is SIGBUS)."""
    from sdhub.errors import BadInputError

    monkeypatch.setattr(hashing, "_BUFFER_SIZE", 65536)
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(40 * 65536))

    def cut_short(view: memoryview, position: int) -> None:
        if position == 0:
            os.truncate(path, 5 * 65536)

    with pytest.raises(BadInputError, match="changed size while being hashed"):
        hashing._hash_file(path, [hashing._Consumer(cut_short, 0.0)], NULL_PROGRESS, addnet=True)
