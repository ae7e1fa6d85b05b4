"""Write a local diffusers pipeline folder (configs and tokenizers, no weights) for single-file loading offline.

The same configs, one pipeline per architecture, ship in ``sdhub/generate/configs/tiny.json`` so that
generation loads the factory's models without this package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdhub.generate import configs as shipped_configs
from sdhub.generate.byte_tokenizer import write_tokenizer_files
from sdhub.generate.model_configs import SHIPPED_ARCHITECTURES, TINY_CONFIGS_FILE
from sdhub.testing import tiny_configs

SHIPPED_TINY_CONFIGS = Path(shipped_configs.__file__).parent / TINY_CONFIGS_FILE

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
    for name, config in pipeline_configs(arch, size).items():
        if name == "model_index":
            _write_json(folder / "model_index.json", config)
        elif name == "scheduler":
            _write_json(folder / "scheduler" / "scheduler_config.json", config)
        else:
            _write_json(folder / name / "config.json", config)
        if name.startswith("text_encoder"):
            write_tokenizer_files(folder / name.replace("text_encoder", "tokenizer"))
    return folder


def pipeline_configs(arch: str = "sd1", size: str = "tiny") -> dict[str, dict[str, Any]]:
    """The pipeline's configs by component: ``model_index``, ``unet``, ``vae``, ``text_encoder(_2)``, ``scheduler``."""
    import diffusers

    fam = tiny_configs.family(arch)
    version = diffusers.__version__
    index: dict[str, Any] = {
        "_class_name": _PIPELINES[arch], "_diffusers_version": version,
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", tiny_configs.scheduler_config(arch)["_class_name"]],
    }
    configs: dict[str, dict[str, Any]] = {
        "model_index": index,
        "unet": {"_class_name": "UNet2DConditionModel", "_diffusers_version": version,
                 **tiny_configs.unet_config(arch, size)},
        "vae": {"_class_name": "AutoencoderKL", "_diffusers_version": version, **tiny_configs.vae_config(arch, size)},
        "scheduler": {"_diffusers_version": version, **tiny_configs.scheduler_config(arch)},
    }
    encoders = tiny_configs.text_encoder_configs(arch, size)
    for name, suffix in (("text_encoder", ""), ("text_encoder_2", "_2")):
        if name not in encoders:
            index[name] = [None, None]
            index["tokenizer" + suffix] = [None, None]
            continue
        model_class = "CLIPTextModelWithProjection" if name == "text_encoder_2" else "CLIPTextModel"
        index[name] = ["transformers", model_class]
        index["tokenizer" + suffix] = ["transformers", "CLIPTokenizer"]
        configs[name] = {"architectures": [model_class], "model_type": "clip_text_model", **encoders[name]}
    if fam == "sdxl":
        index["force_zeros_for_empty_prompt"] = arch == "sdxl"
        if arch == "sdxl-refiner":
            index["requires_aesthetics_score"] = True
    else:
        index.update({"safety_checker": [None, None], "feature_extractor": [None, None],
                      "requires_safety_checker": False})
        index.pop("text_encoder_2")
        index.pop("tokenizer_2")
    return configs


def shipped_tiny_configs() -> dict[str, dict[str, dict[str, Any]]]:
    """The tiny configs generation ships (``sdhub/generate/configs/tiny.json``): one pipeline per architecture."""
    return {arch: pipeline_configs(arch) for arch in SHIPPED_ARCHITECTURES}


def write_shipped_tiny_configs(path: Path = SHIPPED_TINY_CONFIGS) -> Path:
    """Rewrite ``tiny.json`` after a change to the factory's configs (``python -m sdhub.testing.pipeline_folder``)."""
    _write_json(path, shipped_tiny_configs())
    return path


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    print(write_shipped_tiny_configs())
