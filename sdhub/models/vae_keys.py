"""A VAE's tensor names in diffusers' layout, renamed to the original (LDM) layout checkpoints use.

Standalone VAEs are often published in diffusers' layout (``diffusion_pytorch_model.safetensors``,
``decoder.up_blocks.0.resnets.0.conv1.weight``), while a single-file checkpoint holds its VAE under
``first_stage_model.`` in the original layout (``decoder.up.3.block.0.conv1.weight``). The two hold
the same numbers: only names differ, the decoder's up blocks run in the opposite order, and the
mid-block attention projections are linear (C, C) in diffusers but 1x1 convolutions (C, C, 1, 1)
in the original, the same bytes in another shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sdhub.errors import BadInputError

_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
              # names of diffusers before 0.15
              "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
_ATTENTION_PROJECTIONS = {"q", "k", "v", "proj_out"}
_UP_BLOCK = re.compile(r"decoder\.up_blocks\.(\d+)\.")


def is_diffusers_vae(names: Iterable[str]) -> bool:
    """True when a VAE's tensor names are diffusers' (``down_blocks``/``up_blocks``/``mid_block``)."""
    return any(".down_blocks." in name or ".up_blocks." in name or ".mid_block." in name for name in names)


def ldm_vae_names(names: Iterable[str]) -> dict[str, str]:
    """``{diffusers name: original name}`` for every tensor of a diffusers-layout VAE."""
    names = list(names)
    up_blocks = 1 + max((int(m.group(1)) for name in names if (m := _UP_BLOCK.match(name))), default=-1)
    return {name: _ldm_name(name, up_blocks) for name in names}


def ldm_vae_shape(ldm_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The original layout's shape: attention projections become 1x1 convolutions."""
    parts = ldm_name.split(".")
    if len(shape) == 2 and len(parts) >= 4 and parts[-3] == "attn_1" and parts[-2] in _ATTENTION_PROJECTIONS:
        return (*shape, 1, 1)
    return shape


def _ldm_name(name: str, up_blocks: int) -> str:
    side, _, rest = name.partition(".")
    if side in ("quant_conv", "post_quant_conv"):
        return name
    if side not in ("encoder", "decoder"):
        raise BadInputError(f"VAE tensor {name!r} is not part of a diffusers VAE")
    if rest.startswith("conv_norm_out."):
        return f"{side}.norm_out.{rest[len('conv_norm_out.'):]}"
    if rest.startswith(("conv_in.", "conv_out.")):
        return name
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        return f"{side}.down.{m[1]}.block.{m[2]}.{_resnet_part(m[3])}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", rest):
        return f"{side}.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        return f"{side}.up.{up_blocks - 1 - int(m[1])}.block.{m[2]}.{_resnet_part(m[3])}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", rest):
        return f"{side}.up.{up_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
        return f"{side}.mid.block_{int(m[1]) + 1}.{_resnet_part(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)\.(weight|bias)", rest):
        if m[1] in _ATTENTION:
            return f"{side}.mid.attn_1.{_ATTENTION[m[1]]}.{m[2]}"
    raise BadInputError(f"VAE tensor {name!r} has no place in the original layout")


def _resnet_part(rest: str) -> str:
    return "nin_shortcut" + rest[len("conv_shortcut"):] if rest.startswith("conv_shortcut.") else rest
