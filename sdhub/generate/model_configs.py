"""Which diffusers configs and CLIP tokenizers a checkpoint needs, found offline.

Real architectures use the configs shipped in ``sdhub/generate/configs``; the tiny models of
``sdhub.testing`` (recognised by their widths) use the factory's own configs and tokenizer. The
CLIP tokenizer comes from the local Hugging Face cache; when it is missing the error names the
files and the command that fetches them.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sdhub.sources.huggingface import hub_cache_dir
from sdhub.errors import BadInputError, MissingDependencyError

#: Architectures with shipped configs (helper C's detection names).
SHIPPED_ARCHITECTURES = ("sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner")

#: Width of the UNet's first block in the real models, per config family.
_REAL_UNET_WIDTH = {"sd1": 320, "sd2": 320, "sd2-v": 320, "sdxl": 320, "sdxl-refiner": 384}

#: Hugging Face repos whose tokenizer files each text encoder uses; the first one cached wins.
TOKENIZER_REPOS = {
    "tokenizer": ("openai/clip-vit-large-patch14",),
    # OpenCLIP bigG shares CLIP's BPE vocabulary; A1111 pads its prompts with id 0 ("!").
    "tokenizer_2": ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", "openai/clip-vit-large-patch14"),
}
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
_REQUIRED_TOKENIZER_FILES = ("vocab.json", "merges.txt")
FETCH_HINT = "run `sdhub doctor --fetch-tokenizers` once while online"


@dataclass
class PipelineConfig:
    """The configs of one architecture and where its tokenizers come from."""

    arch: str
    components: dict[str, dict[str, Any]]
    tiny: bool = False
    tokenizer_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def model_index(self) -> dict[str, Any]:
        return self.components["model_index"]

    @property
    def prediction_type(self) -> str:
        return self.components["scheduler"].get("prediction_type", "epsilon")

    @property
    def text_encoder_names(self) -> tuple[str, ...]:
        return tuple(name for name in ("text_encoder", "text_encoder_2") if name in self.components)


def config_family(arch: str) -> str:
    """The shipped config an architecture name uses (``sd1-inpainting`` uses ``sd1``)."""
    base = arch.removesuffix("-inpainting")
    if base not in SHIPPED_ARCHITECTURES:
        raise BadInputError(f"no generation config for architecture {arch!r}; "
                            f"supported: {', '.join(SHIPPED_ARCHITECTURES)} (and their inpainting variants)")
    return base


def shipped_config(arch: str) -> dict[str, dict[str, Any]]:
    """The shipped component configs of ``arch`` (a fresh copy)."""
    family = config_family(arch)
    text = resources.files("sdhub.generate.configs").joinpath(f"{family}.json").read_text(encoding="utf-8")
    return json.loads(text)


def pipeline_config(arch: str, unet_width: int, in_channels: int = 4) -> PipelineConfig:
    """Configs for a checkpoint of ``arch`` whose UNet's first block is ``unet_width`` wide."""
    family = config_family(arch)
    if unet_width == _REAL_UNET_WIDTH[family]:
        components = shipped_config(family)
        config = PipelineConfig(family, components)
    else:
        config = _factory_config(family, unet_width)
    config.components["unet"]["in_channels"] = in_channels
    return config


def _factory_config(family: str, unet_width: int) -> PipelineConfig:
    """The tiny configs of ``sdhub.testing`` when the widths are the factory's."""
    folder = _factory_folder(family)
    components: dict[str, dict[str, Any]] = {"model_index": _read_json(folder / "model_index.json")}
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if (folder / name / "config.json").is_file():
            components[name] = _read_json(folder / name / "config.json")
    components["scheduler"] = _read_json(folder / "scheduler" / "scheduler_config.json")
    if components["unet"]["block_out_channels"][0] != unet_width:
        raise BadInputError(f"the UNet's first block is {unet_width} channels wide; a {family} model has "
                            f"{_REAL_UNET_WIDTH[family]}: the file is not a standard {family} checkpoint")
    tokenizers = {name: folder / name for name in ("tokenizer", "tokenizer_2") if (folder / name).is_dir()}
    return PipelineConfig(family, components, tiny=True, tokenizer_dirs=tokenizers)


@functools.lru_cache(maxsize=None)
def _factory_folder(family: str) -> Path:
    """The factory's pipeline folder for ``family``, written once per process and removed at exit."""
    from sdhub.testing import factory

    folder = Path(tempfile.mkdtemp(prefix="sdhub-tiny-config-"))
    atexit.register(shutil.rmtree, folder, True)
    return factory.diffusers_config_dir(folder / family, family)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def cached_tokenizer_dir(repo_id: str, cache_dir: Path | None = None) -> Path | None:
    """The snapshot folder holding ``repo_id``'s tokenizer files in the local cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    cache = cache_dir or hub_cache_dir()
    folder = None
    for filename in _REQUIRED_TOKENIZER_FILES:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache))
        if not isinstance(found, str):
            return None
        folder = Path(found).parent
    return folder


def resolve_tokenizer_dir(name: str, cache_dir: Path | None = None) -> Path:
    """Where the tokenizer for ``name`` ('tokenizer' or 'tokenizer_2') is, or a fix-it error."""
    repos = TOKENIZER_REPOS[name]
    for repo in repos:
        folder = cached_tokenizer_dir(repo, cache_dir)
        if folder is not None:
            return folder
    cache = cache_dir or hub_cache_dir()
    raise MissingDependencyError(
        f"the CLIP tokenizer ({repos[0]}: {', '.join(_REQUIRED_TOKENIZER_FILES)}) is not in the Hugging Face "
        f"cache {cache}; {FETCH_HINT} (or `hf download {repos[0]} {' '.join(TOKENIZER_FILES)}`)"
    )


def load_tokenizers(config: PipelineConfig, cache_dir: Path | None = None) -> dict[str, Any]:
    """CLIPTokenizer objects for each text encoder of ``config``, from local files only."""
    from transformers import CLIPTokenizer

    tokenizers = {}
    for encoder in config.text_encoder_names:
        name = encoder.replace("text_encoder", "tokenizer")
        folder = config.tokenizer_dirs.get(name) or resolve_tokenizer_dir(name, cache_dir)
        extra = {"model_max_length": 77}
        if name == "tokenizer_2" and not config.tiny:
            extra["pad_token"] = "!"
        tokenizers[name] = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, **extra)
    return tokenizers
