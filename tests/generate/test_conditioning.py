"""CLIP conditioning on the factory's tiny SD1 text encoder: every prompt feature changes the
conditioning exactly as A1111's math says. Expected tensors are built here from token ids and
the text model's own outputs, step by step, not by the encoder under test."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from sdhub.generate.conditioning import Embedding, PromptEncoder, conditioning_schedule, pad_conds
from sdhub.testing import factory


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory):
    folder = factory.diffusers_config_dir(tmp_path_factory.mktemp("sd1") / "config", arch="sd1")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    torch.manual_seed(1234)
    model = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder"))).eval()
    with torch.no_grad():  # trained layer norms are not the identity; a zero-bias one makes every mean 0
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(torch.randn_like(module.weight) * 0.1)
                module.bias.normal_(0.0, 0.3)
    return tokenizer, model


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def window(tokenizer, body: list[int], pad: int | None = None) -> list[int]:
    """BOS + body + EOS padding to 77 (or EOS then ``pad`` ids)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    filler = [eos] * (76 - len(body)) if pad is None else [eos] + [pad] * (75 - len(body))
    return [bos] + body + filler


@torch.no_grad()
def hidden(model, rows: list[list[int]], skip: int = 1) -> torch.Tensor:
    output = model(input_ids=torch.tensor(rows), output_hidden_states=True)
    if skip <= 1:
        return output.last_hidden_state
    return model.final_layer_norm(output.hidden_states[-skip])


def emphasised(z: torch.Tensor, weights: list[list[float]]) -> torch.Tensor:
    w = torch.tensor(weights, dtype=torch.float32)[..., None]
    scaled = z * w
    return scaled * (z.mean() / scaled.mean())


def exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_plain_prompt_is_one_77_token_window(clip):
    tokenizer, model = clip
    cond = PromptEncoder(tokenizer, model).encode("a cat")
    assert cond.shape == (1, 77, model.config.hidden_size)
    exact(cond, hidden(model, [window(tokenizer, ids(tokenizer, "a cat"))]))


def test_emphasis_multiplies_tokens_then_restores_the_mean(clip):
    tokenizer, model = clip
    encoder = PromptEncoder(tokenizer, model)
    runs = [("a ", 1.0), ("cat", 1.5), (" on a ", 1.0), ("mat", 1 / 1.1)]
    body, weights = [], []
    for text, weight in runs:
        body += ids(tokenizer, text)
        weights += [weight] * len(ids(tokenizer, text))
    z = hidden(model, [window(tokenizer, body)])
    expected = emphasised(z, [[1.0] + weights + [1.0] * (76 - len(body))])
    cond = encoder.encode("a (cat:1.5) on a [mat]")
    exact(cond, expected)
    assert not torch.allclose(cond, encoder.encode("a cat on a mat"))
    assert cond.mean().item() == pytest.approx(z.mean().item(), rel=1e-5)


def test_nested_brackets_compound(clip):
    tokenizer, model = clip
    body = ids(tokenizer, "cat")
    z = hidden(model, [window(tokenizer, body)])
    expected = emphasised(z, [[1.0] + [1.1 * 1.1] * len(body) + [1.0] * (76 - len(body))])
    exact(PromptEncoder(tokenizer, model).encode("((cat))"), expected)


def test_clip_skip_2_is_the_penultimate_layer_with_final_norm(clip):
    tokenizer, model = clip
    row = window(tokenizer, ids(tokenizer, "a cat"))
    skipped = PromptEncoder(tokenizer, model, clip_skip=2).encode("a cat")
    exact(skipped, hidden(model, [row], skip=2))
    assert not torch.allclose(skipped, PromptEncoder(tokenizer, model, clip_skip=1).encode("a cat"))


def test_long_prompt_is_cut_after_a_comma_within_20_tokens(clip):
    tokenizer, model = clip
    # byte-level tokenizer: 70 letters = 70 tokens, then ',' and a 10-token word
    first, second = "x" * 70, "y" * 10
    encoder = PromptEncoder(tokenizer, model)
    chunks, count = encoder.tokenize_line(f"{first}, {second}")
    body_one = ids(tokenizer, first) + ids(tokenizer, ",")
    body_two = ids(tokenizer, " " + second)
    assert [c.tokens for c in chunks] == [window(tokenizer, body_one), window(tokenizer, body_two)]
    assert count == 75 + len(body_two)
    cond = encoder.encode(f"{first}, {second}")
    expected = torch.cat([hidden(model, [window(tokenizer, body_one)]), hidden(model, [window(tokenizer, body_two)])], 1)
    exact(cond, expected)


