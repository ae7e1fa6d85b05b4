"""Which part of a model a tensor name belongs to, in every single-file layout sdhub reads.

The one place that knows the container prefixes of the LDM (SD1/SD2), SGM (SDXL), ComfyUI all-in-one
(Flux, SD3), bare diffusion model (BFL, SAI, diffusers), kohya LoRA and diffusers/PEFT layouts.
``component_of`` names the component, ``canonical_key`` strips the container prefix so the same weights
compare equal across files (a VAE baked into a checkpoint and the same VAE as a standalone file; the T5
inside a Flux checkpoint and ``t5xxl_fp16.safetensors``).
"""

from __future__ import annotations

from collections.abc import Iterable

#: The diffusion model: SD1/SD2/SDXL's UNet or Flux/SD3's transformer.
UNET = "unet"
VAE = "vae"
#: CLIP-L (SD1, SDXL's first encoder, Flux and SD3's clip_l) or SD2's OpenCLIP-H.
TEXT_ENCODER = "text_encoder"
#: OpenCLIP/CLIP bigG: SDXL's second encoder, SD3's clip_g.
TEXT_ENCODER_2 = "text_encoder_2"
#: T5-XXL: Flux's and SD3's t5xxl.
TEXT_ENCODER_3 = "text_encoder_3"
EMA = "ema"
TRAINING = "training"
DDPM_BUFFERS = "ddpm_buffers"
UNKNOWN = "unknown"

#: Components that generation needs; the others are dropped by ``prune``.
INFERENCE_COMPONENTS = (UNET, VAE, TEXT_ENCODER, TEXT_ENCODER_2, TEXT_ENCODER_3)
COMPONENTS = (UNET, VAE, TEXT_ENCODER, TEXT_ENCODER_2, TEXT_ENCODER_3, EMA, TRAINING, DDPM_BUFFERS, UNKNOWN)

# (prefix, component, canonical prefix). Longest prefixes first: the first match wins.
_CHECKPOINT_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("model.diffusion_model.", UNET, ""),
    ("first_stage_model.", VAE, ""),
    ("cond_stage_model.transformer.text_model.", TEXT_ENCODER, "text_model."),
    # Early transformers layout (NAI and its descendants): same weights without ``text_model.``.
    ("cond_stage_model.transformer.", TEXT_ENCODER, "text_model."),
    ("cond_stage_model.model.", TEXT_ENCODER, "openclip."),
    ("conditioner.embedders.0.transformer.text_model.", TEXT_ENCODER, "text_model."),
    ("conditioner.embedders.0.transformer.", TEXT_ENCODER, "text_model."),
    ("conditioner.embedders.1.model.", TEXT_ENCODER_2, "openclip."),
    # The SDXL refiner has only OpenCLIP bigG, as embedder 0.
    ("conditioner.embedders.0.model.", TEXT_ENCODER_2, "openclip."),
    # ComfyUI all-in-one Flux/SD3 files: transformers-layout encoders under text_encoders.<name>.transformer.,
    # named without the prefix as in the standalone clip_l/clip_g/t5xxl files.
    ("text_encoders.clip_l.transformer.", TEXT_ENCODER, ""),
    ("text_encoders.clip_l.", TEXT_ENCODER, ""),
    ("text_encoders.clip_g.transformer.", TEXT_ENCODER_2, ""),
    ("text_encoders.clip_g.", TEXT_ENCODER_2, ""),
    ("text_encoders.t5xxl.transformer.", TEXT_ENCODER_3, ""),
    ("text_encoders.t5xxl.", TEXT_ENCODER_3, ""),
    ("vae.", VAE, ""),  # ComfyUI's Flux checkpoints (SD3's use first_stage_model.)
    ("model_ema.", EMA, "model_ema."),
)

# Diffusion models alone (no container prefix): BFL's Flux transformer (flux1-dev.safetensors and its
# fill/depth/canny variants), SAI's MMDiT (SD3/SD3.5), an LDM UNet without ``model.diffusion_model.``, and
# diffusers' transformers and UNets (``transformer/`` or ``unet/diffusion_pytorch_model.safetensors``).
_BARE_DIFFUSION_PREFIXES = (
    "double_blocks.", "single_blocks.", "img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.",
    "final_layer.", "joint_blocks.", "x_embedder.", "t_embedder.", "y_embedder.", "context_embedder.",
    "input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "label_emb.", "out.0.", "out.2.",
    "transformer_blocks.", "single_transformer_blocks.", "time_text_embed.", "norm_out.", "proj_out.", "pos_embed.",
    "down_blocks.", "up_blocks.", "mid_block.", "conv_in.", "conv_norm_out.", "conv_out.", "time_embedding.",
    "add_embedding.",
)
_BARE_DIFFUSION_NAMES = frozenset({"pos_embed"})

