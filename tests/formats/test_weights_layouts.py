"""The safe reader names every tensor torch would load, and reads the values torch reads.

Tensors in lists, tuples and under int keys are written under their path; an A1111
hypernetwork (int keys -> lists of layer state dicts) converts; a checkpoint that happens to
hold ``string_to_param`` stays a checkpoint; legacy storage views that share a view key and
big-endian archives give torch's values. Files are written by ``torch.save`` where it can write
them, byte by byte where it cannot; the expected values come from ``torch.load`` of the same
file (files this test wrote itself).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sdhub.errors import BadInputError, UnsafeFileError
from sdhub.formats import open_model
from sdhub.ops.convert import convert
from torch_files import call, enc, glob, legacy_file, torch_load_trusted, write_zip


def _flat(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """What a user expects: every tensor by its path (dict keys, list/tuple positions)."""
    if isinstance(value, torch.Tensor):
        return {prefix[:-1]: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else []
    out: dict[str, torch.Tensor] = {}
    for key, item in items:
        out.update(_flat(item, f"{prefix}{key}."))
    return out


def _converted(path: Path, tmp_path: Path) -> tuple[dict[str, torch.Tensor], Any]:
    report = convert(path, tmp_path / f"{path.stem}.safetensors", verify=True)
    return load_file(tmp_path / f"{path.stem}.safetensors"), report


def test_tensors_in_lists_tuples_and_int_keys_are_written_by_path(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    obj = {"layers": [torch.randn(2, 3, generator=g), {"weight": torch.randn(4, generator=g)}],
           "pair": (torch.randn(3, generator=g), torch.arange(5)), 7: torch.ones(2), "epoch": 3}
    torch.save(obj, tmp_path / "lists.pt")
    written, report = _converted(tmp_path / "lists.pt", tmp_path)
    expected = _flat({k: v for k, v in obj.items() if k != "epoch"})
    assert sorted(written) == sorted(expected) == ["7", "layers.0", "layers.1.weight", "pair.0", "pair.1"]
    assert all(torch.equal(written[name], expected[name]) for name in expected)
    assert report.dropped == [] and report.extras == {"epoch": 3}


def test_a_bare_list_of_tensors_converts(tmp_path: Path) -> None:
    torch.save([torch.ones(2), (torch.zeros(3),)], tmp_path / "bare.pt")
    written, _ = _converted(tmp_path / "bare.pt", tmp_path)
    assert sorted(written) == ["0", "1.0"]


def _hypernetwork(layer_norm: bool, dropout: bool) -> dict[Any, Any]:
    """An A1111 hypernetwork as its trainer saves it, with tiny sizes standing in for 768/1024."""

    class HypernetworkModule(torch.nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            structure = [1, 2, 1]
            layers: list[torch.nn.Module] = []
            for i in range(len(structure) - 1):
                layers.append(torch.nn.Linear(dim * structure[i], dim * structure[i + 1]))
                if i < len(structure) - 2:
                    layers.append(torch.nn.ReLU())
                if layer_norm:
                    layers.append(torch.nn.LayerNorm(dim * structure[i + 1]))
                if dropout and i < len(structure) - 2:
                    layers.append(torch.nn.Dropout(0.3))
            self.linear = torch.nn.Sequential(*layers)

    torch.manual_seed(4)
    state: dict[Any, Any] = {dim: [HypernetworkModule(dim).state_dict(), HypernetworkModule(dim).state_dict()]
                             for dim in (8, 12)}
    state.update({"step": 1000, "name": "tiny", "layer_structure": [1, 2, 1], "activation_func": "relu",
                  "is_layer_norm": layer_norm, "weight_initialization": "Normal", "sd_checkpoint": "e1441589",
                  "sd_checkpoint_name": "v1-5-pruned-emaonly", "activate_output": False, "use_dropout": dropout,
                  "dropout_structure": [0, 0.3 if dropout else 0, 0], "last_layer_dropout": False,
                  "optional_info": None})
    return state


@pytest.mark.parametrize("layer_norm, dropout", [(False, False), (True, True)])
def test_an_a1111_hypernetwork_converts_every_layer(tmp_path: Path, layer_norm: bool, dropout: bool) -> None:
    path = tmp_path / "hypernet.pt"
    state = _hypernetwork(layer_norm, dropout)
    torch.save(state, path)
    written, report = _converted(path, tmp_path)
    expected = _flat({k: v for k, v in state.items() if isinstance(k, int)})
    assert sorted(written) == sorted(expected)
    assert "8.0.linear.0.weight" in written and "12.1.linear.2.bias" in written
    layer_norms = [n for n, t in written.items() if n.endswith(".weight") and t.dim() == 1]
    assert bool(layer_norms) == layer_norm
    assert all(torch.equal(written[name], expected[name]) for name in expected)
    assert report.extras["name"] == "tiny" and report.extras["step"] == 1000
    assert "layer_structure (list)" in report.dropped


def test_a_checkpoint_holding_string_to_param_is_not_an_embedding(tmp_path: Path) -> None:
    weights = {"model.diffusion_model.w": torch.ones(3), "cond_stage_model.w": torch.zeros(2)}
    torch.save({"state_dict": weights, "string_to_param": {"*": torch.ones(1, 4)}, "global_step": 5},
               tmp_path / "ckpt.ckpt")
    written, report = _converted(tmp_path / "ckpt.ckpt", tmp_path)
    assert sorted(written) == sorted(weights) and not report.embedding_layout
    assert "string_to_param (dict)" in report.dropped
    # A real textual-inversion file (token ids as tensors beside it) is still an embedding.
    torch.save({"string_to_token": {"*": torch.tensor(265)}, "string_to_param": {"*": torch.ones(2, 4)},
                "name": "tok", "step": 10}, tmp_path / "emb.pt")
    written, report = _converted(tmp_path / "emb.pt", tmp_path)
    assert list(written) == ["emb_params"] and report.embedding_layout


def test_tensors_under_keys_that_cannot_name_them_stop_the_conversion(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(2), (1, 2): torch.zeros(2)}, tmp_path / "tuplekey.pt")
    with pytest.raises(BadInputError, match="under a tuple key"):
        open_model(tmp_path / "tuplekey.pt")


def _legacy_view(root: str, view_key: str, offset: int, size: int) -> bytes:
    pid = (b"(" + enc("storage") + glob("torch", "FloatStorage") + enc(root) + enc("cpu") + enc(8)
           + enc((view_key, offset, size)) + b"tQ")
    return (glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + enc(0) + enc((size,)) + enc((1,))
            + enc(False) + call("collections", "OrderedDict").data + b"tR")


def test_legacy_views_sharing_a_view_key_read_as_torch_reads_them(tmp_path: Path) -> None:
    """torch caches a storage view by its key: the second id's offset is ignored, so is ours."""
    main = (b"\x80\x02}(" + enc("first") + _legacy_view("r", "v", 2, 4) + enc("second") + _legacy_view("r", "v", 4, 4)
            + enc("own") + _legacy_view("r", "w", 4, 4) + b"u.")
    path = legacy_file(tmp_path / "views.pt", main, {"r": (8, struct.pack("<8f", *range(8)))})
    expected = torch_load_trusted(path)
    assert expected["second"].tolist() == [2, 3, 4, 5]  # the premise: torch reuses the first view
    with open_model(path) as model:
        for name in ("first", "second", "own"):
            assert torch.equal(model.load(name), expected[name]), name
    written, _ = _converted(path, tmp_path)
    assert all(torch.equal(written[name], expected[name]) for name in expected)