def test_long_prompt_without_a_near_comma_is_cut_at_75(clip):
    tokenizer, model = clip
    text = "ab, " + "z" * 100  # the comma is 73 tokens before the cut: too far back
    tokens = ids(tokenizer, text)
    chunks, _ = PromptEncoder(tokenizer, model).tokenize_line(text)
    assert [c.tokens for c in chunks] == [window(tokenizer, tokens[:75]), window(tokenizer, tokens[75:])]


def test_break_starts_a_new_chunk(clip):
    tokenizer, model = clip
    cond = PromptEncoder(tokenizer, model).encode("a cat BREAK a dog")
    expected = torch.cat([hidden(model, [window(tokenizer, ids(tokenizer, "a cat"))]),
                          hidden(model, [window(tokenizer, ids(tokenizer, "a dog"))])], 1)
    exact(cond, expected)


def _with_embedding_rows(tokenizer, model, vectors: torch.Tensor):
    """An independent reference: the same text model with the vectors as new vocabulary rows."""
    reference = copy.deepcopy(model)
    old = reference.get_input_embeddings().weight.data
    table = torch.nn.Embedding(old.shape[0] + vectors.shape[0], old.shape[1])
    table.weight.data = torch.cat([old, vectors])
    reference.set_input_embeddings(table)
    return reference, list(range(old.shape[0], old.shape[0] + vectors.shape[0]))


def test_embedding_in_the_negative_prompt_is_spliced_in_with_its_weight(clip):
    tokenizer, model = clip
    vectors = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(5))
    encoder = PromptEncoder(tokenizer, model, [Embedding("bad-hands-5", vectors, sha256="ab" * 32)])
    negative = "(worst quality:1.3), (bad-hands-5:0.8)"
    batch = encoder.encode_batch([negative])
    assert list(batch.used_embeddings) == ["bad-hands-5"]

    reference, new_ids = _with_embedding_rows(tokenizer, model, vectors)
    worst, comma = ids(tokenizer, "worst quality"), ids(tokenizer, ", ")
    body = worst + comma + new_ids
    weights = [1.3] * len(worst) + [1.0] * len(comma) + [0.8, 0.8]
    z = hidden(reference, [window(tokenizer, body)])
    exact(batch.cond, emphasised(z, [[1.0] + weights + [1.0] * (76 - len(body))]))
    without = PromptEncoder(tokenizer, model).encode(negative)
    assert without.shape == batch.cond.shape and not torch.allclose(without, batch.cond)


def test_embedding_that_does_not_fit_the_chunk_moves_to_the_next(clip):
    tokenizer, model = clip
    vectors = torch.randn(3, model.config.hidden_size, generator=torch.Generator().manual_seed(6))
    encoder = PromptEncoder(tokenizer, model, [Embedding("emb", vectors)])
    chunks, _ = encoder.tokenize_line("q" * 73 + " emb")
    assert len(chunks) == 2 and chunks[1].fixes and chunks[1].fixes[0][0] == 0


def test_embeddings_of_another_width_are_skipped(clip):
    tokenizer, model = clip
    encoder = PromptEncoder(tokenizer, model, [Embedding("wide", torch.zeros(1, 768))])
    assert encoder.embeddings == {}
    exact(encoder.encode("wide"), hidden(model, [window(tokenizer, ids(tokenizer, "wide"))]))


def test_sd2_pads_with_zero_after_the_end_token(clip):
    tokenizer, model = clip
    cond = PromptEncoder.sd2(tokenizer, model).encode("a cat")
    exact(cond, hidden(model, [window(tokenizer, ids(tokenizer, "a cat"), pad=0)]))


