"""CLIP's real tokenizer with no Hugging Face cache, built from the vocabulary open_clip ships, and A1111's
chunking of real-style prompts with it: 75-token chunks, comma backtracking, BREAK, emphasis runs and
textual-inversion token counts, against a reference that states A1111's rule from the outside."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import CLIPTokenizer

from sdhub.errors import MissingDependencyError
from sdhub.generate import clip_vocabulary, model_configs
from sdhub.generate.conditioning import CHUNK_LENGTH, COMMA_BACKTRACK, Embedding, PromptEncoder
from sdhub.generate.prompt_attention import parse_prompt_attention


@pytest.fixture(scope="module")
def tokenizer() -> CLIPTokenizer:
    folder = clip_vocabulary.packaged_tokenizer_dir()
    assert folder is not None, "open_clip_torch is not installed (scripts/setup-env installs it)"
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=77)


def test_the_vocabulary_numbers_tokens_as_openai_clip_does(tokenizer: CLIPTokenizer) -> None:
    vocab = tokenizer.get_vocab()
    assert len(vocab) == clip_vocabulary.VOCAB_SIZE == 49408
    # ids as the Hub's openai/clip-vit-large-patch14 vocab.json gives them
    assert (vocab["!"], vocab["a</w>"], vocab[",</w>"], vocab["ñ</w>"]) == (0, 320, 267, 429)
    assert (vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (49406, 49407)
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer("masterpiece, best quality, 1girl", add_special_tokens=False)["input_ids"] == \
        [12066, 267, 949, 3027, 267, 272, 1611]


def test_without_a_hub_cache_generation_gets_the_real_tokenizer(tmp_path: Path) -> None:
    empty_cache = tmp_path / "empty-cache"
    assert model_configs.resolve_tokenizer_dir("tokenizer", cache_dir=empty_cache) == \
        clip_vocabulary.packaged_tokenizer_dir()
    config = model_configs.PipelineConfig("sdxl", model_configs.shipped_config("sdxl"))
    tokenizers = model_configs.load_tokenizers(config, cache_dir=empty_cache)
    padded = tokenizers["tokenizer_2"]("a cat", padding="max_length", max_length=77)["input_ids"]
    assert padded[:4] == [49406, 320, 2368, 49407] and set(padded[4:]) == {0}  # SDXL's bigG pads with "!"
    assert tokenizers["tokenizer"]("a cat")["input_ids"] == [49406, 320, 2368, 49407]


def test_with_neither_the_cache_nor_the_package_the_error_says_how_to_get_either(tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError) as error:
        model_configs.resolve_tokenizer_dir("tokenizer", cache_dir=tmp_path / "empty", packaged=False)
    message = str(error.value)
    assert "pip install --no-deps open_clip_torch" in message and "sdhub doctor --fetch-tokenizers" in message


def test_a_file_that_is_not_the_vocabulary_is_refused(tmp_path: Path) -> None:
    import gzip

    bad = tmp_path / "vocab.txt.gz"
    bad.write_bytes(gzip.compress(b"#version\nnot merges at all\n"))
    with pytest.raises(ValueError, match="not CLIP's BPE vocabulary"):
        clip_vocabulary.read_merges(bad)


# Prompts in the forms users write them: tag lists with weights, long comma lists that pass 75 tokens,
# BREAK, nested and escaped brackets, embeddings by name, unicode and run-together punctuation.
PROMPTS = [
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile, (blue eyes:1.2), school uniform",
    "(masterpiece:1.2), (best quality:1.2), ultra-detailed, illustration, 1girl, silver hair, red eyes, "
    "hair between eyes, sidelocks, medium breasts, black dress, frills, lace trim, detached sleeves, "
    "holding umbrella, rain, night, city lights, neon, reflection, puddle, depth of field, bokeh, "
    "cinematic lighting, from side, looking back, wind, floating hair, [[smile]], ((detailed eyes))",
    "photo of a woman standing in a field of sunflowers at golden hour, 85mm lens, f/1.8, shallow depth "
    "of field, soft rim light, film grain, kodak portra 400, candid, natural skin texture, freckles, "
    "windswept hair, linen dress, warm tones, high dynamic range, award winning photograph",
    "a castle on a hill BREAK dramatic sky, storm clouds, lightning BREAK oil painting, impasto",
    "BREAK leading break then text",
    "two BREAK BREAK empty chunk between",
    "easynegative, (worst quality, low quality:1.4), bad-hands-5, watermark, text, signature, "
    "jpeg artifacts, blurry, lowres, bad anatomy, extra fingers, fewer digits, cropped, username",
    "\\(cosplay\\) character name \\(series\\), 1boy, male focus, armor, cape, sword, (epic:1.5) pose",
    "café au lait, naïve art, Ñandú, 日本の風景, 🐱 cat emoji, straße",
    "a" + ", a" * 90,
    "word " * 80 + ", tail after the comma",
    ",".join(["tag"] * 200),
    "[a dog:a cat:0.5] running, (fast:1.3), (((very fast))), [slow], (stop:0.5)",
    "extremely long single run without commas " * 12,
    "",
    "  leading and trailing spaces, tabs\tand\nnewlines  ",
    "(score_9, score_8_up, score_7_up:1.1), source_anime, rating_safe, 1girl, aqua hair, twintails, "
    "idol outfit, stage, spotlight, confetti, microphone, dynamic angle, motion blur, sparkle",
]

EMBEDDINGS = {"easynegative": 8, "bad-hands-5": 6}


def _reference_chunks(encoder: PromptEncoder, line: str) -> tuple[list[list[int]], int]:
    """A1111's chunking stated as slicing: each full 75 ends after the last comma among its final 20
    tokens, unless the next token is a comma itself; BREAK always closes, even an empty chunk."""
    comma = encoder.comma_token
    segments: list[list[tuple[int, float]]] = [[]]
    for text, weight in parse_prompt_attention(line):
        if text == "BREAK" and weight == -1:
            segments.append([])
            continue
        ids = encoder.tokenizer(text, add_special_tokens=False)["input_ids"]
        segments[-1] += [(token, weight) for token in ids]
    chunks: list[list[tuple[int, float]]] = []
    for index, tokens in enumerate(segments):
        rest = tokens
        while len(rest) > CHUNK_LENGTH:
            head = rest[:CHUNK_LENGTH]
            commas = [i for i, (token, _) in enumerate(head) if token == comma and i >= CHUNK_LENGTH - COMMA_BACKTRACK]
            cut = commas[-1] + 1 if commas and rest[CHUNK_LENGTH][0] != comma else CHUNK_LENGTH
            chunks.append(rest[:cut])
            rest = rest[cut:]
        if rest or index < len(segments) - 1 or not chunks:
            chunks.append(rest)
    count = CHUNK_LENGTH * (len(chunks) - 1) + len(chunks[-1])
    padded = [[encoder.id_start] + [t for t, _ in c] + [encoder.id_end] * (CHUNK_LENGTH + 1 - len(c)) for c in chunks]
    return padded, count


@pytest.mark.parametrize("line", PROMPTS, ids=range(len(PROMPTS)))
def test_chunking_with_the_real_vocabulary_follows_a1111(tokenizer: CLIPTokenizer, line: str) -> None:
    encoder = PromptEncoder(tokenizer, None)
    chunks, count = encoder.tokenize_line(line)
    expected, expected_count = _reference_chunks(encoder, line)
    assert [chunk.tokens for chunk in chunks] == expected
    assert count == expected_count
    assert all(len(chunk.tokens) == len(chunk.multipliers) == CHUNK_LENGTH + 2 for chunk in chunks)


def test_long_tag_lists_are_cut_after_a_comma(tokenizer: CLIPTokenizer) -> None:
    encoder = PromptEncoder(tokenizer, None)
    chunks, count = encoder.tokenize_line("tag " * 70 + ", blue sky with white clouds over green hills")
    body = [token for token in chunks[0].tokens[1:-1] if token != encoder.id_end]
    assert len(chunks) == 2 and len(body) == 71 and body[-1] == encoder.comma_token
    assert tokenizer.decode(chunks[1].tokens, skip_special_tokens=True) == "blue sky with white clouds over green hills"
    assert count == CHUNK_LENGTH + 8


def test_emphasis_weights_follow_their_tokens(tokenizer: CLIPTokenizer) -> None:
    encoder = PromptEncoder(tokenizer, None)
    (chunk,), _ = encoder.tokenize_line("a (red:1.5) [blue] ((green)) cat")
    weights = dict(zip(tokenizer.convert_ids_to_tokens(chunk.tokens[1:8]), chunk.multipliers[1:8]))
    assert weights == {"a</w>": 1.0, "red</w>": 1.5, "blue</w>": pytest.approx(1 / 1.1),
                       "green</w>": pytest.approx(1.21), "cat</w>": 1.0, "<|endoftext|>": 1.0}


def test_embeddings_count_their_vectors_not_their_name(tokenizer: CLIPTokenizer) -> None:
    embeddings = [Embedding(name, torch.zeros(count, 768)) for name, count in EMBEDDINGS.items()]
    encoder = PromptEncoder(tokenizer, None, embeddings)
    line = PROMPTS[6]
    chunks, count = encoder.tokenize_line(line)
    plain = PromptEncoder(tokenizer, None).tokenize_line(line)[1]
    name_tokens = {name: len(tokenizer(name, add_special_tokens=False)["input_ids"]) for name in EMBEDDINGS}
    assert name_tokens == {"easynegative": 2, "bad-hands-5": 5}  # easy|negative, bad|-|hands|-|5
    assert count == plain - sum(name_tokens.values()) + sum(EMBEDDINGS.values())
    fixes = [(offset, embedding.name) for chunk in chunks for offset, embedding in chunk.fixes]
    assert [name for _, name in fixes] == ["easynegative", "bad-hands-5"] and fixes[0][0] == 0
    assert chunks[0].tokens[1:9] == [0] * 8  # the placeholder ids A1111 writes where the vectors go
