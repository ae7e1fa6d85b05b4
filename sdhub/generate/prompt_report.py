"""What A1111 would make of a prompt: emphasis runs, schedule, chunks and tokens, networks, embeddings.

``analyse_prompt`` is the library side of ``sdhub prompt``; it needs only a tokenizer, no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sdhub.generate.conditioning import Embedding, PromptEncoder
from sdhub.generate.extra_networks import LORA_NETWORKS, extract_extra_networks
from sdhub.generate.prompt_attention import parse_prompt_attention
from sdhub.generate.prompt_schedule import prompt_schedule, split_and

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")


@dataclass
class ChunkReport:
    """One 77-token window: the tokens between BOS and EOS padding, and their count."""

    tokens: list[str]
    token_count: int
    embeddings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "token_count": self.token_count, "embeddings": self.embeddings}


@dataclass
class TextReport:
    """One text as it reaches CLIP: its emphasis runs and chunks."""

    until_step: int
    text: str
    attention: list[list]
    token_count: int
    chunks: list[ChunkReport]

    def to_dict(self) -> dict[str, Any]:
        return {"until_step": self.until_step, "text": self.text, "attention": self.attention,
                "token_count": self.token_count, "chunks": [c.to_dict() for c in self.chunks]}


@dataclass
class PromptReport:
    """``attention`` and ``schedule`` are A1111's outputs for the text as given; the rest explains it."""

    text: str
    steps: int
    attention: list[list]
    schedule: list[list]
    text_without_networks: str
    subprompts: list[dict[str, Any]]
    loras: list[dict[str, Any]]
    embeddings: list[str]
    negative: dict[str, Any] | None
    tokenizer: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text, "steps": self.steps, "attention": self.attention, "schedule": self.schedule,
            "text_without_networks": self.text_without_networks, "subprompts": self.subprompts,
            "loras": self.loras, "embeddings": self.embeddings, "negative": self.negative,
            "tokenizer": self.tokenizer, "notes": self.notes,
        }


def analyse_prompt(
    text: str, *, negative: str | None = None, steps: int = 20, tokenizer: Any, tokenizer_name: str = "",
    embeddings: Iterable[Embedding] = (), lora_folder: Path | None = None,
) -> PromptReport:
    """Parse ``text`` (and ``negative``) the way A1111 does and tokenise each scheduled text."""
    encoder = PromptEncoder(tokenizer, None, list(embeddings))
    stripped, tags = extract_extra_networks(text)
    subprompts = []
    used: dict[str, None] = {}
    for sub_text, weight in split_and(stripped):
        texts = _texts_report(encoder, sub_text, steps, used)
        subprompts.append({"text": sub_text, "weight": weight, "schedule": [t.to_dict() for t in texts]})
    negative_report = None
    if negative is not None:
        # A1111 removes extra-network tags from the positive prompt only and has no AND in the negative
        negative_texts = _texts_report(encoder, negative, steps, used)
        negative_report = {"text": negative, "attention": parse_prompt_attention(negative),
                           "schedule": [t.to_dict() for t in negative_texts]}
    loras = [_lora_entry(tag, lora_folder) for tag in tags if tag.network in LORA_NETWORKS]
    notes = [f"extra network <{tag.network}:...> is not a LoRA; sdhub ignores it as A1111 would without it"
             for tag in tags if tag.network not in LORA_NETWORKS]
    return PromptReport(
        text=text, steps=steps, attention=parse_prompt_attention(text), schedule=prompt_schedule(text, steps),
        text_without_networks=stripped, subprompts=subprompts, loras=loras, embeddings=list(used),
        negative=negative_report, tokenizer=tokenizer_name, notes=notes,
    )


def _texts_report(encoder: PromptEncoder, text: str, steps: int, used: dict[str, None]) -> list[TextReport]:
    reports = []
    for until, scheduled in prompt_schedule(text, steps):
        chunks, count = encoder.tokenize_line(scheduled)
        chunk_reports = []
        for chunk in chunks:
            body = chunk.tokens[1:-1]
            length = len(body)
            while length and body[length - 1] == encoder.id_end:
                length -= 1
            names = [embedding.name for _, embedding in chunk.fixes]
            used.update(dict.fromkeys(names))
            tokens = encoder.tokenizer.convert_ids_to_tokens(body[:length])
            for offset, embedding in chunk.fixes:  # placeholders stand for the embedding's vectors
                for index in range(embedding.vector_count):
                    tokens[offset + index] = f"<{embedding.name}#{index}>"
            chunk_reports.append(ChunkReport(tokens, length, names))
        reports.append(TextReport(until, scheduled, parse_prompt_attention(scheduled), count, chunk_reports))
    return reports


def _lora_entry(tag, lora_folder: Path | None) -> dict[str, Any]:
    entry = tag.to_dict()
    found = None
    if lora_folder is not None and Path(lora_folder).is_dir():
        found = next((p for p in sorted(Path(lora_folder).rglob("*"))
                      if p.suffix.lower() in LORA_SUFFIXES and p.stem == tag.name and p.is_file()), None)
    entry["path"] = str(found) if found else None
    return entry