def test_scheduled_texts_are_encoded_as_one_batch(clip):
    tokenizer, model = clip
    encoder = PromptEncoder(tokenizer, model)
    schedule = conditioning_schedule(encoder, "a (cat:1.3) [dog:3]", steps=10)
    assert [entry.until_step for entry in schedule] == [3, 10]
    rows, weights = [], []
    for tail in ("", "dog"):
        a, cat, rest = ids(tokenizer, "a "), ids(tokenizer, "cat"), ids(tokenizer, " " + tail)
        body = a + cat + rest
        rows.append(window(tokenizer, body))
        weights.append([1.0] + [1.0] * len(a) + [1.3] * len(cat) + [1.0] * len(rest) + [1.0] * (76 - len(body)))
    expected = emphasised(hidden(model, rows), weights)  # one mean over both texts, as A1111
    exact(torch.cat([entry.cond for entry in schedule]), expected)


def test_shorter_texts_in_a_batch_get_empty_chunks(clip):
    tokenizer, model = clip
    batch = PromptEncoder(tokenizer, model).encode_batch(["a", "b " * 80])
    assert batch.cond.shape[1] == 154
    empty = [tokenizer.bos_token_id] + [tokenizer.eos_token_id] * 76
    exact(batch.cond[0:1, 77:], hidden(model, [empty, window(tokenizer, ids(tokenizer, "b " * 80)[75:])])[0:1])


def test_pad_conds_appends_empty_prompt_chunks(clip):
    tokenizer, model = clip
    encoder = PromptEncoder(tokenizer, model)
    cond, uncond, empty = encoder.encode("w " * 80), encoder.encode("blurry"), encoder.encode("")
    padded_cond, padded_uncond = pad_conds(cond, uncond, empty)
    assert padded_cond is cond and padded_uncond.shape == cond.shape
    exact(padded_uncond, torch.cat([uncond, empty], 1))


def test_clip_skip_deeper_than_the_model_is_a_clear_error(clip):
    tokenizer, model = clip
    from sdhub.errors import BadInputError

    with pytest.raises(BadInputError, match="clip skip 9"):
        PromptEncoder(tokenizer, model, clip_skip=9).encode("a")


def test_embeddings_load_from_factory_files(tmp_path: Path, clip):
    from sdhub.generate.embeddings import load_embedding, load_embeddings
    import hashlib

    tokenizer, model = clip
    path = factory.embedding(tmp_path / "emb" / "bad-hands-5.safetensors", base="sd1", fmt="safetensors", vectors=2)
    embedding = load_embedding(path)
    assert embedding.name == "bad-hands-5" and embedding.vector_count == 2
    assert embedding.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded, skipped = load_embeddings(tmp_path / "emb")
    assert [e.name for e in loaded] == ["bad-hands-5"] and skipped == []
    encoder = PromptEncoder(tokenizer, model, loaded)
    assert "bad-hands-5" in encoder.encode_batch(["bad-hands-5"]).used_embeddings


def test_pt_embeddings_load_through_the_safe_reader(tmp_path: Path):
    from sdhub.generate.embeddings import load_embedding

    sd1 = load_embedding(factory.embedding(tmp_path / "neg.pt", base="sd1", fmt="pt", vectors=3))
    assert sd1.name == "neg" and sd1.vector_count == 3 and isinstance(sd1.vectors, torch.Tensor)
    xl = load_embedding(factory.embedding(tmp_path / "xlneg.safetensors", base="sdxl", fmt="safetensors"))
    assert set(xl.vectors) == {"clip_l", "clip_g"} and xl.vector_count == 2


def test_and_sub_prompts_carry_their_weights(clip):
    from sdhub.generate.conditioning import multicond_schedule

    tokenizer, model = clip
    encoder = PromptEncoder(tokenizer, model)
    parts = multicond_schedule(encoder, "a cat AND a dog :0.5 AND a dog", steps=10)
    assert [weight for weight, _ in parts] == [1.0, 0.5, 1.0]
    assert parts[1][1] is parts[2][1]  # identical sub-prompts are encoded once
    exact(parts[1][1][0].cond, hidden(model, [window(tokenizer, ids(tokenizer, " a dog"))]))


