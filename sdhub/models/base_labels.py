"""Base-model labels (Civitai's ``baseModel``, a file's training metadata) and the family each belongs to.

A *label* is what a source calls the model a file was made for: Civitai's "SD 1.5", "Pony",
"Illustrious", "Flux.1 D"; kohya's ``ss_base_model_version`` ("sdxl_base_v1-0"); the model spec's
``modelspec.architecture`` ("stable-diffusion-xl-v1-base/lora"). A *family* (``models.kinds``) is
what the tensors prove. Pony, Illustrious and NoobAI are SDXL fine-tunes: their family is sdxl.
"""

from __future__ import annotations

import re

from sdhub.models.detection import KOHYA_BASE_VERSIONS, MODELSPEC_BASES
from sdhub.models.kinds import ARCHITECTURES, FAMILIES, family_of

#: Every ``baseModel`` value Civitai lists (``src/shared/constants/basemodel.constants.ts`` and the older
#: ``src/server/common/constants.ts`` of civitai/civitai), with the sdhub family its files belong to;
#: None for models of no family sdhub knows (video models, other architectures).
CIVITAI_BASE_MODELS: dict[str, str | None] = {
    # Stable Diffusion 1.x
    "SD 1.4": "sd1", "SD 1.5": "sd1", "SD 1.5 LCM": "sd1", "SD 1.5 Hyper": "sd1",
    # Stable Diffusion 2.x (768 = v-prediction; unCLIP is SD 2.1 with an image embedding input)
    "SD 2.0": "sd2", "SD 2.0 768": "sd2", "SD 2.1": "sd2", "SD 2.1 768": "sd2", "SD 2.1 Unclip": "sd2",
    # SDXL and the SDXL fine-tunes Civitai lists as their own ecosystems (children of SDXL there)
    "SDXL 0.9": "sdxl", "SDXL 1.0": "sdxl", "SDXL 1.0 LCM": "sdxl", "SDXL Lightning": "sdxl",
    "SDXL Hyper": "sdxl", "SDXL Turbo": "sdxl", "SDXL Distilled": "sdxl",
    "Pony": "sdxl", "Illustrious": "sdxl", "NoobAI": "sdxl",
    "Playground v2": "sdxl",  # Playground v2 uses SDXL's UNet and text encoders
    # Stable Diffusion 3 and 3.5
    "SD 3": "sd3", "SD 3.5": "sd3", "SD 3.5 Medium": "sd3", "SD 3.5 Large": "sd3", "SD 3.5 Large Turbo": "sd3",
    # FLUX.1 (Krea and Kontext are FLUX.1 [dev] transformers)
    "Flux.1 S": "flux1", "Flux.1 D": "flux1", "Flux.1 Krea": "flux1", "Flux.1 Kontext": "flux1",
    # Everything else Civitai lists: other architectures, not one of sdhub's families
    **dict.fromkeys((
        "ODOR", "Odor", "AuraFlow", "Pony V7", "Chroma", "Flux.2 D", "Flux.2 Klein 9B", "Flux.2 Klein 9B-base",
        "Flux.2 Klein 4B", "Flux.2 Klein 4B-base", "Stable Cascade", "SVD", "SVD XT", "PixArt a", "PixArt E",
        "Hunyuan 1", "Hunyuan Video", "Lumina", "Kolors", "Mochi", "LTXV", "LTXV2", "LTXV 2.3", "CogVideoX",
        "Wan Video", "Wan Video 1.3B t2v", "Wan Video 14B t2v", "Wan Video 14B i2v 480p",
        "Wan Video 14B i2v 720p", "Wan Video 2.2 TI2V-5B", "Wan Video 2.2 I2V-A14B", "Wan Video 2.2 T2V-A14B",
        "Wan Video 2.5 T2V", "Wan Video 2.5 I2V", "Wan Image 2.7", "Wan Video 2.7", "HiDream", "HiDream-O1",
        "Qwen", "Qwen 2", "ZImageTurbo", "ZImageBase", "Anima", "Ernie", "Grok", "HappyHorse", "Ideogram 4.0",
        "Imagen4", "Nano Banana", "OpenAI", "Krea 2", "Lens", "MAI", "Seedream", "Sora 2", "Veo 3", "Vidu Q1",
        "Hailuo by MiniMax", "Kling", "Seedance", "ACE Audio", "Upscaler", "Other",
    )),
}

#: Labels that name a family itself rather than one model of it: ``--base "SD 1.5"`` lists every sd1
#: model, as ``--base sd1`` does, where ``--base Pony`` lists only what is labelled Pony.
FAMILY_LABELS: dict[str, str] = {"SD 1.4": "sd1", "SD 1.5": "sd1", "SD 2.0": "sd2", "SD 2.1": "sd2",
                                 "SDXL 0.9": "sdxl", "SDXL 1.0": "sdxl"}

#: Labels that name one architecture (an exact variant): ``--base "Flux.1 D"`` also finds a FLUX.1 [dev]
#: checkpoint nobody labelled, and ``--base flux1-dev`` a LoRA Civitai labels "Flux.1 D".
LABEL_ARCHITECTURES: dict[str, str] = {
    "SD 2.0 768": "sd2-v", "SD 2.1 768": "sd2-v", "SD 3": "sd3-medium", "SD 3.5 Medium": "sd3.5-medium",
    "SD 3.5 Large": "sd3.5-large", "SD 3.5 Large Turbo": "sd3.5-large", "Flux.1 D": "flux1-dev",
    "Flux.1 S": "flux1-schnell",
}


_PUNCTUATION = re.compile(r"[\s._\-]+")


def compact(text: str) -> str:
    """A label as compared: lower case without spaces, dots, dashes or underscores ("SD 1.5" == "sd1.5")."""
    return _PUNCTUATION.sub("", text.strip().lower())


_BY_COMPACT = {compact(label): label for label in CIVITAI_BASE_MODELS}


def known_label(text: str) -> str | None:
    """Civitai's own spelling of a label written any way ("pony", "flux.1 d"), or None when Civitai has none."""
    return _BY_COMPACT.get(compact(text))


def label_family(label: str | None) -> str | None:
    """The family a label says a file belongs to: a Civitai label, a family or architecture name, or
    a kohya/modelspec metadata value; None when it names none of sdhub's families."""
    if not label or not label.strip():
        return None
    civitai = known_label(label)
    if civitai is not None:
        return CIVITAI_BASE_MODELS[civitai]
    lowered = label.strip().lower()
    by_name = family_of(lowered) or next((f for f in FAMILIES if compact(f) == compact(lowered)), None)
    if by_name:
        return by_name
    architecture = next((a for a in ARCHITECTURES if compact(a) == compact(lowered)), None)
    if architecture:
        return family_of(architecture)
    if " " in lowered:
        return None  # a label of Civitai's kind that Civitai does not list (yet): no family to tell
    for prefix, base in (*MODELSPEC_BASES, *KOHYA_BASE_VERSIONS):
        if lowered.startswith(prefix):
            return family_of(base)
    return None


def metadata_label(metadata: dict[str, str] | None) -> str | None:
    """The base-model label a file's own metadata gives (``modelspec.architecture``, then kohya's
    ``ss_base_model_version``), as written there; None when it gives none."""
    for key in ("modelspec.architecture", "ss_base_model_version"):
        value = (metadata or {}).get(key)
        if isinstance(value, str) and value.strip() and value.strip().lower() != "none":
            return value.strip()
    return None