def test_a_view_key_that_is_also_a_storage_key_is_refused(tmp_path: Path) -> None:
    main = b"\x80\x02}(" + enc("a") + _legacy_view("r", "r", 2, 4) + b"u."
    path = legacy_file(tmp_path / "clash.pt", main, {"r": (8, struct.pack("<8f", *range(8)))})
    with pytest.raises(UnsafeFileError, match="both a storage and a storage view"):
        open_model(path)


def _pid(storage: str, key: str, numel: int) -> bytes:
    return b"(" + enc("storage") + glob("torch", storage) + enc(key) + enc("cpu") + enc(numel) + b"tQ"


def _big_endian_archive(path: Path, tensors: bytes, storages: dict[str, bytes]) -> Path:
    records = [("archive/data.pkl", b"\x80\x02}(" + tensors + b"u."), ("archive/byteorder", b"big")]
    records += [(f"archive/data/{key}", data) for key, data in storages.items()]
    return write_zip(path, records + [("archive/version", b"3\n")])


def _v2(pid: bytes, numel: int) -> bytes:
    return (glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + enc(0) + enc((numel,)) + enc((1,))
            + enc(False) + call("collections", "OrderedDict").data + b"tR")


def _v3(pid: bytes, numel: int, dtype: str) -> bytes:
    return (glob("torch._utils", "_rebuild_tensor_v3") + b"(" + pid + enc(0) + enc((numel,)) + enc((1,))
            + enc(False) + call("collections", "OrderedDict").data + glob("torch", dtype) + b"tR")


