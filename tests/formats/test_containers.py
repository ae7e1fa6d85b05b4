"""The container layer reads one archive, the one torch reads, or refuses the file and says why."""

from __future__ import annotations

import shutil
import socket
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from benign import Benign, write_benign
from malicious import Case, build_corpus, fifo_never_opened
from sdhub.errors import BadInputError, UnsafeFileError, UsageError
from sdhub.formats import open_model
from torch_files import (
    Raw, call, dict_pickle, enc, end_record, glob, legacy_file, tensor_expr, torch_records, zip_parts,
)

# Each container ambiguity and the words its one-line refusal must contain.
AMBIGUITIES = {
    "zip64_second_directory": "zip64 and plain end records describe different central directories",
    "end_record_in_comment": "last zip end record does not end where the file does",
    "legacy_tar_polyglot": "is also a tar archive",
    "bytes_before_end_record": "16 unaccounted bytes between its zip central directory and its end record",
    "unlisted_record_in_gap": "unaccounted bytes after zip record 'archive/data.pkl'",
    "end_signature_in_comment": "end-record signature too short to be one",
    "zip64_huge_offset": "central directory lies outside the file",
    "zip64_huge_size": "implausibly large",
    "zip64_huge_entries": "implausibly large",
    "zip64_huge_entry": "starts outside the archive data",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return {case.name: case for case in build_corpus(tmp_path_factory.mktemp("containers"))}


def test_each_ambiguity_is_refused_with_one_line_naming_it(corpus: dict[str, Case]) -> None:
    # The live ones run their payload under torch.load (test_malicious proves it in a subprocess).
    assert all(corpus[name].live for name in ("zip64_second_directory", "end_record_in_comment",
                                              "legacy_tar_polyglot"))
    for name, words in AMBIGUITIES.items():
        case = corpus[name]
        with pytest.raises((UnsafeFileError, BadInputError)) as raised:
            open_model(case.path)
        message = str(raised.value)
        assert message.startswith(f"{case.path.name}: ") and words in message, (name, message)
        assert "\n" not in message and "int too large" not in message, (name, message)
        assert not case.canary.exists()


def test_other_readers_see_the_hostile_reading(corpus: dict[str, Case]) -> None:
    """Beside torch (proved in test_malicious): Python's zipfile follows the zip64 locator to the
    hostile directory, and tarfile opens the legacy file with the member torch.load reads first."""
    import tarfile

    with zipfile.ZipFile(corpus["zip64_second_directory"].path) as archive:
        assert b"system" in archive.read("archive/data.pkl")
    with tarfile.open(corpus["legacy_tar_polyglot"].path) as archive:
        assert "storages" in archive.getnames()


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Benign]:
    return {case.name: case for case in write_benign(tmp_path_factory.mktemp("benign"))}


def test_archives_listing_their_folders_are_read_as_torch_reads_them(benign: dict[str, Benign]) -> None:
    """Issue 21: an archive re-written by zipfile or Info-ZIP lists ``NAME/`` and ``NAME/data/``."""
    writers = ["folders-zipfile"] + (["folders-zip-cli"] if shutil.which("zip") else [])
    assert set(writers) <= set(benign)
    for name in writers:
        case = benign[name]
        with zipfile.ZipFile(case.path) as archive:
            folders = [info.filename for info in archive.infolist() if info.filename.endswith("/")]
        assert {"folders-source/", "folders-source/data/"} <= set(folders), name
        by_torch = torch.load(case.path, weights_only=True)  # our own file: torch's reading is the reference
        with open_model(case.path) as model:
            assert set(model.tensors) == set(case.expected), name
            for key, tensor in case.expected.items():
                assert torch.equal(model.load(key), tensor) and torch.equal(by_torch[key], tensor), (name, key)