# Standalone text encoders in the transformers layout: T5 (encoder.block..., shared) and CLIP (text_model...).
_BARE_T5_PREFIXES = ("encoder.block.", "encoder.final_layer_norm.", "encoder.embed_tokens.", "shared.")
_BARE_CLIP_PREFIXES = ("text_model.", "text_projection.")

# Standalone VAE files (LDM or diffusers naming) carry no container prefix.
_BARE_VAE_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")

# LoRA naming: kohya module prefixes and diffusers/PEFT component prefixes.
_LORA_PREFIXES: tuple[tuple[str, str], ...] = (
    ("lora_unet_", UNET),
    ("lora_te1_", TEXT_ENCODER),
    ("lora_te2_", TEXT_ENCODER_2),
    ("lora_te3_", TEXT_ENCODER_3),  # kohya's Flux/SD3 LoRAs: te1 CLIP-L, te2 CLIP-G, te3 T5
    ("lora_te_", TEXT_ENCODER),
    ("unet.", UNET),
    ("transformer.", UNET),  # diffusers/PEFT Flux and SD3 LoRAs
    ("diffusion_model.", UNET),  # ComfyUI-style Flux LoRAs
    ("text_encoder_2.", TEXT_ENCODER_2),
    ("text_encoder_3.", TEXT_ENCODER_3),
    ("text_encoder.", TEXT_ENCODER),
)

#: The diffusion schedule buffers LDM training stores at the top level (recomputed at load time).
DDPM_BUFFER_NAMES = frozenset({
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "logvar",
})

# Top-level entries of a Lightning checkpoint that only training resumes from.
TRAINING_PREFIXES = ("optimizer_states", "lr_schedulers", "callbacks", "loops", "optimizer", "scheduler", "epoch",
                     "pytorch-lightning_version",
                     "hparams", "hyper_parameters", "amp_scaling_state", "native_amp_scaling_state",
                     # autoencoder training: the discriminator and the loss's learned log-variance
                     "loss")

#: The CLIP position_ids buffers that merges break (checked and repaired by inspect/prune).
POSITION_ID_KEYS = (
    "cond_stage_model.transformer.text_model.embeddings.position_ids",
    "cond_stage_model.transformer.embeddings.position_ids",
    "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
    "text_encoders.clip_l.transformer.text_model.embeddings.position_ids",
    "text_encoders.clip_g.transformer.text_model.embeddings.position_ids",
)


def component_of(key: str) -> str:
    """The component a single-file checkpoint, VAE or LoRA tensor name belongs to."""
    if key in DDPM_BUFFER_NAMES:
        return DDPM_BUFFERS
    for prefix, component, _ in _CHECKPOINT_PREFIXES:
        if key.startswith(prefix):
            return component
    for prefix in TRAINING_PREFIXES:
        if key == prefix or key.startswith(prefix + "."):
            return TRAINING
    if key.startswith(_BARE_DIFFUSION_PREFIXES) or key in _BARE_DIFFUSION_NAMES:
        return UNET
    if key.startswith(_BARE_T5_PREFIXES):  # before the VAE's bare "encoder."
        return TEXT_ENCODER_3
    if key.startswith(_BARE_VAE_PREFIXES):
        return VAE
    if key.startswith(_BARE_CLIP_PREFIXES):
        return TEXT_ENCODER
    for prefix, component in _LORA_PREFIXES:
        if key.startswith(prefix):
            return component
    return UNKNOWN


def canonical_key(key: str) -> str:
    """The name without its container prefix: the same tensor gets the same name in every file."""
    for prefix, _, canonical in _CHECKPOINT_PREFIXES:
        if key.startswith(prefix):
            return canonical + key[len(prefix):]
    return key


def group_by_component(keys: Iterable[str]) -> dict[str, list[str]]:
    """Tensor names grouped by component, in file order, components in ``COMPONENTS`` order."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(component_of(key), []).append(key)
    return {component: groups[component] for component in COMPONENTS if component in groups}


def ema_key_for(unet_key: str) -> str:
    """The LitEma buffer holding the EMA copy of a ``model.diffusion_model.*`` parameter."""
    return "model_ema." + unet_key[len("model."):].replace(".", "")
