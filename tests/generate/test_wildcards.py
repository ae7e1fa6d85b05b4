"""Dynamic Prompts in generate: __wildcards__ and {variants} drawn per image seed, the template in the infotext."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sdhub.catalog import Catalog
from sdhub.errors import BadInputError
from sdhub.generate.generate import generate, rerun_png
from sdhub.generate.infotext import Infotext, read_png_parameters
from sdhub.generate.pipeline import GenerationParams
from sdhub.generate.wildcards import expand_prompts, has_dynamic_syntax
from sdhub.testing.images import pixels

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


def params(**overrides) -> GenerationParams:
    base = dict(prompt="a __color__ {cat|dog} on a chair", negative_prompt="blurry", steps=2, sampler="Euler",
                seed=1234, width=64, height=64)
    return GenerationParams(**{**base, **overrides})


@pytest.fixture
def wildcard_home(tmp_home):
    folder = tmp_home.folder("wildcards")
    (folder / "things").mkdir(parents=True)
    (folder / "color.txt").write_text("# colours\n" + "\n".join(COLORS) + "\n\n")
    (folder / "colors_warm.txt").write_text("amber\ncrimson\n")
    (folder / "things" / "animal.txt").write_text("owl\nfox\n")
    return tmp_home


def draw(prompt: str, seed: int, folder: Path, batch: int = 1, negative: str = "") -> list[str]:
    return expand_prompts(prompt, negative, seed, batch, wildcard_dir=folder).prompts


def test_the_same_seed_draws_the_same_prompt_and_other_seeds_vary(wildcard_home):
    folder = wildcard_home.folder("wildcards")
    template = "a __color__ {cat|dog}, __things/animal__, __colors*__, {2$$a|b|c}"
    first = draw(template, 7, folder)
    assert first == draw(template, 7, folder)
    drawn = {draw(template, seed, folder)[0] for seed in range(40)}
    assert len(drawn) > 5
    for prompt in drawn:
        words = prompt.split(", ")
        assert words[0].split()[1] in COLORS and words[0].split()[2] in ("cat", "dog")
        assert words[1] in ("owl", "fox")
        assert words[2] in ("amber", "crimson", *COLORS)  # colors* globs color and colors_warm
        assert sorted(words[3].split(",")) in (["a", "b"], ["a", "c"], ["b", "c"])  # two of three, joined by ","


def test_a_batch_draws_image_i_with_seed_plus_i_as_the_extension_does(wildcard_home):
    folder = wildcard_home.folder("wildcards")
    batch = draw("__color__ {cat|dog}", 100, folder, batch=4)
    assert batch == [draw("__color__ {cat|dog}", 100 + index, folder)[0] for index in range(4)]
    # with a variation seed the extension freezes the prompt: one draw for every image
    frozen = expand_prompts("__color__", "", 100, 4, wildcard_dir=folder, subseed_strength=0.3).prompts
    assert frozen == [draw("__color__", 100, folder)[0]] * 4


def test_python_random_seeded_by_the_image_seed_picks_the_line(wildcard_home):
    # dynamicprompts draws a wildcard with Random(seed).choice over its sorted, deduplicated values
    import random

    folder = wildcard_home.folder("wildcards")
    for seed in (1, 2, 3, 99):
        assert draw("__color__", seed, folder) == [random.Random(seed).choice(sorted(COLORS))]


@pytest.mark.parametrize("prompt", [
    "a (red:1.2) cat, ((double)), [[less]], [a|b], [a:b:10], [a::5], [from:to:0.5]",
    "<lora:foo:0.8>, <hypernet:h:1>, a BREAK b, c AND d:0.5, \\(escaped\\), embedding_name",
    "line one\nline two,  two  spaces ", "weird__text, snake_case__tag", "$dollars and # hash ~ tilde", "",
    "masterpiece, 1girl, solo, looking at viewer, (worst quality, low quality:1.3), (bad-hands-5:0.8)",
])
def test_a_prompt_without_dynamic_syntax_is_left_exactly_as_typed(wildcard_home, prompt):
    assert not has_dynamic_syntax(prompt)
    expanded = expand_prompts(prompt, prompt, 5, 2, wildcard_dir=wildcard_home.folder("wildcards"))
    assert expanded.prompts == [prompt, prompt] and expanded.negative_prompts == [prompt, prompt]
    assert expanded.notes == []


def test_a_missing_wildcard_stays_as_text_with_a_note(wildcard_home):
    expanded = expand_prompts("a __nothing_here__", "", 5, 1, wildcard_dir=wildcard_home.folder("wildcards"))
    assert expanded.prompts == ["a __nothing_here__"]
    assert any("nothing_here" in note for note in expanded.notes)


def test_broken_variant_syntax_is_one_line(wildcard_home):
    with pytest.raises(BadInputError) as caught:
        expand_prompts("a {cat|dog", "", 5, 1, wildcard_dir=wildcard_home.folder("wildcards"))
    assert "\n" not in str(caught.value) and "does not parse" in str(caught.value)


def test_generation_is_deterministic_per_seed_and_the_infotext_has_prompt_and_template(wildcard_home, tiny_models):
    model = str(tiny_models["sd1"])
    template = params().prompt
    first = generate(wildcard_home, model, params())
    again = generate(wildcard_home, model, params())
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    info = Infotext.from_text(read_png_parameters(first.images[0]))
    expected_prompt = draw(template, 1234, wildcard_home.folder("wildcards"))[0]
    assert info.prompt == expected_prompt == Infotext.from_text(again.infotexts[0]).prompt
    assert "__" not in info.prompt and "{" not in info.prompt
    assert info.params["Template"] == template
    # once the extension runs it records both templates, a negative prompt with nothing to expand too
    assert info.params["Negative Template"] == "blurry" and info.negative_prompt == "blurry"
    # the template comes first among the fields A1111 adds after its fixed ones
    keys = list(info.params)
    assert keys.index("Template") == keys.index("RNG") + 1

    prompts = {Infotext.from_text(generate(wildcard_home, model, params(seed=seed)).infotexts[0]).prompt
               for seed in range(1235, 1243)}
    assert len(prompts) > 1


def test_a_batch_of_different_prompts_runs_image_by_image_and_reruns_from_the_png(wildcard_home, tiny_models,
                                                                                  tmp_path):
    target = wildcard_home.folder("checkpoint") / "tiny-sd1.safetensors"
    shutil.copy(tiny_models["sd1"], target)
    with Catalog(wildcard_home) as catalog:
        catalog.add_file(target)
    folder = wildcard_home.folder("wildcards")
    batch = generate(wildcard_home, "tiny-sd1", params(prompt="__color__", negative_prompt="{ugly|bad}", seed=10,
                                                        batch_size=3))
    assert batch.seeds == [10, 11, 12] and len(batch.images) == 3
    expected = expand_prompts("__color__", "{ugly|bad}", 10, 3, wildcard_dir=folder)
    infos = [Infotext.from_text(text) for text in batch.infotexts]
    assert [info.prompt for info in infos] == expected.prompts
    assert [info.negative_prompt for info in infos] == expected.negative_prompts
    assert all(info.params["Negative Template"] == "{ugly|bad}" for info in infos)
    single = generate(wildcard_home, "tiny-sd1", params(prompt="__color__", negative_prompt="{ugly|bad}", seed=11))
    assert np.array_equal(pixels(single.images[0]), pixels(batch.images[1]))

    rerun = rerun_png(wildcard_home, batch.images[2], out_dir=tmp_path / "again")
    assert np.array_equal(pixels(rerun.images[0]), pixels(batch.images[2]))
    assert Infotext.from_text(rerun.infotexts[0]).prompt == infos[2].prompt
