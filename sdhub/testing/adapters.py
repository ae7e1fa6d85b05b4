"""LoRA-family networks and textual-inversion embeddings for the factory's tiny models, in real file layouts."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import torch

from sdhub.testing import ldm_keys, tiny_configs
from sdhub.testing.components import diffusers_state_dicts

LORA_FORMATS = ("kohya", "peft", "locon", "loha", "lokr")
LORA_BASES = ("sd1", "sd2", "sdxl")
RANK = 4
ALPHA = 2.0
_ATTENTION_MODULE = re.compile(r".*attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\."
                               r"(attn[12]\.(to_[qkv]|to_out\.0)|ff\.net\.(0\.proj|2)))$")
_CONV_MODULE = re.compile(r".*(resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)|(down|up)samplers\.0\.conv)$")
_TEXT_MODULE = re.compile(r"encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])$")


@dataclass(frozen=True)
class Target:
    """One module a network patches: its name in the file and its weight's shape."""

    component: str  # 'unet', 'text_encoder' or 'text_encoder_2'
    module: str  # diffusers/transformers module path, e.g. 'down_blocks.0.attentions.0.proj_in'
    file_name: str  # kohya lora_name, e.g. 'lora_unet_down_blocks_0_attentions_0_proj_in'
    shape: tuple[int, ...]


def lora_targets(base: str, *, convolutions: bool = False) -> list[Target]:
    """The modules kohya's sd-scripts trains for ``base``: attention and MLP linears (plus resnet and
    resampler convolutions with ``convolutions``, as LoCon does)."""
    if base not in LORA_BASES:
        raise ValueError(f"unknown base {base!r}; expected one of {', '.join(LORA_BASES)}")
    parts = diffusers_state_dicts(base)
    layers = tiny_configs.unet_config(base)["layers_per_block"]
    ldm_names = ldm_keys.unet_key_map(list(parts["unet"]), layers)
    targets = []
    for key, weight in parts["unet"].items():
        module = key.removesuffix(".weight")
        if not key.endswith(".weight") or weight.ndim < 2:
            continue
        if not (_ATTENTION_MODULE.match(module) or (convolutions and _CONV_MODULE.match(module))):
            continue
        # kohya names SD1/SD2 UNet modules by their diffusers paths, SDXL ones by their SGM (LDM) paths.
        path = ldm_names[key].removesuffix(".weight") if base == "sdxl" else module
        targets.append(Target("unet", module, "lora_unet_" + path.replace(".", "_"), tuple(weight.shape)))
    encoders = {"text_encoder": "lora_te", "text_encoder_2": "lora_te2"}
    if base == "sdxl":
        encoders["text_encoder"] = "lora_te1"
    for component, prefix in encoders.items():
        for key, weight in parts.get(component, {}).items():
            module = key.removeprefix("text_model.").removesuffix(".weight")
            if key.endswith(".weight") and _TEXT_MODULE.match(module):
                file_name = f"{prefix}_text_model_{module.replace('.', '_')}"
                targets.append(Target(component, module, file_name, tuple(weight.shape)))
    return targets


