"""Dynamic Prompts in ``generate``: ``__name__`` wildcards and ``{a|b}`` variants, expanded per image seed.

A1111's Dynamic Prompts extension (adieyal/sd-dynamic-prompts) expands a prompt with the
``dynamicprompts`` library before A1111 parses it. In its default random mode ("Unlink seed from
prompt" and "Fixed seed" off) image ``i`` of a batch gets the prompt drawn with Python's ``Random``
seeded by that image's seed (``seed + i``); the negative prompt is drawn the same way. With a
variation seed (subseed strength above 0) the prompt is frozen: one draw, seeded by the seed, for
every image. Wildcard files come from the home's wildcards folder, deduplicated and sorted, as the
extension's defaults do. The image records the expanded prompt; its ``Template`` and
``Negative Template`` fields record what was typed (the extension's "Save template to metadata").

A prompt with neither ``{``/``}`` nor a ``__name__`` pair is left exactly as typed, so A1111's own
syntax (``(x:1.2)``, ``[a|b]``, ``[a:b:10]``, ``<lora:...>``, ``BREAK``, ``AND``) never reaches the parser.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping
from contextlib import contextmanager

from sdhub.errors import BadInputError

if TYPE_CHECKING:
    from sdhub.config import Home
    from sdhub.generate.generate import GenerationResult
    from sdhub.generate.pipeline import GenerationParams

#: Braces (variants) or a ``__name__`` pair: what makes a prompt a Dynamic Prompts template.
_DYNAMIC_SYNTAX = re.compile(r"[{}]|__\S+?__")
TEMPLATE_FIELD = "Template"
NEGATIVE_TEMPLATE_FIELD = "Negative Template"


def has_dynamic_syntax(text: str | None) -> bool:
    """True when ``text`` holds a variant (``{...}``) or a wildcard (``__name__``) to expand."""
    return bool(text) and _DYNAMIC_SYNTAX.search(text) is not None


@dataclass
class ExpandedPrompts:
    """Each image's prompt and negative prompt, the templates they came from, and what to tell the user."""

    prompts: list[str]
    negative_prompts: list[str]
    template: str
    negative_template: str
    notes: list[str] = field(default_factory=list)

    @property
    def one_prompt(self) -> bool:
        """True when every image has the same prompts (then the batch is sampled as one)."""
        return len(set(zip(self.prompts, self.negative_prompts))) <= 1

    def infotext_fields(self) -> dict[str, str]:
        """``Template``/``Negative Template`` as the extension writes them: each when its prompt is not empty."""
        fields = {}
        if self.template:
            fields[TEMPLATE_FIELD] = self.template
        if self.negative_template:
            fields[NEGATIVE_TEMPLATE_FIELD] = self.negative_template
        return fields


def image_seeds(seed: int, batch_size: int, subseed_strength: float) -> list[int] | None:
    """The seeds the extension draws prompts with: ``seed + i`` per image; None (one frozen prompt) with a
    variation seed."""
    if subseed_strength:
        return None
    return [seed + index for index in range(batch_size)]


def expand_prompts(prompt: str, negative_prompt: str, seed: int, batch_size: int, *,
                   wildcard_dir: Path | None, subseed_strength: float = 0.0) -> ExpandedPrompts:
    """The prompts the Dynamic Prompts extension would give each image of a batch of ``batch_size``."""
    from dynamicprompts.generators import RandomPromptGenerator
    from dynamicprompts.wildcards import WildcardManager

    manager = WildcardManager(wildcard_dir if wildcard_dir is not None and wildcard_dir.is_dir() else None)
    seeds = image_seeds(seed, batch_size, subseed_strength)
    notes: list[str] = []
    with _library_warnings(notes):
        prompts = _draw(RandomPromptGenerator(manager, seed=seed), prompt, batch_size, seeds, "prompt")
        negatives = _draw(RandomPromptGenerator(manager, seed=seed), negative_prompt, batch_size,
                          seeds if negative_prompt else None, "negative prompt")
    return ExpandedPrompts(prompts, negatives, prompt, negative_prompt, notes)


def _draw(generator, template: str, count: int, seeds: list[int] | None, what: str) -> list[str]:
    if not has_dynamic_syntax(template):
        return [template] * count
    from pyparsing import ParseBaseException

    try:
        if seeds is None:  # frozen: one draw from the generator seeded with the image seed
            return generator.generate(template, 1) * count
        return generator.generate(template, count, seeds=seeds)
    except ParseBaseException as error:
        raise BadInputError(f"the {what}'s Dynamic Prompts syntax does not parse at column {error.col} "
                            f"({error.msg}); write a literal brace as \\{{ or \\}}") from None


@contextmanager
def _library_warnings(notes: list[str]) -> Iterator[None]:
    """The library logs what it cannot expand (a wildcard with no file); core code never prints, so
    those lines become notes."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message not in notes:
                notes.append(f"wildcards: {message}")

    logger = logging.getLogger("dynamicprompts")
    handler, propagate = Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def generate_with_wildcards(home: "Home", params: "GenerationParams",
                            run: Callable[["GenerationParams", Mapping[str, str]], "GenerationResult"]
                            ) -> "GenerationResult":
    """Run ``run(params, template_fields)`` with the prompts expanded; a batch whose images drew different
    prompts runs image by image (each with its own seed), as the extension's per-image prompts are drawn."""
    params.validate()
    params = params.with_seeds()
    if not (has_dynamic_syntax(params.prompt) or has_dynamic_syntax(params.negative_prompt)):
        return run(params, {})
    expanded = expand_prompts(params.prompt, params.negative_prompt or "", params.seed, params.batch_size,
                              wildcard_dir=home.folders.get("wildcards"), subseed_strength=params.subseed_strength)
    fields = expanded.infotext_fields()
    if expanded.one_prompt:
        result = run(replace(params, prompt=expanded.prompts[0], negative_prompt=expanded.negative_prompts[0]), fields)
        result.notes.extend(expanded.notes)
        return result
    results = [run(replace(params, prompt=prompt, negative_prompt=negative, seed=params.seed + index, batch_size=1),
                   fields)
               for index, (prompt, negative) in enumerate(zip(expanded.prompts, expanded.negative_prompts))]
    return _merged(results, params, expanded.notes)


def _merged(results: list["GenerationResult"], params: "GenerationParams", notes: list[str]) -> "GenerationResult":
    """One result for a batch run image by image: every image, seed and infotext in order."""
    first = results[0]
    merged_notes = [note for result in results for note in result.notes]
    return replace(
        first, params=params, images=[path for r in results for path in r.images],
        seeds=[seed for r in results for seed in r.seeds], infotexts=[text for r in results for text in r.infotexts],
        load_seconds=sum(r.load_seconds for r in results), sampling_seconds=sum(r.sampling_seconds for r in results),
        decode_seconds=sum(r.decode_seconds for r in results),
        vae_fp32_retry=any(r.vae_fp32_retry for r in results), nan_in_output=any(r.nan_in_output for r in results),
        embeddings=sorted({name for r in results for name in r.embeddings}),
        notes=list(dict.fromkeys([*merged_notes, *notes])),
    )
