"""A1111's CLIP conditioning on a transformers text encoder.

API (used by the generation pipeline)::

    encoder = PromptEncoder(tokenizer, text_encoder, embeddings, clip_skip=2)   # SD1
    cond = encoder.encode("a (cat:1.2), bad-hands-5")     # (1, 77*k, C) float tensor
    batch = encoder.encode_batch(["a", "b"])               # EncodedBatch(cond, pooled, chunks, used_embeddings)
    schedule = conditioning_schedule(encoder, "a [b:c:5]", steps=20)   # [ScheduledCond(until_step, cond)]
    parts = multicond_schedule(encoder, "a AND b :0.5", steps=20)      # [(weight, schedule), ...]
    xl = PromptEncoder.sdxl_pair(tok, te, tok2, te2, embeddings); encode_sdxl(xl, [text])  # cond, pooled
    cond, uncond = pad_conds(cond, uncond, encoder.encode(""))         # equal lengths ("Pad conds")
    infotext_params(batch.used_embeddings, texts)                      # {"TI hashes": ...} for the infotext

A prompt is parsed for emphasis, tokenised run by run without BOS/EOS, cut into 75-token chunks
(commas pull the words after them into the next chunk when the cut falls within 20 tokens of a
comma; ``BREAK`` closes a chunk), each chunk wrapped as BOS + 75 + EOS, encoded on its own, and the
outputs concatenated. Emphasis multiplies each token's hidden state by its weight and rescales the
chunk to its original mean. Textual-inversion embeddings are found by the token sequence of their
name and their vectors replace the placeholder tokens' input embeddings. ``PromptEncoder.sd2`` and
``PromptEncoder.sdxl_pair`` configure the SD2/SDXL variants (pad id 0, penultimate layer, pooled).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from sdhub.errors import BadInputError
from sdhub.generate.prompt_attention import parse_prompt_attention
from sdhub.generate.prompt_schedule import prompt_schedule, split_and

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")


@dataclass
class Embedding:
    """A textual-inversion embedding: the name used in prompts and its vectors.

    ``vectors`` is ``(n, dim)``, or for SDXL a dict ``{"clip_l": (n, 768), "clip_g": (n, 1280)}``.
    """

    name: str
    vectors: torch.Tensor | dict[str, torch.Tensor]
    sha256: str | None = None

    @property
    def vector_count(self) -> int:
        first = next(iter(self.vectors.values())) if isinstance(self.vectors, dict) else self.vectors
        return int(first.shape[0])

    def vectors_for(self, key: str | None) -> torch.Tensor | None:
        """The vectors for one encoder (``key`` picks clip_l/clip_g of an SDXL embedding)."""
        if isinstance(self.vectors, dict):
            return self.vectors.get(key) if key else None
        return self.vectors if key is None or key == "clip_l" else None

    @property
    def shorthash(self) -> str | None:
        """A1111's 12-hex TI hash (full-file SHA-256) for the infotext."""
        return self.sha256[:12] if self.sha256 else None


@dataclass
class Chunk:
    """77 token ids with their weights, and where embeddings go: (offset in the 75, embedding)."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[tuple[int, Embedding]] = field(default_factory=list)


@dataclass
class EncodedBatch:
    """Conditioning of a batch of texts: ``cond`` is (B, 77*k, C); ``pooled`` only for SDXL's bigG."""

    cond: torch.Tensor
    pooled: torch.Tensor | None
    chunks: list[list[Chunk]]
    token_counts: list[int]
    used_embeddings: dict[str, Embedding]


