"""GGUF files as ComfyUI-GGUF uses them (Flux, SD3): read with the gguf library, detected, hashed,
catalogued, never rewritten; hostile headers end in one line, before the library trusts them."""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from sdhub.errors import BadInputError
from sdhub.formats import open_model
from sdhub.ops.hashing import hash_model
from sdhub.ops.inspect import inspect_file
from sdhub.testing import families, gguf_files


@pytest.fixture(scope="module")
def flux_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gguf_files.write_gguf(tmp_path_factory.mktemp("gguf") / "flux1-dev-Q8_0.gguf",
                                 families.flux_shapes("dev"), "flux")


def test_a_flux_gguf_is_a_flux_diffusion_model_with_its_quantisation(flux_gguf: Path) -> None:
    shapes = families.flux_shapes("dev")
    with open_model(flux_gguf) as model:
        assert model.format == "gguf" and model.metadata["general.architecture"] == "flux"
        assert {name: info.shape for name, info in model.tensors.items()} == shapes
        assert model.tensors["double_blocks.0.img_attn.qkv.weight"].dtype_name == "Q8_0"
        assert model.tensors["double_blocks.0.img_attn.qkv.bias"].dtype_name == "F32"
    report = inspect_file(flux_gguf)
    assert (report.detection.kind, report.detection.architecture, report.base_model) == (
        "diffusion-model", "flux1-dev", "flux1")
    ones = sum(len(shape) == 1 for shape in shapes.values())
    assert report.quantisation["types"] == {"F32": ones, "Q8_0": len(shapes) - ones}
    assert report.dtype == "Q8_0" and report.prune is None
    assert report.parameter_count == sum(math.prod(shape) for shape in shapes.values())


def test_inspect_shows_the_quantisation_types_with_counts(flux_gguf: Path, run_cli) -> None:
    result = run_cli("inspect", flux_gguf)
    assert result.exit_code == 0, result.stderr
    lines = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in result.stdout.splitlines()
             if "  " in line}
    assert lines["quantisation"] == "GGUF, Q8_0 x36, F32 x48"
    assert lines["kind"] == "diffusion-model" and lines["format"].startswith("gguf")
    data = json.loads(run_cli("inspect", flux_gguf, "--json").stdout)
    assert data["quantisation"]["scheme"] == "gguf" and data["quantisation"]["quantised_tensors"] == 36


def test_an_sd3_gguf_is_detected_as_sd3(tmp_path: Path) -> None:
    path = gguf_files.write_gguf(tmp_path / "sd3.5_medium-Q4_0.gguf", families.sd3_shapes("sd3.5-medium"), "sd3",
                                 "Q4_0")
    report = inspect_file(path, check_values=False)
    assert (report.detection.kind, report.detection.architecture) == ("diffusion-model", "sd3.5-medium")
    assert "Q4_0" in report.quantisation["types"]


