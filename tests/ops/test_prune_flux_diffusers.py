"""A Flux checkpoint pruned to fp16 and fp8 in bounded memory loads in diffusers' own single-file Flux loader.

diffusers' converter (``convert_flux_transformer_checkpoint_to_diffusers``) assumes FLUX.1's real width (3072),
so the transformer here is full width with one double and one single block (~1.1 GB in bf16), in ComfyUI's
all-in-one layout with the factory's tiny CLIP-L, T5-XXL and VAE beside it. Its weights are a cheap
deterministic pattern (a random period of 65521 values, prime, so q, k and v rows never repeat alike).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdhub.formats import TensorSpec, write_safetensors
from sdhub.models import components as comp
from sdhub.ops.cast import FP8_MAX
from sdhub.testing import families

pytestmark = pytest.mark.slow

PERIOD = 65521
PLANTED = ("model.diffusion_model.double_blocks.0.img_mlp.0.weight", 1000.0)  # beyond e4m3fn's ±448
# FLUX.1-dev's transformer config, cut to one block of each kind.
CONFIG = {"_class_name": "FluxTransformer2DModel", "patch_size": 1, "in_channels": 64, "out_channels": 64,
          "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 128, "num_attention_heads": 24,
          "joint_attention_dim": 4096, "pooled_projection_dim": 768, "guidance_embeds": True,
          "axes_dims_rope": [16, 56, 56]}

# Runs each prune in one process that has already imported what prune imports, and reports the
# kernel's peak-RSS mark above the idle process (reset before each run).
_PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    import torch, sdhub.cli.app as cli, sdhub.ops.prune

    def status(field):
        return next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith(field + ":"))

    results = []
    for argv in json.loads(sys.argv[1]):
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        idle, err, code = status("VmRSS"), io.StringIO(), 0
        with contextlib.redirect_stderr(err):
            try:
                cli.main(argv)
            except SystemExit as stop:
                code = stop.code or 0
        results.append({"code": code, "stderr": err.getvalue(), "peak_mb": status("VmHWM") - idle})
    print(json.dumps(results))
""")


def pattern(index: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(index)
    period = (torch.randn(PERIOD, generator=generator) * 0.05).to(torch.bfloat16)
    count = math.prod(shape)
    return period.repeat(count // PERIOD + 1)[:count].reshape(shape)


def transformer_shapes() -> dict[str, tuple[int, ...]]:
    shapes = families.flux_shapes("dev", size="full", layout="comfyui")
    later_blocks = ("double_blocks.", "single_blocks.")
    return {k: s for k, s in shapes.items() if not any(b in k and b + "0." not in k for b in later_blocks)}


def source_tensor(index: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    tensor = pattern(index, shape)
    if name == PLANTED[0]:
        tensor.view(-1)[7] = PLANTED[1]
    return tensor


@pytest.fixture(scope="module")
def flux_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("flux-full")
    tiny = load_file(str(families.write_flux_checkpoint(folder / "tiny.safetensors", "dev")))
    specs = [TensorSpec(name, "BF16", shape, producer=lambda i=i, n=name, s=shape: source_tensor(i, n, s))
             for i, (name, shape) in enumerate(transformer_shapes().items())]
    specs += [TensorSpec(name, tensor.dtype, tuple(tensor.shape), producer=lambda t=tensor: t)
              for name, tensor in tiny.items() if comp.component_of(name) != comp.UNET]
    return write_safetensors(folder / "flux1-dev.safetensors", specs)


def expected(index: int, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    tensor = source_tensor(index, name, shape)
    return tensor.clamp(-FP8_MAX, FP8_MAX).to(dtype) if dtype == torch.float8_e4m3fn else tensor.to(dtype)


def test_flux_prunes_to_fp16_and_fp8_in_bounded_memory_and_loads_in_diffusers(flux_full: Path) -> None:
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    folder = flux_full.parent
    outputs = {dtype: folder / f"flux1-dev-{dtype}.safetensors" for dtype in ("fp16", "fp8")}
    jobs = [["prune", str(flux_full), "--dtype", dtype, "-o", str(out)] for dtype, out in outputs.items()]
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=280)  # inside the suite's 300 s
    assert done.returncode == 0, done.stderr[-2000:]
    runs = dict(zip(outputs, json.loads(done.stdout.strip().splitlines()[-1])))
    size_mb = flux_full.stat().st_size / 2**20
    for dtype, run in runs.items():
        assert run["code"] == 0, run["stderr"]
        # Streamed tensor by tensor: the process never holds more than a small part of the 1 GiB file.
        assert run["peak_mb"] < size_mb / 5, (dtype, run["peak_mb"], size_mb)
    assert "1 value(s) clamped" in runs["fp8"]["stderr"]

    config = folder / "config" / "transformer"
    config.mkdir(parents=True)
    (config / "config.json").write_text(json.dumps(CONFIG))
    shapes = transformer_shapes()
    for dtype, matrices in (("fp16", torch.float16), ("fp8", torch.float8_e4m3fn)):
        # fp16 holds every fp8 and fp16 value exactly, so the loaded weights compare bit for bit.
        model = FluxTransformer2DModel.from_single_file(str(outputs[dtype]), config=str(config.parent),
                                                        subfolder="transformer", local_files_only=True,
                                                        torch_dtype=torch.float16)
        loaded = model.state_dict()
        del model
        # What the weights must be: each source tensor cast as asked (vectors such as biases and norm scales
        # stay 16 bit), in diffusers' names by diffusers' own converter.
        wanted = {name: expected(index, name, shape, matrices if len(shape) >= 2 else torch.float16)
                  for index, (name, shape) in enumerate(shapes.items())}
        converted = convert_flux_transformer_checkpoint_to_diffusers(wanted)
        assert set(loaded) == set(converted)
        for name, tensor in converted.items():
            assert torch.equal(loaded[name], tensor.to(torch.float16)), (dtype, name)
        del loaded, wanted, converted
