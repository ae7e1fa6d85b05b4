"""Rename diffusers/transformers state dicts into the original single-file layouts (LDM, SGM, OpenCLIP).

Works on any tensors, including ones on the 'meta' device, so the same renaming yields full-size key->shape maps.
"""

from __future__ import annotations

import math
import re

import torch

from sdhub.models.vae_keys import ldm_vae_names, ldm_vae_shape

_UNET_RESNET = {
    "norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
}


def unet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel names -> names under ``model.diffusion_model.`` (without that prefix)."""
    names = unet_key_map(list(state), layers_per_block)
    return {names[key]: tensor for key, tensor in state.items()}


def unet_key_map(keys: list[str], layers_per_block: int) -> dict[str, str]:
    """Each UNet2DConditionModel parameter name -> its LDM name relative to ``model.diffusion_model.``."""
    stride = layers_per_block + 1  # resnets per level on the way down, plus the downsampler
    up_levels_with_attention = {int(m.group(1)) for k in keys if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    return {key: _unet_key(key, stride, up_levels_with_attention) for key in keys}


def _unet_key(key: str, stride: int, up_levels_with_attention: set[int]) -> str:
    for old, new in _UNET_TOP.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    if m := re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        direction, level, kind, layer, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        if direction == "down":
            block = f"input_blocks.{1 + level * stride + layer}"
        else:
            block = f"output_blocks.{level * stride + layer}"
        return f"{block}.0.{_resnet_rest(rest)}" if kind == "resnets" else f"{block}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m.group(1)) + 1) * stride}.0.op.{m.group(2)}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        level = int(m.group(1))
        position = 2 if level in up_levels_with_attention else 1
        return f"output_blocks.{level * stride + stride - 1}.{position}.conv.{m.group(2)}"
    if m := re.match(r"mid_block\.resnets\.(\d)\.(.*)", key):
        return f"middle_block.{2 * int(m.group(1))}.{_resnet_rest(m.group(2))}"
    if key.startswith("mid_block.attentions.0."):
        return "middle_block.1." + key[len("mid_block.attentions.0."):]
    raise ValueError(f"no LDM name for UNet key {key!r}")


def _resnet_rest(rest: str) -> str:
    module, _, param = rest.partition(".")
    return f"{_UNET_RESNET[module]}.{param}"


def vae_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AutoencoderKL names -> names under ``first_stage_model.`` (without that prefix)."""
    names = ldm_vae_names(state)
    return {names[key]: tensor.reshape(ldm_vae_shape(names[key], tuple(tensor.shape))) for key, tensor in state.items()}


def clip_to_hf_layout(state: dict[str, torch.Tensor], positions: int) -> dict[str, torch.Tensor]:
    """CLIPTextModel names with the ``text_model.`` prefix (transformers 5 drops it) plus int64 position_ids."""
    out = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}
    out["text_model.embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64).unsqueeze(0)
    return out


def clip_to_openclip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModel(WithProjection) names -> OpenCLIP text-tower names (``transformer.resblocks.N...``)."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    width = state["embeddings.token_embedding.weight"].shape[1]
    out: dict[str, torch.Tensor] = {
        "token_embedding.weight": state["embeddings.token_embedding.weight"],
        "positional_embedding": state["embeddings.position_embedding.weight"],
        "ln_final.weight": state["final_layer_norm.weight"],
        "ln_final.bias": state["final_layer_norm.bias"],
        # OpenCLIP multiplies x @ text_projection; a Linear layer stores the transpose.
        "text_projection": (state["text_projection.weight"].T.contiguous() if "text_projection.weight" in state
                            else torch.eye(width)),
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
    }
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    for n in layers:
        src, dst = f"encoder.layers.{n}.", f"transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([state[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for old, new in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{dst}{new}.{kind}"] = state[f"{src}{old}.{kind}"]
    return out
