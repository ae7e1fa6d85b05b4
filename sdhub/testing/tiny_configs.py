"""Diffusers/transformers configs of the factory's models: tiny widths, real topologies (and SD1.5's real sizes)."""

from __future__ import annotations

from typing import Any

from sdhub.generate.byte_tokenizer import BOS_TOKEN_ID, EOS_TOKEN_ID, VOCAB_SIZE

ARCHES = ("sd1", "sd1-inpainting", "sd2", "sd2-v", "sdxl", "sdxl-refiner")
SIZES = ("tiny", "full")

# Tiny text widths differ per family so that shape-based checks can tell them apart.
SD1_TEXT_WIDTH = 32
SD2_TEXT_WIDTH = 64
SDXL_CLIP_L_WIDTH = 32
SDXL_CLIP_G_WIDTH = 64
SDXL_TIME_EMBED_DIM = 8  # 256 in the real SDXL
SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def family(arch: str) -> str:
    """'sd1', 'sd2' or 'sdxl' for any arch name."""
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHES)}")
    return arch.split("-")[0]


def unet_config(arch: str, size: str = "tiny") -> dict[str, Any]:
    """UNet2DConditionModel keyword arguments."""
    fam = family(arch)
    _check_size(size)
    in_channels = 9 if arch.endswith("inpainting") else 4
    sd_levels = {
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "layers_per_block": 2,
    }
    if fam == "sd1":
        if size == "full":
            widths = {"block_out_channels": [320, 640, 1280, 1280], "norm_num_groups": 32,
                      "cross_attention_dim": 768, "sample_size": 64}
        else:
            widths = {"block_out_channels": [32, 32, 64, 64], "norm_num_groups": 8,
                      "cross_attention_dim": SD1_TEXT_WIDTH, "sample_size": 8}
        # diffusers' SD1 configs call the number of heads "attention_head_dim".
        return {"in_channels": in_channels, "out_channels": 4, **sd_levels, **widths, "attention_head_dim": 8}
    _require_tiny(arch, size)
    if fam == "sd2":
        return {
            "in_channels": in_channels, "out_channels": 4, **sd_levels,
            "block_out_channels": [32, 32, 64, 64], "norm_num_groups": 8, "sample_size": 8,
            "cross_attention_dim": SD2_TEXT_WIDTH, "attention_head_dim": [4, 4, 8, 8], "use_linear_projection": True,
        }
    common = {
        "in_channels": in_channels, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 8, "sample_size": 8,
        "use_linear_projection": True, "addition_embed_type": "text_time",
        "addition_time_embed_dim": SDXL_TIME_EMBED_DIM,
    }
    if arch == "sdxl-refiner":
        return {
            **common,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [24, 48, 48, 48], "attention_head_dim": [3, 6, 6, 6],
            "transformer_layers_per_block": 2, "cross_attention_dim": SDXL_CLIP_G_WIDTH,
            # pooled OpenCLIP-G + 5 Fourier features (original h/w, crop top/left, aesthetic score)
            "projection_class_embeddings_input_dim": SDXL_CLIP_G_WIDTH + 5 * SDXL_TIME_EMBED_DIM,
        }
    return {
        **common,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [32, 32, 64], "attention_head_dim": [4, 4, 8],
        "transformer_layers_per_block": [1, 2, 2],
        "cross_attention_dim": SDXL_CLIP_L_WIDTH + SDXL_CLIP_G_WIDTH,
        # pooled OpenCLIP-G + 6 Fourier features (original h/w, crop top/left, target h/w)
        "projection_class_embeddings_input_dim": SDXL_CLIP_G_WIDTH + 6 * SDXL_TIME_EMBED_DIM,
    }


def vae_config(arch: str, size: str = "tiny") -> dict[str, Any]:
    """AutoencoderKL keyword arguments."""
    fam = family(arch)
    _check_size(size)
    levels = {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    if size == "full":
        widths = {"block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32}
    else:
        widths = {"block_out_channels": [16, 16, 32, 32], "norm_num_groups": 8}
    sample_size = {"sd1": 512, "sd2": 768, "sdxl": 1024}[fam] if size == "full" else 64
    scaling = 0.13025 if fam == "sdxl" else 0.18215
    return {**levels, **widths, "sample_size": sample_size, "scaling_factor": scaling}


def clip_text_config(width: int, *, layers: int = 2, act: str = "quick_gelu", projection_dim: int | None = None,
                     size: str = "tiny") -> dict[str, Any]:
    """CLIPTextConfig keyword arguments; ``size='full'`` gives CLIP ViT-L/14's text tower."""
    if size == "full":
        return {
            "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
            "projection_dim": 768, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1,
        }
    return {
        "vocab_size": VOCAB_SIZE, "hidden_size": width, "intermediate_size": 4 * width, "num_hidden_layers": layers,
        "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": act,
        "projection_dim": projection_dim or width, "bos_token_id": BOS_TOKEN_ID, "eos_token_id": EOS_TOKEN_ID,
        "pad_token_id": EOS_TOKEN_ID,
    }


def text_encoder_configs(arch: str, size: str = "tiny") -> dict[str, dict[str, Any]]:
    """Pipeline component name ('text_encoder', 'text_encoder_2') -> CLIP text config."""
    fam = family(arch)
    _check_size(size)
    if fam == "sd1":
        return {"text_encoder": clip_text_config(SD1_TEXT_WIDTH, size=size)}
    _require_tiny(arch, size)
    if fam == "sd2":
        return {"text_encoder": clip_text_config(SD2_TEXT_WIDTH, act="gelu")}
    big_g = clip_text_config(SDXL_CLIP_G_WIDTH, act="gelu")
    if arch == "sdxl-refiner":
        return {"text_encoder_2": big_g}
    return {"text_encoder": clip_text_config(SDXL_CLIP_L_WIDTH), "text_encoder_2": big_g}


def scheduler_config(arch: str) -> dict[str, Any]:
    """The scheduler a pipeline folder of this arch names (epsilon, or v for 'sd2-v')."""
    fam = family(arch)
    prediction = "v_prediction" if arch == "sd2-v" else "epsilon"
    if fam == "sdxl":
        return {"_class_name": "EulerDiscreteScheduler", **SCHEDULE, "prediction_type": prediction,
                "timestep_spacing": "leading", "steps_offset": 1, "interpolation_type": "linear",
                "use_karras_sigmas": False}
    return {"_class_name": "PNDMScheduler", **SCHEDULE, "prediction_type": prediction, "skip_prk_steps": True,
            "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False}


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")


def _require_tiny(arch: str, size: str) -> None:
    if size != "tiny":
        raise ValueError(f"size={size!r} exists only for SD1; {arch} models are tiny only")
