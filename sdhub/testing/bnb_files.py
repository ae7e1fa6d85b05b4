"""bitsandbytes NF4 checkpoints in the layout Forge ships ``flux1-dev-bnb-nf4`` in, written without bitsandbytes.

    from sdhub.testing import bnb_files, families
    bnb_files.write_nf4(tmp / "flux1-dev-bnb-nf4-v2.safetensors", families.flux_checkpoint_shapes("dev"))

Each 2-D weight of the diffusion model (``model.diffusion_model.*.weight``) is quantised as
``bitsandbytes.nn.Params4bit`` saves it (``QuantState.as_dict(packed=True)``): the packed 4-bit
values (two a byte, shape ``[n/2, 1]``, uint8) under the weight's name, then ``.absmax``,
``.quant_map`` and the JSON ``.quant_state.bitsandbytes__nf4`` (quant_type, blocksize, dtype,
shape) beside it; v1's double quantisation adds ``.nested_absmax`` and ``.nested_quant_map`` and
stores ``absmax`` as uint8. The rest (biases, norms, text encoders, VAE) stays 16-bit. The values
are quantised as NF4 does it (per-block absmax, nearest code), enough for a faithful layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sdhub.testing import writers

#: The 16 NF4 code values (QLoRA, Dettmers et al. 2023), as bitsandbytes stores them in ``quant_map``.
NF4_CODE = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
            -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
            0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
            0.7229568362236023, 1.0)
BLOCKSIZE = 64
NESTED_BLOCKSIZE = 256
DIFFUSION_PREFIX = "model.diffusion_model."


def nf4_entries(name: str, weight: torch.Tensor, *, double_quant: bool = False) -> dict[str, torch.Tensor]:
    """The tensors bitsandbytes saves for one 4-bit weight ``name`` (a ``...weight`` key)."""
    flat = weight.detach().float().reshape(-1)
    padded = torch.nn.functional.pad(flat, (0, -flat.numel() % BLOCKSIZE)).reshape(-1, BLOCKSIZE)
    absmax = padded.abs().amax(dim=1).clamp(min=1e-12)
    code = torch.tensor(NF4_CODE)
    indices = ((padded / absmax[:, None]).reshape(-1, 1) - code).abs().argmin(dim=1)[:flat.numel()]
    indices = torch.nn.functional.pad(indices, (0, flat.numel() % 2)).to(torch.uint8)
    packed = (indices[0::2] << 4 | indices[1::2]).reshape(-1, 1)
    state = {"quant_type": "nf4", "blocksize": BLOCKSIZE, "dtype": str(weight.dtype).removeprefix("torch."),
             "shape": list(weight.shape)}
    out = {name: packed, f"{name}.absmax": absmax, f"{name}.quant_map": code.clone()}
    if double_quant:
        offset = float(absmax.mean())
        centred = torch.nn.functional.pad(absmax - offset, (0, -absmax.numel() % NESTED_BLOCKSIZE))
        nested_absmax = centred.reshape(-1, NESTED_BLOCKSIZE).abs().amax(dim=1).clamp(min=1e-12)
        scaled = centred.reshape(-1, NESTED_BLOCKSIZE) / nested_absmax[:, None]
        out[f"{name}.absmax"] = ((scaled.reshape(-1)[:absmax.numel()] + 1) * 127.5).round().to(torch.uint8)
        out[f"{name}.nested_absmax"] = nested_absmax
        out[f"{name}.nested_quant_map"] = torch.linspace(-1, 1, 256)
        state.update({"nested_blocksize": NESTED_BLOCKSIZE, "nested_dtype": "float32", "nested_offset": offset})
    blob = json.dumps(state).encode("utf-8")
    out[f"{name}.quant_state.bitsandbytes__nf4"] = torch.tensor(list(blob), dtype=torch.uint8)
    return out


def write_nf4(path: str | Path, shapes: dict[str, tuple[int, ...]], *, double_quant: bool = False,
              seed: int = 0) -> Path:
    """A checkpoint of ``shapes`` with its diffusion model's 2-D weights in NF4 (v1: ``double_quant``)."""
    meta = {name: (torch.arange(shape[-1]).expand(shape).contiguous() if name.endswith("position_ids")
                   else torch.empty(shape, device="meta")) for name, shape in shapes.items()}
    state = writers.materialize(meta, torch.bfloat16, seed)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.startswith(DIFFUSION_PREFIX) and name.endswith(".weight") and tensor.dim() == 2:
            out.update(nf4_entries(name, tensor, double_quant=double_quant))
        else:
            out[name] = tensor
    return writers.save_tensors(Path(path), out)