def test_a_full_size_flux_header_reads_without_allocating(tmp_path: Path) -> None:
    """city96's flux1-dev-Q8_0.gguf layout at full size; the data is a hole in a sparse file."""
    path = gguf_files.write_gguf_header(tmp_path / "flux1-dev-Q8_0.gguf", families.flux_shapes("dev", size="full"),
                                        "flux")
    assert path.stat().st_size > 12_000_000_000
    report = inspect_file(path, check_values=False)
    assert (report.detection.kind, report.detection.architecture) == ("diffusion-model", "flux1-dev")
    with open_model(path) as model:
        qkv = model.tensors["double_blocks.18.img_attn.qkv.weight"]
        assert (qkv.shape, qkv.dtype_name, qkv.nbytes) == ((9216, 3072), "Q8_0", 9216 * 3072 // 32 * 34)


def test_shapes_and_values_come_back_in_torch_order(tmp_path: Path) -> None:
    """GGUF keeps dimensions innermost first; a (3, 5) array must read back as (3, 5), element for element,
    and a tensor the converter flattened comes back in the shape its orig_shape metadata gives."""
    import gguf
    import torch

    values = np.arange(15, dtype=np.float16).reshape(3, 5)
    conv3d = np.arange(2 * 3 * 1 * 2 * 2, dtype=np.float32).reshape(2, 3, 1, 2, 2)
    writer = gguf.GGUFWriter(tmp_path / "t.gguf", "sd1")
    writer.add_tensor("proj.weight", values)
    writer.add_array("comfy.gguf.orig_shape.patch.weight", list(conv3d.shape))
    writer.add_tensor("patch.weight", conv3d.reshape(2 * 3 * 1 * 2, 2))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open_model(tmp_path / "t.gguf") as model:
        assert model.tensors["proj.weight"].shape == (3, 5)
        assert torch.equal(model.load("proj.weight"), torch.from_numpy(values))
        assert model.tensors["patch.weight"].shape == (2, 3, 1, 2, 2)
        assert torch.equal(model.load("patch.weight"), torch.from_numpy(conv3d))


def test_hash_and_scan_take_gguf_files(flux_gguf: Path, tmp_home, run_cli) -> None:
    hashes = hash_model(flux_gguf)
    sha256 = hashlib.sha256(flux_gguf.read_bytes()).hexdigest()
    assert hashes.file.sha256 == sha256 and hashes.file.autov2 == sha256[:10]
    assert hashes.kind == "diffusion-model" and hashes.not_a_model is None
    target = tmp_home.folder("checkpoint") / flux_gguf.name
    target.write_bytes(flux_gguf.read_bytes())
    assert run_cli("--home", tmp_home.root, "scan").exit_code == 0
    listed = json.loads(run_cli("--home", tmp_home.root, "ls", "--json").stdout)
    assert [(a["file_name"], a["kind"], a["sha256"]) for a in listed] == [(flux_gguf.name, "diffusion-model", sha256)]


@pytest.mark.parametrize("command", [["convert"], ["prune"], ["prune", "--dtype", "fp16"]])
def test_rewriting_a_gguf_is_refused_in_one_line(flux_gguf: Path, tmp_path: Path, run_cli, command) -> None:
    out = tmp_path / "out.safetensors"
    result = run_cli(*command, flux_gguf, "-o", out)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "quantised" in result.stderr and "does not" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


# ---- hostile files --------------------------------------------------------------------------


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _gguf(kvs: list[bytes], tensors: list[bytes], *, version: int = 3, counts: tuple[int, int] | None = None,
          data: bytes = b"\0" * 64) -> bytes:
    tensor_count, kv_count = counts or (len(tensors), len(kvs))
    head = b"GGUF" + struct.pack("<IQQ", version, tensor_count, kv_count) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % 32) + data


def _tensor(name: bytes, ne: tuple[int, ...], type_id: int = 0, offset: int = 0, n_dims: int | None = None) -> bytes:
    dims = len(ne) if n_dims is None else n_dims
    return _string(name) + struct.pack("<I", dims) + b"".join(struct.pack("<Q", d) for d in ne) + struct.pack(
        "<IQ", type_id, offset)