def lora_tensors(base: str, fmt: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The tensors of a rank-4 network of format ``fmt`` (see ``LORA_FORMATS``) for the tiny ``base`` model."""
    if fmt not in LORA_FORMATS:
        raise ValueError(f"unknown LoRA fmt {fmt!r}; expected one of {', '.join(LORA_FORMATS)}")
    generator = torch.Generator().manual_seed(seed + 11)

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * 0.2

    tensors: dict[str, torch.Tensor] = {}
    for target in lora_targets(base, convolutions=fmt == "locon"):
        out_dim, in_dim, *kernel = target.shape
        alpha = torch.tensor(ALPHA)
        if fmt == "peft":
            # PEFT names: <component>.<module path>.lora_A/.lora_B; 1x1 convs keep 4-D factors.
            text_model = "text_model." if target.component != "unet" else ""
            name = f"{target.component}.{text_model}{target.module}"
            tensors[f"{name}.lora_A.weight"] = random(RANK, in_dim, *kernel)
            tensors[f"{name}.lora_B.weight"] = random(out_dim, RANK, *([1] * len(kernel)))
        elif fmt in ("kohya", "locon"):
            tensors[f"{target.file_name}.lora_down.weight"] = random(RANK, in_dim, *kernel)
            tensors[f"{target.file_name}.lora_up.weight"] = random(out_dim, RANK, *([1] * len(kernel)))
            tensors[f"{target.file_name}.alpha"] = alpha
        elif fmt == "loha":
            flat_in = in_dim * (kernel[0] * kernel[1] if kernel else 1)
            for factor in ("w1", "w2"):
                tensors[f"{target.file_name}.hada_{factor}_a"] = random(out_dim, RANK)
                tensors[f"{target.file_name}.hada_{factor}_b"] = random(RANK, flat_in)
            tensors[f"{target.file_name}.alpha"] = alpha
        else:  # lokr: kron(w1, w2_a @ w2_b) with a full 4x4 w1 and a decomposed w2
            tensors[f"{target.file_name}.lokr_w1"] = random(4, 4)
            tensors[f"{target.file_name}.lokr_w2_a"] = random(out_dim // 4, RANK)
            tensors[f"{target.file_name}.lokr_w2_b"] = random(RANK, in_dim // 4)
            tensors[f"{target.file_name}.alpha"] = alpha
    return tensors


def kohya_metadata(base: str, fmt: str, output_name: str, tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """The ``ss_*``/``modelspec.*``/``sshs_*`` header entries sd-scripts writes (all values are strings)."""
    if fmt == "peft":
        return {}
    version = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}[base]
    architecture = {"sd1": "stable-diffusion-v1", "sd2": "stable-diffusion-v2-512",
                    "sdxl": "stable-diffusion-xl-v1-base"}[base]
    module = "networks.lora" if fmt == "kohya" else "lycoris.kohya"
    metadata = {
        "ss_network_module": module,
        "ss_network_dim": str(RANK),
        "ss_network_alpha": str(ALPHA),
        "ss_base_model_version": version,
        "ss_v2": str(base == "sd2"),
        "ss_output_name": output_name,
        "ss_sd_model_name": {"sd1": "v1-5-pruned-emaonly.safetensors", "sd2": "v2-1_512-ema-pruned.safetensors",
                             "sdxl": "sd_xl_base_1.0.safetensors"}[base],
        "ss_resolution": "(1024, 1024)" if base == "sdxl" else "(512, 512)",
        "ss_tag_frequency": json.dumps({"10_sdhubtoken": {"sdhubtoken": 10, "1girl": 8, "solo": 6}}),
        "ss_num_train_images": "10",
        "ss_training_started_at": "1700000000.0",
        "ss_learning_rate": "0.0001",
        "ss_epoch": "4",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{architecture}/lora",
        "modelspec.implementation": ("https://github.com/Stability-AI/generative-models" if base == "sdxl"
                                     else "diffusers"),
        "modelspec.title": output_name,
        "modelspec.resolution": "1024x1024" if base == "sdxl" else "512x512",
    }
    if fmt != "kohya":
        metadata["ss_network_args"] = json.dumps({"algo": fmt, "conv_dim": str(RANK), "conv_alpha": "1"})
    metadata["sshs_model_hash"] = tensor_payload_sha256(tensors)
    return metadata


def tensor_payload_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a safetensors file's bytes after its header, as sd-scripts' ``sshs_model_hash`` records it."""
    from safetensors.torch import save

    data = save(tensors)
    header_length = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header_length:]).hexdigest()


def embedding_widths(base: str) -> dict[str, int]:
    """Text-encoder width(s) an embedding for ``base`` must have; SDXL has one per encoder."""
    if base == "sd1":
        return {"emb_params": tiny_configs.SD1_TEXT_WIDTH}
    if base == "sd2":
        return {"emb_params": tiny_configs.SD2_TEXT_WIDTH}
    if base == "sdxl":
        return {"clip_l": tiny_configs.SDXL_CLIP_L_WIDTH, "clip_g": tiny_configs.SDXL_CLIP_G_WIDTH}
    raise ValueError(f"unknown base {base!r}; expected sd1, sd2 or sdxl")


def embedding_vectors(base: str, vectors: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Name -> (vectors, width) tensor: ``emb_params`` for SD1/SD2, ``clip_l`` + ``clip_g`` for SDXL."""
    generator = torch.Generator().manual_seed(seed + 13)
    return {name: torch.randn(vectors, width, generator=generator) * 0.5
            for name, width in embedding_widths(base).items()}
