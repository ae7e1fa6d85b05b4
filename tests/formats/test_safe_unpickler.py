"""The safe unpickler reads every plain-data pickle protocol exactly as pickle would, and refuses the rest."""

from __future__ import annotations

import pickle

import pytest

from sdhub.errors import BadInputError, UnsafeFileError
from sdhub.formats.safe_unpickler import Limits, SafeUnpickler

PLAIN = {
    "text": "héllo", "int": 7, "negative": -300000, "big": 2**80, "float": 0.1, "bool": [True, False],
    "none": None, "bytes": b"\x00\xffraw", "tuple": (1, (2, 3)), "nested": {"a": {"b": [1, 2, {"c": 3}]}},
    "set": {1, 2, 3}, "frozen": frozenset({"x"}), "bytearray": bytearray(b"ab"), "complex": 1 + 2j,
    5: "int key", ("a", 1): "tuple key",
}


@pytest.mark.parametrize("protocol", range(0, 6))
def test_plain_data_round_trips_at_every_protocol(protocol: int) -> None:
    data = pickle.dumps(PLAIN, protocol=protocol)
    value, end = SafeUnpickler(data, "plain.pkl", None).load()
    assert value == PLAIN and end == len(data)


def test_shared_references_stay_shared() -> None:
    inner = [1, 2]
    value, _ = SafeUnpickler(pickle.dumps({"a": inner, "b": inner}, protocol=2), "x", None).load()
    assert value["a"] is value["b"]


@pytest.mark.parametrize("data, message", [
    (b"\x80\x02K\x01", "truncated"),
    (b"\x80\x02K\x01K\x02.", "unbalanced"),
    (b"\x80\x02h\x05.", "memo index 5"),
    (b"\x80\x02\xff.", "unknown pickle opcode"),
    (b"\x80\x02X\xff\xff\xff\x7f", "larger than the limit"),
    (b"\x80\x02" + b"(" * 2000 + b"1" * 2000 + b"N.", "nests too deeply"),
])
def test_structural_problems_reject_the_whole_pickle(data: bytes, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        SafeUnpickler(data, "bad.pkl", None, limits=Limits(max_string_bytes=1024)).load()


def test_a_module_object_is_refused_even_when_the_module_looks_harmless() -> None:
    data = b"\x80\x02ctorch\n_utils\n."
    with pytest.raises(UnsafeFileError, match=r"torch\._utils"):
        SafeUnpickler(data, "m.pkl", None).load()


def test_recording_mode_lists_everything_without_stopping() -> None:
    data = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R0cargparse\nNamespace\n)\x81."
    unpickler = SafeUnpickler(data, "r.pkl", None, strict=False)
    unpickler.load()
    assert unpickler.report.globals == {"os.system": "refused", "argparse.Namespace": "placeholder"}
    assert unpickler.report.opcodes["REDUCE"] == 1 and unpickler.report.problems