ARCH = _string(b"general.architecture") + struct.pack("<I", 8) + _string(b"flux")
HOSTILE = {
    "truncated header": (_gguf([ARCH], [_tensor(b"w", (4, 4))])[:40], "runs past the end"),
    "huge tensor count": (_gguf([ARCH], [], counts=(2**60, 1)), "more than a"),
    "array of 2**62 items": (_gguf([_string(b"k") + struct.pack("<IIQ", 9, 0, 2**62)], []), "metadata arrays hold"),
    "array past the end": (_gguf([_string(b"k") + struct.pack("<IIQ", 9, 0, 5000)], []), "runs past the end"),
    "nested arrays": (_gguf([_string(b"k") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 0, 1) + b"x"], []),
                      "nested arrays"),
    "tensor past the end": (_gguf([ARCH], [_tensor(b"w", (1024, 1024))]), "runs past the end of the file"),
    "offset past the end": (_gguf([ARCH], [_tensor(b"w", (4,), offset=2**40)]), "runs past the end of the file"),
    "overlapping tensors": (_gguf([ARCH], [_tensor(b"a", (8,)), _tensor(b"b", (8,), offset=0)]), "share bytes"),
    "misaligned tensor": (_gguf([ARCH], [_tensor(b"a", (1,), offset=4)]), "not a multiple of the alignment"),
    "unknown type": (_gguf([ARCH], [_tensor(b"a", (4,), type_id=99)]), "GGML type 99"),
    "five dimensions": (_gguf([ARCH], [_tensor(b"a", (1, 1, 1, 1, 1))]), "5 dimensions"),
    "partial block": (_gguf([ARCH], [_tensor(b"a", (16,), type_id=8)]), "whole blocks of 32"),
    "duplicate tensor": (_gguf([ARCH], [_tensor(b"a", (4,)), _tensor(b"a", (4,), offset=32)]), "names the tensor"),
    "duplicate key": (_gguf([ARCH, ARCH], []), "names the metadata key"),
    "dimension overflow": (_gguf([ARCH], [_tensor(b"a", (2**40, 2**40))]), "runs past the end of the file"),
    "bad value type": (_gguf([_string(b"k") + struct.pack("<I", 77)], []), "type 77"),
    "version 1": (_gguf([], [], version=1), "GGUF version 1"),
    "big-endian": (_gguf([], [], version=3 << 24), "big-endian"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_end_in_one_line_before_the_library_reads_them(tmp_path: Path, case: str) -> None:
    content, words = HOSTILE[case]
    path = tmp_path / "hostile.gguf"
    path.write_bytes(content)
    started = time.monotonic()
    with pytest.raises(BadInputError) as raised:
        open_model(path)
    assert time.monotonic() - started < 2
    message = str(raised.value)
    assert message.startswith("hostile.gguf: ") and words in message and "\n" not in message, message


def test_a_hostile_gguf_is_one_line_from_the_cli_and_broken_in_the_catalog(tmp_path: Path, tmp_home, run_cli) -> None:
    path = tmp_home.folder("checkpoint") / "flux1-dev-Q8_0.gguf"
    path.write_bytes(HOSTILE["array of 2**62 items"][0])
    result = run_cli("inspect", path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "metadata arrays hold" in result.stderr
    assert run_cli("--home", tmp_home.root, "scan").exit_code == 0
    [entry] = json.loads(run_cli("--home", tmp_home.root, "ls", "--problems", "--json").stdout)
    assert entry["defect"] == "broken" and "metadata arrays hold" in str(entry["problems"])


def test_a_t5_gguf_in_llama_cpp_names_is_read_under_transformers_names(tmp_path: Path) -> None:
    """city96's t5-v1_1-xxl-encoder GGUFs carry llama.cpp's names; ComfyUI-GGUF (and sdhub) read them as transformers'."""
    from sdhub.formats.gguf_file import T5_NAMES

    shapes = families.t5xxl_shapes()
    llama_cpp = {}
    for name, shape in shapes.items():
        for old, new in reversed(T5_NAMES):
            name = name.replace(new, old)
        llama_cpp[name] = shape
    assert "enc.blk.0.attn_q.weight" in llama_cpp and "token_embd.weight" in llama_cpp
    path = gguf_files.write_gguf(tmp_path / "t5-v1_1-xxl-encoder-Q8_0.gguf", llama_cpp, "t5encoder")
    with open_model(path) as model:
        assert {name: info.shape for name, info in model.tensors.items()} == shapes
    assert inspect_file(path, check_values=False).detection.kind == "text-encoder"


@pytest.mark.parametrize("arch", ["sd1"])  # SDXL reads the same way (checked by hand; 3 s to quantise here)
def test_a_unet_gguf_is_a_diffusion_model_of_its_family(tmp_path: Path, arch: str) -> None:
    """SD1/SDXL GGUFs hold the UNet alone under its bare original names."""
    path = gguf_files.write_gguf(tmp_path / f"{arch}-unet-Q8_0.gguf", families.unet_shapes(arch, layout="ldm-bare"),
                                 arch)
    report = inspect_file(path, check_values=False)
    assert (report.detection.kind, report.base_model) == ("diffusion-model", arch)
    assert report.quantisation["types"]["Q8_0"] > 0
