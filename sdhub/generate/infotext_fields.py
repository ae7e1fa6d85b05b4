"""What a rerun does with each A1111 1.10 infotext field: honour it, ignore it (with the reason), or refuse.

A rerun must draw the image again, so a field sdhub cannot apply stops it with one line naming the
field, never a silent drop. A field that only helps find things (``Model``, ``TI hashes``) or cannot
change a txt2img image is ignored. Settings sdhub reproduces only at A1111's default are honoured
there and refused elsewhere. Unknown fields (extensions: ``ADetailer model``, ``ControlNet 0``) are
refused. A user may pass ``ignore`` names to rerun anyway; each one then becomes a note.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from sdhub.errors import BadInputError

#: Fields ``params_from_infotext`` applies (sampler options, seeds, sizes, lookups by hash).
HONOURED = frozenset({
    "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "VAE hash", "Variation seed",
    "Variation seed strength", "Seed resize from", "Clip skip", "ENSD", "RNG", "Emphasis", "Eta", "Eta DDIM",
    "Sigma noise", "Discard penultimate sigma", "Downcast alphas_cumprod", "Version", "UniPC variant",
    "UniPC skip type", "UniPC order", "UniPC lower order final",
})

#: Fields the hires-fix, img2img, inpaint and SD upscale reading (``generation_modes``) applies or refuses itself.
MODE_FIELDS = frozenset({
    "Denoising strength", "Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Hires sampler",
    "Hires schedule type", "Hires checkpoint", "Hires prompt", "Hires negative prompt", "Hires CFG Scale",
    "SD upscale overlap", "SD upscale upscaler", "Mask blur", "Inpaint area", "Masked area padding", "Mask mode",
    "Masked content", "Conditional mask weight",
})

IGNORED = {
    "Model": "a name; the model is found by its Model hash",
    "VAE": "a name; the VAE is found by its VAE hash",
    "Lora hashes": "LoRAs come from the prompt's <lora:...> tags",
    "TI hashes": "embeddings are found by the names in the prompt",
    "Hashes": "Civitai's lookup aid",
    "Civitai resources": "Civitai's lookup aid",
    "Civitai metadata": "Civitai's lookup aid",
    "User": "who made the image",
    "Batch size": "each image's own Seed is written, and sdhub draws noise per image",
    "Batch pos": "each image's own Seed is written, and sdhub draws noise per image",
    "Init image hash": "it names the init image; --init-image supplies it",
    "Cache FP16 weight for LoRA": "it applies only with FP8 weight, which is refused",
    # The prompt in the infotext is what Dynamic Prompts drew from the template; it is what is drawn again.
    "Template": "Dynamic Prompts' template; the prompt is what it expanded to",
    "Negative Template": "Dynamic Prompts' template; the negative prompt is what it expanded to",
}

#: Settings reproduced only at A1111's default value (as A1111 writes it, or as float).
DEFAULTS = {
    "Schedule max sigma": "0", "Schedule min sigma": "0", "Schedule rho": "0",
    "Beta schedule alpha": "0.6", "Beta schedule beta": "0.6",
    "Sigma churn": "0", "Sigma tmin": "0", "Sigma tmax": "0",
    "FP8 weight": "Disable", "Token merging ratio": "0", "Token merging ratio hr": "0", "NGMS": "0",
    "Tiling": "False", "Pad conds": "False", "VAE Encoder": "Full", "VAE Decoder": "Full",
    "SGM noise multiplier": "False", "Noise Schedule": "Default", "Extra noise": "0", "Noise multiplier": "1",
    "Old prompt editing timelines": "False", "Pad conds v0": "False",
}

REFUSED = {
    "Face restoration": "sdhub has no face restoration",
    "Refiner": "sdhub does not switch to an SDXL refiner",
    "Refiner switch at": "sdhub does not switch to an SDXL refiner",
    "Hypernet": "sdhub does not apply hypernetworks",
    "Hypernet hash": "sdhub does not apply hypernetworks",
    "Hypernet strength": "sdhub does not apply hypernetworks",
    "Image CFG scale": "sdhub does not run instruct-pix2pix",
    "NGMS all steps": "sdhub does not skip the negative prompt (NGMS)",
}


def _same(value: Any, default: str) -> bool:
    text = str(value)
    if text == default:
        return True
    try:
        return float(text) == float(default)
    except ValueError:
        return False


def check_rerun_fields(fields: Mapping[str, Any], ignore: Collection[str] = ()) -> list[str]:
    """Refuse (``BadInputError``, one line) the first field a rerun cannot honour; notes for ``ignore``d ones.

    ``fields`` are the infotext's own ``Key: value`` pairs plus the switches A1111's back-compat adds.
    """
    ignored = {name.strip().lower() for name in ignore}
    notes = []
    for key, value in fields.items():
        if key in HONOURED or key in MODE_FIELDS or key in IGNORED:
            continue
        if key in DEFAULTS:
            if _same(value, DEFAULTS[key]):
                continue
            reason = f"sdhub reproduces only A1111's default, {DEFAULTS[key]}"
        else:
            reason = REFUSED.get(key, "a field sdhub does not know (an extension's?)")
        if key.lower() in ignored:
            notes.append(f"ignored the infotext's {key!r} ({value}) as asked: {reason}; the image may differ")
            continue
        raise BadInputError(f"cannot rerun this infotext: sdhub does not support {key} {value} ({reason}); "
                            f"pass --ignore-field {key!r} to rerun without it")
    return notes
