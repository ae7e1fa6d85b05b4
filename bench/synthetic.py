"""Made-up Civitai listings for the catalog and TUI benchmarks: names, tags and trigger words."""

from __future__ import annotations

import random

WORDS = ("anime realistic portrait landscape ink watercolor cyberpunk fantasy photo style character "
         "lighting detail sketch painting pastel noir vintage retro neon dream forest city ocean "
         "mecha armor dragon castle sunset winter summer cute dark bright soft sharp film grain "
         "analog cinematic studio manga comic chibi pixel lowpoly oil charcoal marker").split()


def synthetic_listing(rng: random.Random) -> dict[str, str | list[str]]:
    """An asset's ``name``, three ``tags`` and two ``trigger_words`` drawn from ``WORDS``, as Civitai would list them."""
    return {
        "name": " ".join(rng.sample(WORDS, 2)).title() + f" v{rng.randint(1, 9)}",
        "tags": rng.sample(WORDS, 3),
        "trigger_words": [rng.choice(WORDS) + str(rng.randint(1, 99)) for _ in range(2)],
    }
