"""Prompt editing, alternation, AND and extra-network tags as A1111 schedules them."""

from __future__ import annotations

import random

import pytest

from sdhub.errors import BadInputError
from sdhub.generate.extra_networks import extract_extra_networks
from sdhub.generate.prompt_schedule import prompt_schedule, split_and

ALT = [[1, "a"], [2, "(b:1.1)"], [3, "a"], [4, "(b:1.1)"], [5, "a"], [6, "(b:1.1)"], [7, "a"], [8, "(b:1.1)"],
       [9, "a"], [10, "(b:1.1)"]]

# A1111's documented schedules for 10 steps, plus edge cases of the grammar.
TEN_STEPS = [
    ("test", [[10, "test"]]),
    ("a [b:3]", [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", [[3, "a "], [10, "a b"]]),
    ("a [b:3 ]", [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", [[10, "a [unbalanced"]]),
    ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", ALT),
    ("[fe|]male", [[s, "female" if s % 2 else "male"] for s in range(1, 11)]),
    ("[fe|||]male", [[s, "female" if s % 4 == 1 else "male"] for s in range(1, 11)]),
    # a '|' outside an alternation does not fit the grammar: the prompt is used unchanged
    ("a [{b|d{:.5] c", [[10, "a [{b|d{:.5] c"]]),
    ("a | b [c:2]", [[10, "a | b [c:2]"]]),
    ("[a:b:c:3]", [[10, "[a:b:c:3]"]]),
    ("[a:b:x]", [[10, "[a:b:x]"]]),
    ("trailing \\", [[10, "trailing \\"]]),
    # numbers: fractions (with a dot) of the steps, integers are steps; clipped to the steps
    ("[a:b:0.25]", [[2, "a"], [10, "b"]]),
    ("[a:b:0.29]", [[2, "a"], [10, "b"]]),
    ("[a:b:1.0]", [[10, "a"]]),
    ("[a:b:1]", [[1, "a"], [10, "b"]]),
    ("[a:b:0]", [[10, "b"]]),
    ("[a:b:-3]", [[10, "b"]]),
    ("[a:b:25]", [[10, "a"]]),
    ("[a:b:5.]", [[10, "a"]]),
    ("[a:b:1e0]", [[1, "a"], [10, "b"]]),
    ("[a:b:+4]", [[4, "a"], [10, "b"]]),
    ("[a::4]", [[4, "a"], [10, ""]]),
    ("[::4]", [[4, ""], [10, ""]]),
    ("[:b:4]", [[4, ""], [10, "b"]]),
    # emphasis and escapes pass through as text for the attention parser
    ("(a:1.2) [b:c:5]", [[5, "(a:1.2) b"], [10, "(a:1.2) c"]]),
    ("\\[a:3\\]", [[10, "\\[a:3\\]"]]),
    ("[\\(a\\):3]", [[3, ""], [10, "\\(a\\)"]]),
    ("[a [b:2]:c:5]", [[2, "a "], [5, "a b"], [10, "c"]]),
    ("[a|b] [c:4]", [[s, ("a" if s % 2 else "b") + " " + ("" if s <= 4 else "c")] for s in range(1, 11)]),
    ("[[a|b]:5]", [[s, "" if s <= 5 else ("a" if s % 2 else "b")] for s in range(1, 11)]),
]


@pytest.mark.parametrize("prompt,expected", TEN_STEPS, ids=[repr(p) for p, _ in TEN_STEPS])
def test_schedules_for_ten_steps_match_a1111(prompt, expected):
    assert prompt_schedule(prompt, 10) == expected


def test_the_long_documented_example_for_100_steps():
    prompt = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
              "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]")
    base = "fantasy landscape with a "
    assert prompt_schedule(prompt, 100) == [
        [25, base + "mountain and an oak in foreground shoddy"],
        [50, base + "lake and an oak in foreground in background shoddy"],
        [60, base + "lake and an oak in foreground in background masterful"],
        [75, base + "lake and an oak in background masterful"],
        [100, base + "lake and a christmas tree in background masterful"],
    ]


def test_hires_pass_continues_the_step_numbering():
    assert prompt_schedule("a [b:.5] c", 10, hires_steps=10) == [[10, "a b c"]]
    assert prompt_schedule("a [b:1.5] c", 10, hires_steps=10) == [[5, "a  c"], [10, "a b c"]]
    assert prompt_schedule("a [b:15] c", 10, hires_steps=10) == [[5, "a  c"], [10, "a b c"]]
    assert prompt_schedule("a [b:3] c", 10, hires_steps=10) == [[10, "a b c"]]


def test_old_timelines_treat_values_below_one_as_fractions():
    assert prompt_schedule("[a:b:1.0]", 10, old_scheduling=True) == [[1, "a"], [10, "b"]]
    assert prompt_schedule("[a:b:0.5]", 10, old_scheduling=True) == [[5, "a"], [10, "b"]]
    # old timelines ignore the hires offset: the base steps are used
    assert prompt_schedule("[a:b:3]", 10, hires_steps=20, old_scheduling=True) == [[3, "a"], [10, "b"]]


def _generated_case(seed: int, steps: int):
    """A flat prompt of words, edits and alternations; the expected texts follow from the parts."""
    rng = random.Random(seed)
    parts = []  # each part: function step -> text, plus the boundaries it adds
    text = ""
    boundaries = {steps}
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.35:
            word = rng.choice(["cat", "a dog", "(red:1.2)", "[blue]", " ", "x, y"])
            text += word
            parts.append(lambda s, w=word: w)
        elif kind < 0.8:
            before, after = rng.choice([("cat", "dog"), ("", "hat"), ("wet", ""), ("(a:1.3)", "[b]")])
            if rng.random() < 0.5:
                number = str(rng.randint(-1, steps + 3))
                when = min(steps, int(float(number)))
            else:
                number = rng.choice(["0.1", "0.25", ".5", "0.33", "0.75", "1.0", "0.05"])
                when = min(steps, int(float(number) * steps))
            if before and after:
                text += f"[{before}:{after}:{number}]"
            elif after:
                text += f"[{after}:{number}]"
            else:
                text += f"[{before}::{number}]"
            if when >= 1:
                boundaries.add(when)
            parts.append(lambda s, b=before, a=after, w=when: b if s <= w else a)
        else:
            options = rng.choice([["a", "b"], ["x", "y", "z"], ["fe", ""]])
            text += "[" + "|".join(options) + "]"
            boundaries.update(range(1, steps + 1))
            parts.append(lambda s, o=options: o[(s - 1) % len(o)])
    expected = [[s, "".join(part(s) for part in parts)] for s in sorted(boundaries)]
    return text, steps, expected


GENERATED = [_generated_case(seed, steps) for seed in range(60) for steps in (7, 20)]


@pytest.mark.parametrize("prompt,steps,expected", GENERATED, ids=[f"gen{i}" for i in range(len(GENERATED))])
def test_generated_schedules(prompt, steps, expected):
    assert prompt_schedule(prompt, steps) == expected


@pytest.mark.parametrize("prompt,expected", [
    ("a cat", [("a cat", 1.0)]),
    # trailing whitespace goes with the optional weight; leading whitespace stays
    ("a AND b", [("a", 1.0), (" b", 1.0)]),
    ("a AND b :0.5", [("a", 1.0), (" b", 0.5)]),
    ("a:1.2 AND b: -0.3", [("a", 1.2), (" b", -0.3)]),
    ("a :2. AND b:.5", [("a", 2.0), (" b", 0.5)]),
    ("aANDb AND c", [("aANDb", 1.0), (" c", 1.0)]),
    ("a and b", [("a and b", 1.0)]),
    ("(x:1.2) AND y", [("(x:1.2)", 1.0), (" y", 1.0)]),
    ("line\none AND two:3", [("line\none", 1.0), (" two", 3.0)]),
])
def test_and_splits_composable_prompts(prompt, expected):
    assert split_and(prompt) == expected


def test_extra_network_tags_are_removed_and_parsed():
    text, tags = extract_extra_networks("a cat <lora:add_detail:0.5>, <lyco:style:0.3:0.7> <lora:plain> <hypernet:h:1>")
    assert text == "a cat ,   "
    assert [(t.network, t.name, t.te_multiplier, t.unet_multiplier) for t in tags] == [
        ("lora", "add_detail", 0.5, 0.5), ("lyco", "style", 0.3, 0.7), ("lora", "plain", 1.0, 1.0),
        ("hypernet", "h", 1.0, 1.0)]
    _, named = extract_extra_networks("<lora:z:te=0.2:unet=0.9:dyn=8>")
    assert (named[0].te_multiplier, named[0].unet_multiplier, named[0].dyn_dim) == (0.2, 0.9, 8)
    assert extract_extra_networks("no tags <here> <:x>") == ("no tags <here> <:x>", [])


def test_a_lora_tag_with_a_bad_multiplier_is_a_clear_error():
    with pytest.raises(BadInputError, match="not a number"):
        extract_extra_networks("<lora:x:strong>")