class PromptEncoder:
    """Encodes prompts with one CLIP text encoder exactly as A1111's ``sd_hijack_clip`` does.

    ``clip_skip`` N (SD1) uses ``hidden_states[-N]`` plus the final layer norm; N <= 1 is the last
    hidden state. ``layer=k`` instead fixes ``hidden_states[-k]`` (final norm only if ``final_norm``). ``pad_token_id`` None pads with
    EOS (SD1, CLIP-L); 0 replaces everything after the first EOS with 0 (SD2, bigG).
    ``embedding_key`` picks ``clip_l``/``clip_g`` vectors of SDXL embeddings. Without a
    ``text_encoder`` only ``tokenize_line`` works (for showing chunks).
    """

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: torch.nn.Module | None,
        embeddings: Iterable[Embedding] | dict[str, Embedding] | None = None,
        clip_skip: int = 1,
        *,
        layer: int | None = None,
        final_norm: bool = True,
        pad_token_id: int | None = None,
        emphasis: str = "Original",
        comma_backtrack: int = COMMA_BACKTRACK,
        embedding_key: str | None = None,
        return_pooled: bool = False,
    ) -> None:
        if emphasis not in EMPHASIS_MODES:
            raise BadInputError(f"unknown emphasis mode {emphasis!r}; use one of {', '.join(EMPHASIS_MODES)}")
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.layer = layer if layer is not None else (clip_skip if clip_skip > 1 else None)
        self.final_norm = final_norm
        self.emphasis = emphasis
        self.comma_backtrack = comma_backtrack
        self.embedding_key = embedding_key
        self.return_pooled = return_pooled
        vocab = tokenizer.get_vocab()
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        self.id_pad = self.id_end if pad_token_id is None else pad_token_id
        self.comma_token = vocab.get(",</w>")
        self.embeddings: dict[str, Embedding] = {}
        self._lookup: dict[int, list[tuple[list[int], Embedding]]] = {}
        if embeddings is not None:
            for embedding in embeddings.values() if isinstance(embeddings, dict) else embeddings:
                self.add_embedding(embedding)

    @classmethod
    def sd2(cls, tokenizer: Any, text_encoder: torch.nn.Module, embeddings=None, **options: Any) -> "PromptEncoder":
        """SD2's OpenCLIP wrapper: pad id 0, and clip skip does not apply (the model is already penultimate)."""
        options.pop("clip_skip", None)  # A1111 ignores clip skip for SD2
        return cls(tokenizer, text_encoder, embeddings, pad_token_id=0, **options)

    @classmethod
    def sdxl_pair(cls, tokenizer, text_encoder, tokenizer_2, text_encoder_2, embeddings=None, **options: Any):
        """SDXL's two encoders: CLIP-L and bigG, both penultimate without the final norm; bigG gives pooled."""
        options.pop("clip_skip", None)  # A1111 ignores clip skip for SDXL by default
        clip_l = cls(tokenizer, text_encoder, embeddings, layer=2, final_norm=False, embedding_key="clip_l", **options)
        clip_g = cls(tokenizer_2, text_encoder_2, embeddings, layer=2, final_norm=False, pad_token_id=0,
                     embedding_key="clip_g", return_pooled=True, **options)
        return clip_l, clip_g

    # -- embeddings -----------------------------------------------------------------------------
    def add_embedding(self, embedding: Embedding) -> bool:
        """Register ``embedding`` if its width fits this encoder (A1111 skips the others); True if added."""
        vectors = embedding.vectors_for(self.embedding_key)
        if vectors is None or vectors.ndim != 2:
            return False
        if self.text_encoder is not None and vectors.shape[1] != self.text_encoder.get_input_embeddings().weight.shape[1]:
            return False
        ids = self._tokenize([embedding.name])[0]
        if not ids:
            return False
        self.embeddings[embedding.name] = embedding
        entries = [entry for entry in self._lookup.get(ids[0], []) if entry[1].name != embedding.name]
        entries.append((ids, embedding))
        self._lookup[ids[0]] = sorted(entries, key=lambda entry: len(entry[0]), reverse=True)
        return True

    def _embedding_at(self, tokens: list[int], offset: int) -> tuple[Embedding | None, int]:
        for ids, embedding in self._lookup.get(tokens[offset], []):
            if tokens[offset:offset + len(ids)] == ids:
                return embedding, len(ids)
        return None, 0

    # -- tokens and chunks ----------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        # verbose=False: runs longer than 77 tokens are expected here (they are chunked), no warning
        return self.tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]

    def tokenize_line(self, line: str) -> tuple[list[Chunk], int]:
        """A1111 ``tokenize_line``: the 77-token chunks of one text and its token count."""
        runs = parse_prompt_attention(line) if self.emphasis != "None" else [[line, 1.0]]
        tokenized = self._tokenize([text for text, _ in runs])
        chunks: list[Chunk] = []
        chunk = Chunk()
        token_count = 0
        last_comma = -1

        def close(is_last: bool = False) -> None:
            nonlocal chunk, token_count, last_comma
            token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
            missing = CHUNK_LENGTH - len(chunk.tokens)
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end] * missing + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0] * missing + [1.0]
            chunks.append(chunk)
            chunk = Chunk()
            last_comma = -1

        for tokens, (text, weight) in zip(tokenized, runs):
            if text == "BREAK" and weight == -1:
                close()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma_token:
                    last_comma = len(chunk.tokens)
                elif (self.comma_backtrack and len(chunk.tokens) == CHUNK_LENGTH and last_comma != -1
                      and len(chunk.tokens) - last_comma <= self.comma_backtrack):
                    cut = last_comma + 1
                    moved_tokens, moved_weights = chunk.tokens[cut:], chunk.multipliers[cut:]
                    chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                    close()
                    chunk.tokens, chunk.multipliers = moved_tokens, moved_weights
                if len(chunk.tokens) == CHUNK_LENGTH:
                    close()
                embedding, name_length = self._embedding_at(tokens, position)
                if embedding is None:
                    chunk.tokens.append(token)
                    chunk.multipliers.append(weight)
                    position += 1
                    continue
                count = embedding.vector_count
                if len(chunk.tokens) + count > CHUNK_LENGTH:
                    close()
                chunk.fixes.append((len(chunk.tokens), embedding))
                chunk.tokens += [0] * count
                chunk.multipliers += [weight] * count
                position += name_length
        if chunk.tokens or not chunks:
            close(is_last=True)
        return chunks, token_count

    def empty_chunk(self) -> Chunk:
        """The chunk A1111 fills a shorter text's missing chunks with: BOS then 76 EOS."""
        return Chunk([self.id_start] + [self.id_end] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2))

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, text: str) -> torch.Tensor:
        """The conditioning of one text, shape (1, 77*k, C)."""
        return self.encode_batch([text]).cond

    @torch.no_grad()
    def encode_batch(self, texts: list[str]) -> EncodedBatch:
        """Encode texts together as A1111 does (chunk counts equalised with empty chunks)."""
        lines = [self.tokenize_line(text) for text in texts]
        batch_chunks = [chunks for chunks, _ in lines]
        used: dict[str, Embedding] = {}
        outputs, pooled = [], None
        for index in range(max(len(chunks) for chunks in batch_chunks)):
            batch = [chunks[index] if index < len(chunks) else self.empty_chunk() for chunks in batch_chunks]
            for chunk in batch:
                for _, embedding in chunk.fixes:
                    used[embedding.name] = embedding
            z, chunk_pooled = self._encode_chunks(batch)
            outputs.append(z)
            if index == 0:
                pooled = chunk_pooled
        return EncodedBatch(torch.hstack(outputs), pooled, batch_chunks, [count for _, count in lines], used)

    def _encode_chunks(self, batch: list[Chunk]) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = self.text_encoder.get_input_embeddings().weight.device
        tokens = torch.asarray([chunk.tokens for chunk in batch]).to(device)
        if self.id_pad != self.id_end:
            for row, chunk in enumerate(batch):
                tokens[row, chunk.tokens.index(self.id_end) + 1:] = self.id_pad
        hook = self.text_encoder.get_input_embeddings().register_forward_hook(self._splice_hook(batch))
        try:
            output = self.text_encoder(input_ids=tokens, output_hidden_states=self.layer is not None)
        finally:
            hook.remove()
        if self.layer is None:
            z = output.last_hidden_state
        else:
            if self.layer > len(output.hidden_states):
                raise BadInputError(
                    f"clip skip {self.layer} is deeper than this text encoder's {len(output.hidden_states) - 1} layers"
                )
            z = output.hidden_states[-self.layer]
            if self.final_norm:
                # transformers 5 puts final_layer_norm on the model itself; 4.x under .text_model
                z = getattr(self.text_encoder, "text_model", self.text_encoder).final_layer_norm(z)
        pooled = getattr(output, "text_embeds", None) if self.return_pooled else None
        multipliers = torch.asarray([chunk.multipliers for chunk in batch]).to(device)
        return self._emphasise(z, multipliers), pooled

    def _splice_hook(self, batch: list[Chunk]):
        key = self.embedding_key

        def splice(_module, _inputs, embeds: torch.Tensor) -> torch.Tensor | None:
            if not any(chunk.fixes for chunk in batch):
                return None
            rows = []
            for row, chunk in zip(embeds, batch):
                for offset, embedding in chunk.fixes:
                    vectors = embedding.vectors_for(key).to(device=row.device, dtype=row.dtype)
                    count = min(row.shape[0] - offset - 1, vectors.shape[0])
                    row = torch.cat([row[:offset + 1], vectors[:count], row[offset + 1 + count:]])
                rows.append(row)
            return torch.stack(rows)

        return splice

    def _emphasise(self, z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
        if self.emphasis in ("Ignore", "None"):
            return z
        original_mean = z.mean()
        z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
        if self.emphasis == "No norm":
            return z
        return z * (original_mean / z.mean())


def encode_sdxl(encoders: tuple[PromptEncoder, PromptEncoder], texts: list[str]) -> EncodedBatch:
    """SDXL: CLIP-L and bigG outputs joined along the channel axis; pooled from bigG's first chunk."""
    clip_l, clip_g = (encoder.encode_batch(texts) for encoder in encoders)
    if clip_l.cond.shape[1] != clip_g.cond.shape[1]:
        raise BadInputError("the two SDXL text encoders chunked the prompt differently; their tokenizers differ")
    return EncodedBatch(torch.cat([clip_l.cond, clip_g.cond], dim=2), clip_g.pooled, clip_l.chunks,
                        clip_l.token_counts, {**clip_l.used_embeddings, **clip_g.used_embeddings})


@dataclass
class ScheduledCond:
    """Conditioning to use while the sampler's step counter is <= ``until_step``."""

    until_step: int
    cond: torch.Tensor
    pooled: torch.Tensor | None = None


def conditioning_schedule(
    encoder: PromptEncoder | tuple[PromptEncoder, PromptEncoder], prompt: str, steps: int, *,
    hires_steps: int | None = None, old_scheduling: bool = False,
) -> list[ScheduledCond]:
    """A1111 ``get_learned_conditioning`` for one prompt: all its scheduled texts encoded as one batch.

    ``encoder`` is one PromptEncoder, or SDXL's pair from ``PromptEncoder.sdxl_pair``.
    """
    schedule = prompt_schedule(prompt, steps, hires_steps=hires_steps, old_scheduling=old_scheduling)
    texts = [text for _, text in schedule]
    batch = encode_sdxl(encoder, texts) if isinstance(encoder, tuple) else encoder.encode_batch(texts)
    return [
        ScheduledCond(until, batch.cond[index:index + 1],
                      None if batch.pooled is None else batch.pooled[index:index + 1])
        for index, (until, _) in enumerate(schedule)
    ]


def multicond_schedule(
    encoder: PromptEncoder | tuple[PromptEncoder, PromptEncoder], prompt: str, steps: int, **options: Any,
) -> list[tuple[float, list[ScheduledCond]]]:
    """A1111 composable diffusion: each ``AND`` sub-prompt's weight and conditioning schedule.

    The sampler combines them as ``uncond + sum(weight_i * cfg * (cond_i - uncond))``.
    """
    cache: dict[str, list[ScheduledCond]] = {}
    result = []
    for text, weight in split_and(prompt):
        if text not in cache:  # A1111 encodes identical sub-prompts once
            cache[text] = conditioning_schedule(encoder, text, steps, **options)
        result.append((weight, cache[text]))
    return result


def infotext_params(used_embeddings: dict[str, Embedding], texts: Iterable[str], emphasis: str = "Original") -> dict[str, str]:
    """The infotext entries conditioning adds, as A1111: ``TI hashes`` of the embeddings used, and
    ``Emphasis`` when a non-default mode met a bracket in ``texts``."""
    params = {}
    hashes = [f"{name.replace(':', '').replace(',', '')}: {embedding.shorthash}"
              for name, embedding in used_embeddings.items() if embedding.shorthash]
    if hashes:
        params["TI hashes"] = ", ".join(hashes)
    if emphasis != "Original" and any("(" in text or "[" in text for text in texts):
        params["Emphasis"] = emphasis
    return params


def pad_conds(cond: torch.Tensor, uncond: torch.Tensor, empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make cond and uncond the same length by appending copies of the empty prompt's conditioning.

    This is A1111's "Pad conds" (``pad_cond_uncond``); ``empty`` is ``encoder.encode("")``.
    """
    repeats = (cond.shape[1] - uncond.shape[1]) // empty.shape[1]
    if repeats > 0:
        uncond = torch.cat([uncond, empty.repeat((uncond.shape[0], repeats, 1))], dim=1)
    elif repeats < 0:
        cond = torch.cat([cond, empty.repeat((cond.shape[0], -repeats, 1))], dim=1)
    return cond, uncond