def test_big_endian_archives_swap_by_the_storage_as_torch_does(tmp_path: Path) -> None:
    """A typed storage is swapped by its element size; a byte storage (behind v3 dtypes) never."""
    halves = torch.tensor([1.5, -2.0, 3.25, 65504.0], dtype=torch.float16)
    tensors = (enc("floats") + _v2(_pid("FloatStorage", "0", 4), 4)
               + enc("halves") + _v3(_pid("UntypedStorage", "1", 8), 4, "float16")
               + enc("longs") + _v2(_pid("LongStorage", "2", 2), 2))
    path = _big_endian_archive(tmp_path / "big.ckpt", tensors, {
        "0": struct.pack(">4f", 1.0, -2.5, 3.0, 1e30), "1": halves.numpy().tobytes(),
        "2": struct.pack(">2q", 7, -(2**40))})
    expected = torch_load_trusted(path)
    assert expected["floats"].tolist() == [1.0, -2.5, 3.0, pytest.approx(1e30)]  # the premises
    assert torch.equal(expected["halves"], halves)
    with open_model(path) as model:
        for name in expected:
            assert torch.equal(model.load(name), expected[name]), name
    written, _ = _converted(path, tmp_path)
    assert all(torch.equal(written[name], expected[name]) for name in expected)


def test_a_typed_storage_read_as_another_size_in_a_big_endian_archive_is_refused(tmp_path: Path) -> None:
    tensors = enc("halves") + _v3(_pid("FloatStorage", "0", 2), 4, "float16")
    path = _big_endian_archive(tmp_path / "mixed.ckpt", tensors, {"0": b"\x00" * 8})
    with pytest.raises(BadInputError, match="swap its bytes in 4-byte units"):
        open_model(path)


def test_the_reference_reading_gives_torch_load_values_for_every_benign_file(tmp_path: Path) -> None:
    from benign import write_benign

    from sdhub.formats.reference_reader import ReferenceReading

    compared = 0
    for case in write_benign(tmp_path / "benign"):
        try:
            loaded = _flat(torch_load_trusted(case.path))
        except AttributeError:  # torch cannot load its own legacy files of v3 dtypes (uint16)
            loaded = {}
        with ReferenceReading(case.path) as reference, open_model(case.path) as model:
            assert sorted(reference.names) == sorted(model.tensors), case.name
            for name in reference.names:
                value = reference.load(name)
                matches = [v for k, v in loaded.items() if k == name or k.endswith("." + name)]
                if matches:
                    compared += 1
                    assert torch.equal(value, matches[0]), (case.name, name)
                assert torch.equal(value, model.load(name)), (case.name, name)
    assert compared >= 60


def test_verify_catches_a_mistake_of_the_reader_that_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the old byte-order mistake put back into the converting reader, --verify fails."""
    from sdhub.errors import VerificationError
    from sdhub.formats import model_file

    tensors = enc("floats") + _v2(_pid("FloatStorage", "0", 4), 4)
    path = _big_endian_archive(tmp_path / "big.ckpt", tensors, {"0": struct.pack(">4f", 1.0, -2.5, 3.0, 4.0)})
    monkeypatch.setattr(model_file, "byte_swapped", lambda name, ref, big_endian, source: False)
    with pytest.raises(VerificationError, match="'floats' differs"):
        convert(path, tmp_path / "out.safetensors", verify=True)
    assert not (tmp_path / "out.safetensors").exists()
    monkeypatch.undo()
    convert(path, tmp_path / "out.safetensors", verify=True)


def test_a_placeholder_holding_tensors_is_reported_as_such(tmp_path: Path) -> None:
    import argparse

    torch.save({"w": torch.ones(2), "args": argparse.Namespace(init=torch.zeros(3), lr=0.1)}, tmp_path / "ns.pt")
    with open_model(tmp_path / "ns.pt") as model:
        assert list(model.tensors) == ["w"]
        assert model.report.dropped == ["args (argparse.Namespace holding tensors)"]
