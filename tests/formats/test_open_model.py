"""``open_model``: every supported container, read without running anything, one tensor at a time."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sdhub.errors import BadInputError, NotFoundError, UsageError
from sdhub.formats import open_model
from torch_files import rewrite_data_pkl, write_zip


def test_safetensors_file_is_described_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.ones(2).bfloat16()}
    save_file(tensors, path, metadata={"ss_network_dim": "4"})
    with open_model(path) as model:
        assert model.format == "safetensors" and model.metadata == {"ss_network_dim": "4"}
        assert model.tensors["a"].dtype == torch.float32 and model.tensors["a"].shape == (3, 4)
        assert model.tensors["c"].nbytes == 4 and model.tensors["c"].dtype_name == "BF16"
        for name, tensor in tensors.items():
            assert torch.equal(model.load(name), tensor)


@pytest.mark.parametrize("protocol", [1, 2, 4, 5])
def test_zip_checkpoints_of_any_pickle_protocol_and_prefix(tmp_path: Path, protocol: int) -> None:
    tensors = {"w": torch.randn(4, 4), "t": torch.randn(3, 2).t(), "n": torch.arange(3)}
    named = tmp_path / "named.ckpt"  # saved by path: the archive folder is "named/"
    torch.save(tensors, named, pickle_protocol=protocol)
    streamed = tmp_path / "streamed.ckpt"  # saved to a file object: the folder is "archive/"
    with open(streamed, "wb") as handle:
        torch.save(tensors, handle, pickle_protocol=protocol)
    for path in (named, streamed):
        with open_model(path) as model:
            assert model.format == "torch-zip" and set(model.tensors) == set(tensors)
            for name, tensor in tensors.items():
                assert torch.equal(model.load(name), tensor)


def test_shared_storages_are_counted_and_loaded_separately(tmp_path: Path) -> None:
    base = torch.arange(6, dtype=torch.float32)
    path = tmp_path / "s.pt"
    torch.save({"a": base, "b": base[2:], "c": base.view(2, 3)}, path, _use_new_zipfile_serialization=False)
    with open_model(path) as model:
        assert model.format == "torch-legacy" and model.report.shared_storages == 2
        assert torch.equal(model.load("b"), base[2:]) and torch.equal(model.load("c"), base.view(2, 3))


def test_loaded_tensor_is_a_private_copy_on_write_view(tmp_path: Path) -> None:
    path = tmp_path / "w.ckpt"
    torch.save({"w": torch.zeros(1000)}, path)
    before = path.read_bytes()
    with open_model(path) as model:
        tensor = model.load("w")
        tensor += 1  # a caller scribbling on a loaded tensor never writes into the file
    assert path.read_bytes() == before


def test_big_endian_archives_are_byteswapped(tmp_path: Path) -> None:
    """Files saved on a big-endian machine say so in ``byteorder``; their elements are swapped on read."""
    tensors = {"w": torch.randn(3, 2), "h": torch.randn(4).half(), "ids": torch.arange(3), "t": torch.randn(2, 3).t()}
    path = tmp_path / "w.ckpt"
    torch.save(tensors, path)
    # torch numbers storages in order of first use: "0" is w's, "1" h's, and so on.
    element_sizes = {str(index): tensor.element_size() for index, tensor in enumerate(tensors.values())}
    with zipfile.ZipFile(path) as archive:
        records = []
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                size = element_sizes[info.filename.rsplit("/", 1)[1]]
                data = b"".join(data[i:i + size][::-1] for i in range(0, len(data), size))
            records.append((info.filename, data))
    write_zip(path, records)
    with open_model(path) as model:
        assert model.raw_source("w") is None  # swapped elements cannot be copied as they are
        for name, tensor in tensors.items():
            assert torch.equal(model.load(name), tensor), name


def test_unknown_global_is_named_in_the_refusal(tmp_path: Path) -> None:
    source = tmp_path / "w.ckpt"
    torch.save({"w": torch.ones(2), "d": {"x": 1}}, source)
    hostile = rewrite_data_pkl(source, tmp_path / "h.ckpt", {b"collections\nOrderedDict": b"webbrowser\nopen_new"})
    with pytest.raises(Exception, match=r"h\.ckpt: refers to webbrowser\.open_new"):
        open_model(hostile)


def test_safetensors_headers_are_validated(tmp_path: Path) -> None:
    def write(header: dict, data: bytes = b"\0" * 8) -> Path:
        raw = json.dumps(header).encode()
        path = tmp_path / "bad.safetensors"
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
        return path

    cases = {
        "outside the file": {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
        "does not match": {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}},
        "unsupported dtype": {"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}},
        "overlap": {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}},
    }
    for expected, header in cases.items():
        with pytest.raises(BadInputError, match=expected):
            open_model(write(header))


def test_paths_that_are_not_model_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        open_model(tmp_path / "missing.ckpt")
    with pytest.raises(UsageError):
        open_model(tmp_path)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(BadInputError, match="not a model file"):
        open_model(text)


def test_zip64_archives_are_read(tmp_path: Path) -> None:
    """Checkpoints over 4 GiB keep sizes and offsets in zip64 fields; the reader must use them."""
    from torch_files import to_zip64

    source = tmp_path / "w.ckpt"
    tensors = {"w": torch.randn(8, 8), "n": torch.arange(3)}
    torch.save(tensors, source)
    with zipfile.ZipFile(source) as archive:
        records = [(i.filename, archive.read(i)) for i in archive.infolist()]
    path = to_zip64(write_zip(tmp_path / "z.ckpt", records))
    assert zipfile.ZipFile(path).testzip() is None  # still a valid zip for other readers
    with open_model(path) as model:
        for name, tensor in tensors.items():
            assert torch.equal(model.load(name), tensor)


def test_legacy_storage_views_are_resolved(tmp_path: Path) -> None:
    """Pre-1.0 torch pickled views of storages as (view_key, offset, size) in the storage id."""
    from torch_files import Raw, call, enc, glob, legacy_file

    pid = b"(" + enc("storage") + glob("torch", "FloatStorage") + enc("root") + enc("cpu") + enc(8) \
        + enc(("root-view", 2, 4)) + b"tQ"
    tensor = Raw(glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + enc(1) + enc((3,)) + enc((1,))
                 + enc(False) + call("collections", "OrderedDict").data + b"tR")
    main = b"\x80\x02}(" + enc("w") + tensor.data + b"u."
    values = torch.arange(8, dtype=torch.float32)
    path = legacy_file(tmp_path / "old.pt", main, {"root": (8, values.numpy().tobytes())})
    expected = torch.load(path, weights_only=False)["w"]  # our own file: torch's reading is the reference
    assert torch.equal(expected, values[3:6])
    with open_model(path) as model:
        assert torch.equal(model.load("w"), expected)
