"""Which diffusers configs and CLIP tokenizers a checkpoint needs, found offline.

Real architectures use the configs shipped in ``sdhub/generate/configs``; the tiny models of
``sdhub.testing`` and the demo (recognised by their widths) use the tiny configs shipped beside them
and the byte-level tokenizer. The CLIP tokenizer comes from the local Hugging Face cache or, offline,
from the vocabulary ``open_clip`` ships; when neither is there the error says how to get either.
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

from sdhub.errors import BadInputError, MissingDependencyError
from sdhub.generate.byte_tokenizer import write_tokenizer_files
from sdhub.generate.clip_vocabulary import VOCABULARY_PACKAGE, packaged_tokenizer_dir
from sdhub.sources.huggingface import hub_cache_dir

#: Architectures with shipped configs (helper C's detection names).
SHIPPED_ARCHITECTURES = ("sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner")

#: Width of the UNet's first block in the real models, per config family.
_REAL_UNET_WIDTH = {"sd1": 320, "sd2": 320, "sd2-v": 320, "sdxl": 320, "sdxl-refiner": 384}
#: The shipped configs of the tiny models, per config family (written by ``sdhub.testing.pipeline_folder``).
TINY_CONFIGS_FILE = "tiny.json"

#: Hugging Face repos whose tokenizer files each text encoder uses; the first one cached wins.
TOKENIZER_REPOS = {
    "tokenizer": ("openai/clip-vit-large-patch14",),
    # OpenCLIP bigG shares CLIP's BPE vocabulary; A1111 pads its prompts with id 0 ("!").
    "tokenizer_2": ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", "openai/clip-vit-large-patch14"),
}
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
_REQUIRED_TOKENIZER_FILES = ("vocab.json", "merges.txt")
FETCH_HINT = "run `sdhub doctor --fetch-tokenizers` once while online"
INSTALL_HINT = f"`pip install --no-deps {VOCABULARY_PACKAGE}`"


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
    return _read_shipped(f"{config_family(arch)}.json")


def pipeline_config(arch: str, unet_width: int, in_channels: int = 4) -> PipelineConfig:
    """Configs for a checkpoint of ``arch`` whose UNet's first block is ``unet_width`` wide."""
    family = config_family(arch)
    if unet_width == _REAL_UNET_WIDTH[family]:
        components = shipped_config(family)
        config = PipelineConfig(family, components)
    else:
        config = _tiny_config(family, unet_width)
    config.components["unet"]["in_channels"] = in_channels
    return config


def _tiny_config(family: str, unet_width: int) -> PipelineConfig:
    """The shipped tiny configs of ``family`` when the widths are the tiny model's."""
    components = _read_shipped(TINY_CONFIGS_FILE)[family]
    if components["unet"]["block_out_channels"][0] != unet_width:
        raise BadInputError(f"the UNet's first block is {unet_width} channels wide; a {family} model has "
                            f"{_REAL_UNET_WIDTH[family]}: the file is not a standard {family} checkpoint")
    config = PipelineConfig(family, components, tiny=True)
    config.tokenizer_dirs = {name.replace("text_encoder", "tokenizer"): _byte_tokenizer_dir()
                             for name in config.text_encoder_names}
    return config


def _read_shipped(name: str) -> Any:
    return json.loads(resources.files("sdhub.generate.configs").joinpath(name).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _byte_tokenizer_dir() -> Path:
    """The byte-level tokenizer's files, written once per process and removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="sdhub-byte-tokenizer-"))
    atexit.register(shutil.rmtree, folder, True)
    return write_tokenizer_files(folder)


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


def resolve_tokenizer_dir(name: str, cache_dir: Path | None = None, *, packaged: bool = True) -> Path:
    """Where the tokenizer for ``name`` ('tokenizer' or 'tokenizer_2') is, or a fix-it error.

    The Hugging Face cache first (what the user put there), then, with ``packaged``, the same
    files built from the vocabulary ``open_clip`` ships (see ``clip_vocabulary``).
    """
    repos = TOKENIZER_REPOS[name]
    for repo in repos:
        folder = cached_tokenizer_dir(repo, cache_dir)
        if folder is not None:
            return folder
    built = packaged_tokenizer_dir() if packaged else None
    if built is not None:
        return built
    cache = cache_dir or hub_cache_dir()
    raise MissingDependencyError(
        f"the CLIP tokenizer ({repos[0]}: {', '.join(_REQUIRED_TOKENIZER_FILES)}) is not in the Hugging Face "
        f"cache {cache}, and {VOCABULARY_PACKAGE}, which ships its vocabulary, is not installed; "
        f"{INSTALL_HINT}, or {FETCH_HINT} (or `hf download {repos[0]} {' '.join(TOKENIZER_FILES)}`)"
    )


def load_tokenizers(config: PipelineConfig, cache_dir: Path | None = None) -> dict[str, Any]:
    """CLIPTokenizer objects for each text encoder of ``config``, from local files only."""
    from transformers import CLIPTokenizer

    tokenizers = {}
    for encoder in config.text_encoder_names:
        name = encoder.replace("text_encoder", "tokenizer")
        folder = config.tokenizer_dirs.get(name) or resolve_tokenizer_dir(name, cache_dir)
        extra = {"model_max_length": 77}
        if name == "tokenizer_2" and name not in config.tokenizer_dirs:
            extra["pad_token"] = "!"  # SDXL pads its second prompt with "!"; a pipeline's own tokenizer says so itself
        tokenizers[name] = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, **extra)
    return tokenizers
