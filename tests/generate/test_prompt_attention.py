"""A1111's emphasis parser on a corpus: hand-written expectations plus generated prompts whose
expected runs are built from the structure the generator chose, not by the parser."""

from __future__ import annotations

import random

import pytest

from sdhub.errors import BadInputError
from sdhub.generate.prompt_attention import parse_prompt_attention

U = 1.1  # "(" multiplier
D = 1 / 1.1  # "[" multiplier

# (prompt, expected) — weights written as the products A1111 computes, innermost bracket first.
HAND_WRITTEN = [
    # A1111's docstring examples
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
      [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]),
    # the seed examples
    ("(worst quality, low quality:1.3), (bad-hands-5:0.8)",
     [["worst quality, low quality", 1.3], [", ", 1.0], ["bad-hands-5", 0.8]]),
    ("rem \\(re:zero\\)", [["rem (re:zero)", 1.0]]),
    ("", [["", 1.0]]),
    ("()", [["", 1.0]]),
    ("[]", [["", 1.0]]),
    ("(x)", [["x", 1.1]]),
    ("((x))", [["x", 1.1 * 1.1]]),
    ("(((x)))", [["x", 1.1 * 1.1 * 1.1]]),
    ("[x]", [["x", D]]),
    ("[[x]]", [["x", D * D]]),
    ("(x:1.5)", [["x", 1.5]]),
    ("((x:1.3))", [["x", 1.3 * 1.1]]),
    ("((x):1.3)", [["x", 1.1 * 1.3]]),
    ("[(x)]", [["x", 1.1 * D]]),
    ("([x])", [["x", D * 1.1]]),
    ("(x:0)", [["x", 0.0]]),
    ("(x:-1)", [["x", -1.0]]),
    ("(x:+2)", [["x", 2.0]]),
    ("(x:.5)", [["x", 0.5]]),
    ("(x:2.)", [["x", 2.0]]),
    ("(x: 1.2)", [["x", 1.2]]),
    ("(x:1.2 )", [["x", 1.2]]),
    ("(x :1.2)", [["x ", 1.2]]),
    ("(a:1.2) (b:1.2)", [["a", 1.2], [" ", 1.0], ["b", 1.2]]),
    ("(a:1.2)(b:1.2)", [["ab", 1.2]]),
    ("(a, b:1.2), c", [["a, b", 1.2], [", c", 1.0]]),
    # unbalanced: openers apply to the rest, closers with nothing open are text
    ("a (b", [["a ", 1.0], ["b", 1.1]]),
    ("a [b", [["a ", 1.0], ["b", D]]),
    ("((a) b", [["a", 1.1 * 1.1], [" b", 1.1]]),
    ("(a [b", [["a ", 1.1], ["b", D * 1.1]]),
    ("[a (b", [["a ", D], ["b", 1.1 * D]]),
    ("a) b", [["a) b", 1.0]]),
    ("a] b", [["a] b", 1.0]]),
    ("a) (b)", [["a) ", 1.0], ["b", 1.1]]),
    ("(a)) b", [["a", 1.1], [") b", 1.0]]),
    ("[a]] b", [["a", D], ["] b", 1.0]]),
    ("a:1.5) b", [["a:1.5) b", 1.0]]),
    ("(a]", [["a]", 1.1]]),
    ("[a)", [["a)", D]]),
    ("(a:1.2]", [["a:1.2]", 1.1]]),
    ("[a:1.2]", [["a:1.2", D]]),
    ("((a:1.5)", [["a", 1.5 * 1.1]]),
    # colons that are not weights
    ("a:b", [["a:b", 1.0]]),
    ("(a:b)", [["a:b", 1.1]]),
    ("(a: b)", [["a: b", 1.1]]),
    ("(a:1.2:1.3)", [["a:1.2", 1.3]]),
    ("time: 12:30", [["time: 12:30", 1.0]]),
    (":", [[":", 1.0]]),
    ("(:)", [[":", 1.1]]),
    # escapes
    ("\\(x\\)", [["(x)", 1.0]]),
    ("\\[x\\]", [["[x]", 1.0]]),
    ("a\\\\b", [["a\\b", 1.0]]),
    ("(\\(x\\))", [["(x)", 1.1]]),
    ("(a\\)b)", [["a)b", 1.1]]),
    ("\\", [["", 1.0]]),
    ("a\\b", [["ab", 1.0]]),
    ("(a\\", [["a", 1.1]]),
    ("\\((x)", [["(", 1.0], ["x", 1.1]]),
    # BREAK
    ("a BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("aBREAK b", [["aBREAK b", 1.0]]),
    ("a BREAKb", [["a BREAKb", 1.0]]),
    ("a break b", [["a break b", 1.0]]),
    ("BREAK", [["", 1.0], ["BREAK", -1], ["", 1.0]]),
    ("a BREAK BREAK b", [["a", 1.0], ["BREAK", -1], ["", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("(a) BREAK (b)", [["a", 1.1], ["", 1.0], ["BREAK", -1], ["", 1.0], ["b", 1.1]]),
    ("(a BREAK b)", [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]),
    ("[a BREAK b]", [["a", D], ["BREAK", -1 * D], ["b", D]]),
    ("a\nBREAK\nb", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("a,BREAK,b", [["a,", 1.0], ["BREAK", -1], [",b", 1.0]]),
    # whitespace and unicode are kept as they are
    ("  spaced  ", [["  spaced  ", 1.0]]),
    ("line one\nline two", [["line one\nline two", 1.0]]),
    ("(猫:1.2), é", [["猫", 1.2], [", é", 1.0]]),
    # runs merge only when the weights are exactly equal
    ("(a)[(b)]", [["a", 1.1], ["b", 1.1 * D]]),
    ("(a:1.1)(b)", [["ab", 1.1]]),
    ("((a))(b:1.21)", [["a", 1.2100000000000002], ["b", 1.21]]),
    ("[(a)]x", [["a", 1.1 * D], ["x", 1.0]]),
    ("(a:1)b", [["ab", 1.0]]),
    ("masterpiece, best quality, (1girl:1.2), [[blurry]]",
     [["masterpiece, best quality, ", 1.0], ["1girl", 1.2], [", ", 1.0], ["blurry", D * D]]),
    ("(masterpiece:1.2), (best quality:1.2), highres", [["masterpiece", 1.2], [", ", 1.0], ["best quality", 1.2],
                                                         [", highres", 1.0]]),
    ("<lora:detail:0.5> a", [["<lora", 1.0], [":", 1.0], ["detail", 1.0], [":", 1.0], ["0.5> a", 1.0]]),
]


def _merge(runs):
    merged = []
    for text, weight in runs:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return merged or [["", 1.0]]


def _canonical(runs):
    """Merging is part of A1111's output, so the hand table may list runs unmerged."""
    return _merge([list(run) for run in runs])


@pytest.mark.parametrize("prompt,expected", HAND_WRITTEN, ids=[repr(p)[:40] for p, _ in HAND_WRITTEN])
def test_hand_written_prompts_parse_as_a1111(prompt, expected):
    assert parse_prompt_attention(prompt) == _canonical(expected)


WORDS = ["cat", "a dog", "best quality", "1girl", "blue eyes, long hair", "é", "x", "sky.", "red-hair", "猫", "!", "o_o"]
WEIGHTS = ["1.5", "0.8", "1.3", "2", ".5", "1.", "0", "1.21", "0.9"]


class _Generated:
    """Random nested prompts; each piece knows its text and the multipliers around it."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def items(self, depth: int, count: int) -> tuple[str, list[tuple[str, float]]]:
        text, runs = "", []
        for _ in range(count):
            piece_text, piece_runs = self.item(depth)
            text += piece_text
            runs += piece_runs
        return text, runs

    def item(self, depth: int) -> tuple[str, list[tuple[str, float]]]:
        choice = self.random.random()
        if depth >= 3 or choice < 0.4:
            word = self.random.choice(WORDS)
            return word, [(word, 1.0)]
        if choice < 0.5:
            escaped = self.random.choice(["(", ")", "[", "]", "\\"])
            return "\\" + escaped, [(escaped, 1.0)]
        inner_text, inner_runs = self.items(depth + 1, self.random.randint(0, 3))
        if choice < 0.7:
            return f"({inner_text})", [(t, w * 1.1) for t, w in inner_runs]
        if choice < 0.85:
            return f"[{inner_text}]", [(t, w * (1 / 1.1)) for t, w in inner_runs]
        weight = self.random.choice(WEIGHTS)
        return f"({inner_text}:{weight})", [(t, w * float(weight)) for t, w in inner_runs]

    def prompt(self) -> tuple[str, list[list]]:
        text, runs = self.items(0, self.random.randint(1, 5))
        if self.random.random() < 0.3:  # a BREAK between two top-level parts
            tail_text, tail_runs = self.items(0, self.random.randint(1, 3))
            text += " BREAK " + tail_text
            runs += [("", 1.0), ("BREAK", -1), ("", 1.0)] + tail_runs
        if self.random.random() < 0.2:  # a stray closer at top level is literal text
            closer = self.random.choice([")", "]"])
            text += closer
            runs.append((closer, 1.0))
        if self.random.random() < 0.25:  # an opener never closed: the rest gets its multiplier last
            opener = self.random.choice(["(", "["])
            tail_text, tail_runs = self.items(1, self.random.randint(1, 3))
            factor = 1.1 if opener == "(" else 1 / 1.1
            text += opener + tail_text
            runs += [(t, w * factor) for t, w in tail_runs]
        return text, _merge([list(run) for run in runs])


GENERATED = [_Generated(seed).prompt() for seed in range(300)]


@pytest.mark.parametrize("prompt,expected", GENERATED, ids=[f"gen{i}" for i in range(len(GENERATED))])
def test_generated_prompts_parse_as_a1111(prompt, expected):
    assert parse_prompt_attention(prompt) == expected


def test_corpus_is_large_and_covers_the_seed_examples():
    prompts = [p for p, _ in HAND_WRITTEN] + [p for p, _ in GENERATED]
    assert len(set(prompts)) >= 200
    assert "(worst quality, low quality:1.3), (bad-hands-5:0.8)" in prompts
    assert "rem \\(re:zero\\)" in prompts
    assert any(p.count("(") > p.count(")") for p in prompts)  # unbalanced openers
    assert any("((" in p for p in prompts)  # nesting


def test_a_weight_that_is_not_a_number_is_a_clear_error():
    with pytest.raises(BadInputError, match=r"\(word:1.2\)"):
        parse_prompt_attention("(cat:1.2.3)")
