"""Write a local diffusers pipeline folder (configs and tokenizers, no weights) for single-file loading offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdhub.testing import tiny_configs
from sdhub.testing.tokenizer import write_tokenizer_files

_PIPELINES = {
    "sd1": "StableDiffusionPipeline",
    "sd1-inpainting": "StableDiffusionInpaintPipeline",
    "sd2": "StableDiffusionPipeline",
    "sd2-v": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline",
}


def write_pipeline_folder(folder: Path, arch: str = "sd1", size: str = "tiny") -> Path:
    """model_index.json plus unet/, vae/, text_encoder(_2)/, tokenizer(_2)/ and scheduler/ configs."""
    import diffusers

    fam = tiny_configs.family(arch)
    folder.mkdir(parents=True, exist_ok=True)
    version = diffusers.__version__
    index: dict[str, Any] = {
        "_class_name": _PIPELINES[arch], "_diffusers_version": version,
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", tiny_configs.scheduler_config(arch)["_class_name"]],
    }
    unet = tiny_configs.unet_config(arch, size)
    _write_json(folder / "unet" / "config.json",
                {"_class_name": "UNet2DConditionModel", "_diffusers_version": version, **unet})
    vae = tiny_configs.vae_config(arch, size)
    _write_json(folder / "vae" / "config.json", {"_class_name": "AutoencoderKL", "_diffusers_version": version, **vae})
    _write_json(folder / "scheduler" / "scheduler_config.json",
                {"_diffusers_version": version, **tiny_configs.scheduler_config(arch)})
    encoders = tiny_configs.text_encoder_configs(arch, size)
    for name, suffix in (("text_encoder", ""), ("text_encoder_2", "_2")):
        if name not in encoders:
            index[name] = [None, None]
            index["tokenizer" + suffix] = [None, None]
            continue
        model_class = "CLIPTextModelWithProjection" if name == "text_encoder_2" else "CLIPTextModel"
        index[name] = ["transformers", model_class]
        index["tokenizer" + suffix] = ["transformers", "CLIPTokenizer"]
        _write_json(folder / name / "config.json",
                    {"architectures": [model_class], "model_type": "clip_text_model", **encoders[name]})
        write_tokenizer_files(folder / ("tokenizer" + suffix))
    if fam == "sdxl":
        index["force_zeros_for_empty_prompt"] = arch == "sdxl"
        if arch == "sdxl-refiner":
            index["requires_aesthetics_score"] = True
    else:
        index.update({"safety_checker": [None, None], "feature_extractor": [None, None],
                      "requires_safety_checker": False})
        index.pop("text_encoder_2")
        index.pop("tokenizer_2")
    _write_json(folder / "model_index.json", index)
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
