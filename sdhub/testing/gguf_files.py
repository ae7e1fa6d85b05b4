"""GGUF files as ComfyUI-GGUF's converter writes them, with the ``gguf`` library's own writer.

    from sdhub.testing import families, gguf_files
    gguf_files.write_gguf(tmp / "flux1-dev-Q8_0.gguf", families.flux_shapes("dev"), "flux")
    gguf_files.write_gguf_header(tmp / "flux1-dev-Q4_0.gguf", families.flux_shapes("dev", size="full"), "flux", "Q4_0")

Weights of two or more dimensions whose rows are whole quantisation blocks are quantised, 1-D
tensors (biases, norms) stay F32 and the rest F16, the split the converter makes. A tensor of more
than four dimensions is stored flattened with its torch shape in ``comfy.gguf.orig_shape.<name>``.
``write_gguf_header`` writes full-size files whose data is a hole (a sparse file: no disk, no
memory), for "real layout" tests that read only the header.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from sdhub.testing.writers import write_atomically

ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."


def _stored_type(shape: tuple[int, ...], quant: str):
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    qtype = GGMLQuantizationType[quant]
    if len(shape) == 1:
        return GGMLQuantizationType.F32
    if shape[-1] % GGML_QUANT_SIZES[qtype][0] == 0:
        return qtype
    return GGMLQuantizationType.F16


def _stored_shape(writer, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) <= 4:
        return shape
    writer.add_array(ORIG_SHAPE_PREFIX + name, [int(d) for d in shape])
    return (math.prod(shape[:-1]), shape[-1])


def write_gguf(path: str | Path, shapes: dict[str, tuple[int, ...]], arch: str, quant: str = "Q8_0", *,
               seed: int = 0) -> Path:
    """A tiny GGUF of ``shapes`` (torch order) with random weights, ``general.architecture`` = ``arch``."""
    import gguf

    rng = np.random.default_rng(seed)

    def write(temporary: Path) -> None:
        writer = gguf.GGUFWriter(temporary, arch)
        for name, shape in shapes.items():
            stored = _stored_shape(writer, name, tuple(shape))
            values = rng.standard_normal(stored, dtype=np.float32) * 0.02
            qtype = _stored_type(stored, quant)
            if qtype == gguf.GGMLQuantizationType.F32:
                writer.add_tensor(name, values)
            elif qtype == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(name, values.astype(np.float16))
            else:
                packed = gguf.quants.quantize(values, qtype)
                writer.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return write_atomically(Path(path), write)


def write_gguf_header(path: str | Path, shapes: dict[str, tuple[int, ...]], arch: str, quant: str = "Q8_0") -> Path:
    """A full-size GGUF of ``shapes`` whose tensor data is a hole: the real header, nothing allocated."""
    import gguf

    def write(temporary: Path) -> None:
        writer = gguf.GGUFWriter(temporary, arch)
        data_bytes = 0
        for name, shape in shapes.items():
            stored = _stored_shape(writer, name, tuple(shape))
            qtype = _stored_type(stored, quant)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
            nbytes = math.prod(stored) // block * type_size
            writer.add_tensor_info(name, stored, np.dtype(np.float32), nbytes, raw_dtype=qtype)
            data_bytes += gguf.GGUFWriter.ggml_pad(nbytes, writer.data_alignment)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        header = writer.fout[0].tell()
        writer.close()
        os.truncate(temporary, gguf.GGUFWriter.ggml_pad(header, writer.data_alignment) + data_bytes)

    return write_atomically(Path(path), write)
