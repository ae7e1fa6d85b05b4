"""Public factory: tiny (or SD1.5-sized) models written in the real single-file layouts and formats.

Every function writes one file (or folder) atomically and returns its path. Weights are seeded random values.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sdhub.generate.byte_tokenizer import write_tokenizer_files
from sdhub.testing import adapters, layouts, writers
from sdhub.testing.lightning import training_extras
from sdhub.testing.pipeline_folder import write_pipeline_folder

PREDICTION_METADATA_KEY = "sdhub.prediction"


def tiny_state_dicts(arch: str = "sd1", *, seed: int = 0) -> dict[str, torch.Tensor]:
    """The tiny checkpoint of ``arch`` ('sd1', 'sd1-inpainting', 'sd2', 'sd2-v', 'sdxl', 'sdxl-refiner') in memory."""
    in_channels = 9 if arch.endswith("inpainting") else None
    return layouts.checkpoint_state(arch, seed=seed, in_channels=in_channels)


def checkpoint_shapes(arch: str = "sd1", *, size: str = "tiny", ema: bool = False) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the checkpoint ``sd1_checkpoint`` & co. would write, without allocating the weights."""
    in_channels = 9 if arch.endswith("inpainting") else None
    state = layouts.checkpoint_state(arch, size=size, in_channels=in_channels)
    if ema:
        state = layouts.with_ema(state, seed=0)
    return {key: tuple(tensor.shape) for key, tensor in state.items()}


def sd1_checkpoint(path: str | Path, *, fmt: str = "safetensors", ema: bool = False, training_state: bool = False,
                   size: str = "tiny", dtype: torch.dtype = torch.float32, seed: int = 0,
                   inpainting: bool = False) -> Path:
    """An SD1.x single-file checkpoint (LDM layout); ``size='full'`` has SD1.5's real shapes (~4.3 GB fp32)."""
    arch = "sd1-inpainting" if inpainting else "sd1"
    return _checkpoint(Path(path), arch, fmt=fmt, ema=ema, training_state=training_state, size=size, dtype=dtype,
                       seed=seed, in_channels=9 if inpainting else None)