def _with_entries(source: Path, target: Path, entries: list[tuple[str, bytes]], flag_as_folder: str = "") -> Path:
    """``source`` copied record by record, plus ``entries``; records named ``flag_as_folder`` get the
    DOS folder attribute."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of one case
        for info in archive.infolist():
            copy = zipfile.ZipInfo(info.filename)
            copy.external_attr = 0x10 if info.filename == flag_as_folder else 0
            out.writestr(copy, archive.read(info))
        for name, data in entries:
            out.writestr(zipfile.ZipInfo(name), data)
    return target


def test_folder_entries_that_could_change_the_reading_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "w.ckpt"
    torch.save({"w": torch.arange(4.0)}, source)
    refused = {
        "holds 6 bytes": [("w/data/", b"hidden")],
        "'w/extra/' is not part of a torch checkpoint": [("w/extra/", b"")],
        "'w/data/' appears twice": [("w/data/", b""), ("w/data/", b"")],
    }
    for words, entries in refused.items():
        with pytest.raises(UnsafeFileError, match=words):
            open_model(_with_entries(source, tmp_path / "bad.ckpt", entries))

    # A storage record flagged as a folder: torch's reader skips its bytes and hands back
    # uninitialised memory, so it would not read what sdhub reads.
    flagged = _with_entries(source, tmp_path / "flagged.ckpt", [], flag_as_folder="w/data/0")
    with pytest.raises(UnsafeFileError, match="'w/data/0' is marked as a folder"):
        open_model(flagged)


def test_torch_written_archives_account_for_every_byte(tmp_path: Path) -> None:
    """torch's own layout (aligned records, data descriptors, zip64 end records whose fields agree with
    the plain ones) passes the strict reading, with storages large and small."""
    tensors = {"big": torch.randn(300, 700), "small": torch.arange(3), "half": torch.randn(5).half()}
    path = tmp_path / "w.ckpt"
    torch.save(tensors, path)
    data = path.read_bytes()
    assert b"PK\x07\x08" in data and b"PK\x06\x06" in data  # descriptors and zip64 records present
    with open_model(path) as model:
        for name, tensor in tensors.items():
            assert torch.equal(model.load(name), tensor)


def test_a_legacy_file_holding_a_zip_end_record_is_refused(tmp_path: Path) -> None:
    """A zip end record anywhere in the tail (here inside the last storage's bytes) makes zip
    readers see an archive, whatever its comment length says."""
    values = struct.pack("<4f", 1, 2, 3, 4) + end_record(0, 0, 0) + b"\0" * 10  # 48 bytes: 12 floats
    pid = b"(" + enc("storage") + glob("torch", "FloatStorage") + enc("0") + enc("cpu") + enc(12) + b"NtQ"
    tensor = Raw(glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + enc(0) + enc((12,)) + enc((1,))
                 + enc(False) + call("collections", "OrderedDict").data + b"tR")
    path = legacy_file(tmp_path / "old.pt", dict_pickle([("weight", tensor)]), {"0": (12, values)})
    assert zipfile.is_zipfile(path)
    with pytest.raises(UnsafeFileError, match="both a legacy torch file and a zip archive"):
        open_model(path)


def test_a_zip_that_is_also_a_tar_is_refused(tmp_path: Path) -> None:
    """The first record's extra field (which torch skips) laid out so the first block passes as a
    tar header: tools that try tar first would read another file than torch does."""
    import tarfile

    source = tmp_path / "w.ckpt"
    torch.save({"w": torch.arange(4.0)}, source)
    path = tmp_path / "tar.ckpt"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(path, "w") as out:
        for index, info in enumerate(archive.infolist()):
            copy = zipfile.ZipInfo(info.filename)
            if index == 0:
                copy.extra = struct.pack("<HH", 0x5A5A, 512) + b"\0" * 512
            out.writestr(copy, archive.read(info))
    data = bytearray(path.read_bytes())
    data[148:156] = b" " * 8
    data[148:155] = b"%06o\0" % sum(data[:512])
    path.write_bytes(bytes(data))
    assert tarfile.is_tarfile(path) and torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(4.0))
    with pytest.raises(UnsafeFileError, match="is also a tar archive"):
        open_model(path)


def test_zip_readers_agree_on_the_accepted_archives(tmp_path: Path) -> None:
    """An archive built byte by byte the plain way is read; the same with one stray byte is not."""
    records = torch_records(dict_pickle([("weight", tensor_expr())]))
    local, central = zip_parts(records)
    good = tmp_path / "good.ckpt"
    good.write_bytes(local + central + end_record(len(records), len(central), len(local)))
    with open_model(good) as model:
        assert torch.equal(model.load("weight"), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    stray = tmp_path / "stray.ckpt"
    stray.write_bytes(local + central + end_record(len(records), len(central), len(local)) + b"\0")
    with pytest.raises(UnsafeFileError, match="does not end where the file does"):
        open_model(stray)


def test_fifos_sockets_and_devices_are_refused_before_they_are_opened(tmp_path: Path) -> None:
    with fifo_never_opened(tmp_path / "x.ckpt") as fifo:
        with pytest.raises(UsageError, match=r"x\.ckpt is a FIFO \(named pipe\); refusing to read it"):
            open_model(fifo)

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "s.ckpt"))
    with listener, pytest.raises(UsageError, match="is a socket"):
        open_model(tmp_path / "s.ckpt")
    endless = tmp_path / "zero.safetensors"
    endless.symlink_to("/dev/zero")  # reading it never ends
    with pytest.raises(UsageError, match="is a character device"):
        open_model(endless)