@pytest.fixture(scope="module")
def sdxl_clips(tmp_path_factory: pytest.TempPathFactory):
    from transformers import CLIPTextModelWithProjection

    folder = factory.diffusers_config_dir(tmp_path_factory.mktemp("sdxl") / "config", arch="sdxl")
    tokenizers = [CLIPTokenizer.from_pretrained(str(folder / name), local_files_only=True)
                  for name in ("tokenizer", "tokenizer_2")]
    torch.manual_seed(99)
    clip_l = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder"))).eval()
    clip_g = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2"))).eval()
    return tokenizers, clip_l, clip_g


@torch.no_grad()
def test_sdxl_uses_penultimate_layers_pad_zero_and_pooled_from_the_first_chunk(sdxl_clips):
    from sdhub.generate.conditioning import encode_sdxl

    (tok_l, tok_g), clip_l, clip_g = sdxl_clips
    vectors = {"clip_l": torch.randn(1, 32, generator=torch.Generator().manual_seed(1)),
               "clip_g": torch.randn(1, 64, generator=torch.Generator().manual_seed(2))}
    pair = PromptEncoder.sdxl_pair(tok_l, clip_l, tok_g, clip_g, [Embedding("neg", vectors)])
    text = "a (cat:1.2) neg " + "w " * 80
    batch = encode_sdxl(pair, [text])
    assert batch.cond.shape == (1, 154, 96) and batch.pooled.shape == (1, clip_g.config.projection_dim)
    assert list(batch.used_embeddings) == ["neg"]

    def expected(tokenizer, model, key, pad):
        reference, (new_id,) = _with_embedding_rows(tokenizer, model, vectors[key])
        a, cat, rest = ids(tokenizer, "a "), ids(tokenizer, "cat"), ids(tokenizer, " " + "w " * 80)
        body = a + cat + ids(tokenizer, " ") + [new_id] + rest
        weights = [1.0] * len(a) + [1.2] * len(cat) + [1.0] * (len(body) - len(a) - len(cat))
        rows = [window(tokenizer, body[:75], pad), window(tokenizer, body[75:], pad)]
        out = reference(input_ids=torch.tensor(rows), output_hidden_states=True)
        z = out.hidden_states[-2]  # SDXL: penultimate layer, no final layer norm
        w = [[1.0] + weights[:75] + [1.0], [1.0] + weights[75:] + [1.0] * (76 - len(weights[75:]))]
        chunks = [emphasised(z[i:i + 1], [w[i]]) for i in range(2)]
        return torch.cat(chunks, 1), getattr(out, "text_embeds", None)

    cond_l, _ = expected(tok_l, clip_l, "clip_l", None)
    cond_g, pooled = expected(tok_g, clip_g, "clip_g", 0)
    exact(batch.cond, torch.cat([cond_l, cond_g], 2))
    exact(batch.pooled, pooled[0:1])


def test_emphasis_modes_other_than_original(clip):
    tokenizer, model = clip
    plain = hidden(model, [window(tokenizer, ids(tokenizer, "cat"))])
    exact(PromptEncoder(tokenizer, model, emphasis="Ignore").encode("(cat:1.5)"), plain)
    literal = PromptEncoder(tokenizer, model, emphasis="None").encode("(cat:1.5)")
    exact(literal, hidden(model, [window(tokenizer, ids(tokenizer, "(cat:1.5)"))]))
    n = len(ids(tokenizer, "cat"))
    weights = torch.tensor([1.0] + [1.5] * n + [1.0] * (76 - n))[None, :, None]
    exact(PromptEncoder(tokenizer, model, emphasis="No norm").encode("(cat:1.5)"), plain * weights)


def test_infotext_params_name_the_embeddings_used(clip):
    from sdhub.generate.conditioning import infotext_params

    tokenizer, model = clip
    emb = Embedding("bad,hands:5", torch.zeros(1, model.config.hidden_size), sha256="c74b4e810b03" + "0" * 52)
    other = Embedding("unused", torch.zeros(1, model.config.hidden_size), sha256="f" * 64)
    encoder = PromptEncoder(tokenizer, model, [emb, other])
    negative = encoder.encode_batch(["lowres, bad,hands:5"])
    assert infotext_params(negative.used_embeddings, ["lowres"]) == {"TI hashes": "badhands5: c74b4e810b03"}
    assert infotext_params({}, ["(a)"], emphasis="No norm") == {"Emphasis": "No norm"}
    assert infotext_params({}, ["a"], emphasis="No norm") == {}
