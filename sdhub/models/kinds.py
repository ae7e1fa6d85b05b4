"""The vocabulary of asset kinds and model families: one list, used by detection, folders and the catalog.

A *kind* says what a file is for (a checkpoint, a LoRA, an upscaler...); a *family* says which
diffusion model it belongs to (sd1, sdxl, flux1...), as its tensors prove; an *architecture* is
the family's exact variant (``sd2-v``, ``sdxl-refiner``, ``sd3.5-large``, ``flux1-schnell``).
Labels from Civitai or a file's metadata (``Pony``, ``Illustrious``) are kept apart from both.
"""

from __future__ import annotations

#: Every asset kind, with what it is, in the order listings show them.
KIND_DESCRIPTIONS: dict[str, str] = {
    "checkpoint": "a full model: diffusion model, text encoder(s) and VAE in one file",
    "diffusion-model": "a UNet or transformer alone, without text encoders or VAE (as Flux and SD3 ship)",
    "lora": "a LoRA or LyCORIS network (LoCon, LoHa, LoKr, DoRA) applied on top of a model",
    "embedding": "a textual-inversion embedding",
    "vae": "a VAE (the latent image encoder/decoder)",
    "text-encoder": "a text encoder alone (CLIP-L, CLIP-G, T5-XXL)",
    "controlnet": "a ControlNet, T2I-Adapter or control-LoRA",
    "ip-adapter": "an IP-Adapter (image prompt adapter)",
    "clip-vision": "a CLIP vision encoder (what IP-Adapters and unCLIP models see images with)",
    "upscaler": "an image upscaler (ESRGAN, RealESRGAN, SwinIR, DAT, HAT...)",
    "preview-decoder": "a small latent preview decoder (TAESD, A1111's VAE-approx)",
    "hypernetwork": "an A1111 hypernetwork",
    "wildcards": "Dynamic Prompts wildcard lists (.txt, .yaml, .json) that __name__ in a prompt draws from",
    "other": "a model file none of the kinds above fits, or whose kind its tensors do not tell",
}
KINDS: tuple[str, ...] = tuple(KIND_DESCRIPTIONS)
#: The kind of a file whose kind is not known (yet): it is kept, and can be filed with ``mv --kind``.
OTHER = "other"

#: Families, with the architectures (exact variants) each holds.
FAMILY_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "sd1": ("sd1",),
    "sd2": ("sd2", "sd2-v"),
    "sdxl": ("sdxl", "sdxl-refiner"),
    "sd3": ("sd3-medium", "sd3.5-medium", "sd3.5-large"),
    "flux1": ("flux1-dev", "flux1-schnell", "flux1-fill", "flux1-depth", "flux1-canny", "flux1-redux"),
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_ARCHITECTURES)
ARCHITECTURES: tuple[str, ...] = tuple(a for archs in FAMILY_ARCHITECTURES.values() for a in archs)
_FAMILY_OF = {architecture: name for name, archs in FAMILY_ARCHITECTURES.items() for architecture in archs}


def family_of(architecture: str | None) -> str | None:
    """The family an architecture (or a family name itself) belongs to; None when it is not one sdhub knows."""
    if architecture is None:
        return None
    if architecture in FAMILY_ARCHITECTURES:
        return architecture
    return _FAMILY_OF.get(architecture)


#: Other names users and tools give the kinds (folder names of A1111, ComfyUI and StabilityMatrix,
#: Civitai's model types, plurals); ``kind_named`` accepts them, in any case, with - or _.
KIND_ALIASES: dict[str, str] = {
    "model": "checkpoint", "checkpoints": "checkpoint", "stable-diffusion": "checkpoint",
    "stablediffusion": "checkpoint",
    "diffusion-models": "diffusion-model", "diffusionmodel": "diffusion-model", "diffusionmodels": "diffusion-model",
    "unet": "diffusion-model",
    "loras": "lora", "lycoris": "lora", "locon": "lora", "loha": "lora", "lokr": "lora", "dora": "lora",
    "embeddings": "embedding", "textualinversion": "embedding", "textual-inversion": "embedding", "ti": "embedding",
    "vaes": "vae",
    "text-encoders": "text-encoder", "text-encoder": "text-encoder", "textencoder": "text-encoder",
    "textencoders": "text-encoder", "clip": "text-encoder", "t5": "text-encoder",
    "controlnets": "controlnet", "control-net": "controlnet", "t2i-adapter": "controlnet", "t2iadapter": "controlnet",
    "control-lora": "controlnet",
    "ipadapter": "ip-adapter", "ip-adapters": "ip-adapter", "ipadapters": "ip-adapter",
    "clipvision": "clip-vision", "vision-encoder": "clip-vision",
    "upscalers": "upscaler", "upscale-models": "upscaler", "upscale-model": "upscaler", "esrgan": "upscaler",
    "realesrgan": "upscaler", "swinir": "upscaler",
    "preview-decoders": "preview-decoder", "vae-approx": "preview-decoder", "approxvae": "preview-decoder",
    "taesd": "preview-decoder",
    "hypernetworks": "hypernetwork", "hypernet": "hypernetwork",
    "wildcard": "wildcards", "dynamic-prompts": "wildcards", "dynamicprompts": "wildcards",
    "unknown": OTHER,
}


def kind_named(name: str) -> str:
    """The kind ``name`` means (a kind or one of its aliases); a usage error listing the kinds otherwise."""
    from sdhub.errors import UsageError

    wanted = name.strip().lower().replace("_", "-").replace(" ", "-")
    kind = wanted if wanted in KIND_DESCRIPTIONS else KIND_ALIASES.get(wanted)
    if kind is None:
        raise UsageError(f"unknown kind {name!r}; choose one of: {', '.join(KINDS)}")
    return kind
