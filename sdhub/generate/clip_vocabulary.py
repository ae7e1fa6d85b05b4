"""CLIP's real tokenizer built offline from the BPE vocabulary file that ``open_clip`` ships.

OpenAI's CLIP, SD's text encoders and OpenCLIP (SD2, SDXL's bigG) share one byte-level BPE
vocabulary: the 256 byte symbols, their word-final ``</w>`` forms, the first 48,894 merges of
``bpe_simple_vocab_16e6.txt.gz`` and the two specials, 49,408 tokens. Written as ``vocab.json``
and ``merges.txt`` they are the files of the Hub's ``openai/clip-vit-large-patch14`` tokenizer, so
generation and ``sdhub doctor`` need no Hugging Face cache. The package is found without being
imported (importing it needs torchvision, which sdhub does not install).
"""

from __future__ import annotations

import atexit
import functools
import gzip
import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from sdhub.generate.byte_tokenizer import END_TOKEN, MODEL_MAX_LENGTH, START_TOKEN, byte_symbols

#: The distribution that ships the vocabulary, and the file's name inside its package.
VOCABULARY_PACKAGE = "open_clip_torch"
VOCABULARY_FILE = "bpe_simple_vocab_16e6.txt.gz"
#: CLIP uses this many merges of the file (its vocabulary is 49,408 tokens).
MERGE_COUNT = 49152 - 256 - 2
VOCAB_SIZE = 2 * 256 + MERGE_COUNT + 2


def packaged_vocabulary_file() -> Path | None:
    """``open_clip``'s BPE vocabulary file where the package is installed, else None."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / VOCABULARY_FILE
        if candidate.is_file():
            return candidate
    return None


def vocabulary_source() -> str:
    """Where the packaged vocabulary comes from, for doctor and ``sdhub prompt``."""
    try:
        version = importlib.metadata.version(VOCABULARY_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"CLIP's BPE vocabulary from {VOCABULARY_PACKAGE} {version}"


def _symbols_in_clip_order() -> list[str]:
    """The byte symbols as CLIP numbers them: printable bytes first, then the rest (ids 0..255)."""
    symbols = byte_symbols()
    printable = [b for b in range(256) if ord(symbols[b]) == b]
    return [symbols[b] for b in printable + [b for b in range(256) if ord(symbols[b]) != b]]


def read_merges(bpe_file: Path) -> list[str]:
    """The merges CLIP uses, one ``"a b"`` pair per entry, from a (gzipped) BPE vocabulary file."""
    with gzip.open(bpe_file, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = lines[1:MERGE_COUNT + 1]  # the first line is the file's version header
    if len(merges) != MERGE_COUNT or any(len(merge.split()) != 2 for merge in merges):
        raise ValueError(f"{bpe_file} is not CLIP's BPE vocabulary ({len(merges)} merges)")
    return merges


def clip_vocabulary(merges: list[str]) -> dict[str, int]:
    """Token -> id exactly as CLIP's tokenizer numbers them."""
    symbols = _symbols_in_clip_order()
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges] + [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def write_clip_tokenizer(folder: Path, bpe_file: Path) -> Path:
    """Write the Hub tokenizer files (vocab.json, merges.txt, configs) of CLIP into ``folder``."""
    merges = read_merges(bpe_file)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocabulary(merges), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    specials = {"bos_token": START_TOKEN, "eos_token": END_TOKEN, "unk_token": END_TOKEN, "pad_token": END_TOKEN}
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": MODEL_MAX_LENGTH, "do_lower_case": True,
              "errors": "replace", "add_prefix_space": False, **specials}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    return folder


@functools.lru_cache(maxsize=None)
def packaged_tokenizer_dir() -> Path | None:
    """CLIP's tokenizer files built from the packaged vocabulary, once per process; None without it."""
    bpe_file = packaged_vocabulary_file()
    if bpe_file is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="sdhub-clip-tokenizer-"))
    atexit.register(shutil.rmtree, folder, True)
    try:
        return write_clip_tokenizer(folder, bpe_file)
    except (OSError, ValueError, EOFError):  # a damaged install: as if the package were missing
        return None
