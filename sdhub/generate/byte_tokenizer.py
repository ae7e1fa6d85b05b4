"""A byte-level CLIP tokenizer (no merges) small enough to ship, so nothing needs the network.

The tiny models of ``sdhub.testing`` (and the demo's) are built for it, and ``sdhub prompt`` stands it in
for CLIP's tokenizer when that is not in the Hugging Face cache.
"""

from __future__ import annotations

import json
from pathlib import Path

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 77


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP byte-level BPE uses for the bytes 0..255, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    next_code = 256
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(next_code)
            next_code += 1
    return [symbols[b] for b in range(256)]


def vocabulary() -> dict[str, int]:
    """CLIP's vocabulary order without merges: byte symbols, their word-final forms, then the two specials."""
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


VOCAB_SIZE = len(vocabulary())
BOS_TOKEN_ID = vocabulary()[START_TOKEN]
EOS_TOKEN_ID = vocabulary()[END_TOKEN]


def write_tokenizer_files(folder: Path) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocabulary(), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    specials = {"bos_token": START_TOKEN, "eos_token": END_TOKEN, "unk_token": END_TOKEN, "pad_token": END_TOKEN}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        **specials,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    return folder