def sd1_checkpoint_once(path: str | Path, **options) -> Path:
    """``sd1_checkpoint(path, **options)`` unless ``path`` exists; a ``.lock`` file beside it makes concurrent
    callers (benchmarks sharing bench/.data) write it once. Name the file after its options: an existing file
    is not compared with them."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():  # writes are atomic, so an existing file is complete
            sd1_checkpoint(path, **options)
    return path


def sd2_checkpoint(path: str | Path, *, fmt: str = "safetensors", ema: bool = False, training_state: bool = False,
                   dtype: torch.dtype = torch.float32, seed: int = 0, inpainting: bool = False,
                   v_prediction: bool = False) -> Path:
    """An SD2.x checkpoint (OpenCLIP text encoder under ``cond_stage_model.model.``).

    ``v_prediction=True`` writes the A1111 sidecar ``<name>.yaml`` (``parameterization: "v"``) and, for
    safetensors, the metadata entry ``sdhub.prediction = "v"``.
    """
    path = Path(path)
    arch = "sd2-v" if v_prediction else "sd2"
    metadata = {PREDICTION_METADATA_KEY: "v"} if v_prediction and fmt == "safetensors" else None
    written = _checkpoint(path, arch, fmt=fmt, ema=ema, training_state=training_state, size="tiny", dtype=dtype,
                          seed=seed, in_channels=9 if inpainting else None, metadata=metadata)
    if v_prediction:
        writers.write_atomically(path.with_suffix(".yaml"),
                                 lambda tmp: tmp.write_text(_v_prediction_yaml(), encoding="utf-8"))
    return written


def sdxl_checkpoint(path: str | Path, *, fmt: str = "safetensors", dtype: torch.dtype = torch.float32, seed: int = 0,
                    refiner: bool = False, inpainting: bool = False, ema: bool = False,
                    training_state: bool = False) -> Path:
    """An SDXL base (or ``refiner=True``) checkpoint in the SGM layout (``conditioner.embedders.N``)."""
    arch = "sdxl-refiner" if refiner else "sdxl"
    return _checkpoint(Path(path), arch, fmt=fmt, ema=ema, training_state=training_state, size="tiny", dtype=dtype,
                       seed=seed, in_channels=9 if inpainting else None)


def lora(path: str | Path, *, base: str = "sd1", fmt: str = "kohya", dtype: torch.dtype = torch.float32,
         seed: int = 0) -> Path:
    """A rank-4 network for the tiny ``base`` model: 'kohya' (lora_down/up/alpha + ss_* metadata), 'peft'
    (diffusers ``unet.*.lora_A/B``), or LyCORIS 'locon' (kohya keys + resnet convs), 'loha', 'lokr'."""
    path = Path(path)
    tensors = writers.cast_floats(adapters.lora_tensors(base, fmt, seed), dtype)
    metadata = adapters.kohya_metadata(base, fmt, path.stem, tensors)
    return writers.save_tensors(path, tensors, metadata or None)


def embedding(path: str | Path, *, base: str = "sd1", fmt: str = "pt", vectors: int = 2, seed: int = 0) -> Path:
    """A textual-inversion embedding: A1111 ``.pt`` (``string_to_param``) or ``.safetensors`` (``emb_params``;
    ``clip_l`` + ``clip_g`` for SDXL)."""
    writers.check_format(fmt, ("pt", "safetensors"))
    path = Path(path)
    tensors = adapters.embedding_vectors(base, vectors, seed)
    if fmt == "safetensors":
        return writers.save_tensors(path, tensors)
    if base == "sdxl":
        return writers.save_pickle(path, tensors)  # SDXL .pt embeddings are plain clip_l/clip_g dicts
    return writers.save_pickle(path, {
        "string_to_token": {"*": 265},  # CLIP's token id of "*", as in every A1111 embedding
        "string_to_param": {"*": tensors["emb_params"].requires_grad_(True)},
        "name": path.stem,
        "step": 500,
        "sd_checkpoint": "cc6cb27103",
        "sd_checkpoint_name": "v1-5-pruned-emaonly",
    })


def vae(path: str | Path, *, fmt: str = "safetensors", arch: str = "sd1", dtype: torch.dtype = torch.float32,
        seed: int = 0) -> Path:
    """A standalone VAE (LDM names, no ``first_stage_model.`` prefix); ``fmt='pt'`` nests it with ``loss.*`` keys."""
    writers.check_format(fmt, ("safetensors", "pt", "ckpt"))
    state = writers.cast_floats(layouts.vae_state(arch, seed=seed), dtype)
    if fmt == "safetensors":
        return writers.save_tensors(Path(path), state)
    generator = torch.Generator().manual_seed(seed + 7)
    # Autoencoder training checkpoints keep the discriminator and the learned log-variance of the loss.
    state["loss.logvar"] = torch.zeros(())
    state["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4, generator=generator)
    state["loss.discriminator.main.0.bias"] = torch.zeros(8)
    return writers.save_pickle(Path(path), {"state_dict": state, "global_step": 840001})


def tokenizer_dir(path: str | Path) -> Path:
    """A byte-level CLIP tokenizer folder (vocab.json, merges.txt, tokenizer_config.json) for ``CLIPTokenizer``."""
    return write_tokenizer_files(Path(path))


def diffusers_config_dir(path: str | Path, arch: str = "sd1", size: str = "tiny") -> Path:
    """A local diffusers pipeline folder of configs for ``from_single_file(ckpt, config=folder)``."""
    return write_pipeline_folder(Path(path), arch, size)


def _checkpoint(path: Path, arch: str, *, fmt: str, ema: bool, training_state: bool, size: str, dtype: torch.dtype,
                seed: int, in_channels: int | None, metadata: dict[str, str] | None = None) -> Path:
    writers.check_format(fmt, ("safetensors", "ckpt", "ckpt-legacy"))
    if training_state and fmt == "safetensors":
        raise ValueError("safetensors files hold tensors only; training_state needs fmt='ckpt' or 'ckpt-legacy'")
    state = layouts.checkpoint_state(arch, size=size, seed=seed, in_channels=in_channels)
    if ema:
        state = layouts.with_ema(state, seed)
    state = writers.materialize(state, dtype, seed)
    wrapper = None
    if training_state:
        unet_keys = [k for k in state if k.startswith(layouts.UNET_PREFIX) and k.endswith("weight")][:2]
        wrapper = training_extras({k: tuple(state[k].shape) for k in unet_keys})
    elif fmt != "safetensors":
        wrapper = {"global_step": 500}  # pruned LDM checkpoints keep global_step beside state_dict
    return writers.save_any(path, fmt, state, wrapper=wrapper, metadata=metadata)


def _v_prediction_yaml() -> str:
    # The shape of Stability's v2-inference-v.yaml, which A1111 loads from <checkpoint>.yaml.
    return """model:
  base_learning_rate: 1.0e-4
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "v"
    linear_start: 0.00085
    linear_end: 0.0120
    num_timesteps_cond: 1
    log_every_t: 200
    timesteps: 1000
    first_stage_key: "jpg"
    cond_stage_key: "txt"
    image_size: 96
    channels: 4
    cond_stage_trainable: false
    conditioning_key: crossattn
    monitor: val/loss_simple_ema
    scale_factor: 0.18215
    use_ema: False
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        use_checkpoint: True
        use_fp16: True
        image_size: 32
        in_channels: 4
        out_channels: 4
        model_channels: 320
        attention_resolutions: [ 4, 2, 1 ]
        num_res_blocks: 2
        channel_mult: [ 1, 2, 4, 4 ]
        num_head_channels: 64
        use_linear_in_transformer: True
        transformer_depth: 1
        context_dim: 1024
        legacy: False
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: True
        layer: "penultimate"
"""
