"""A1111's emphasis parser: a prompt becomes runs of ``[text, weight]``.

``(x)`` multiplies by 1.1, ``[x]`` divides by 1.1, ``(x:1.5)`` multiplies by 1.5; brackets nest and
compound; ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal; an opener never closed applies to the rest
of the prompt; a closer with nothing to close is plain text; the word ``BREAK`` becomes
``["BREAK", -1]``; runs whose weights are exactly equal are merged; an empty prompt is
``[["", 1.0]]``. The output equals A1111 webui's ``parse_prompt_attention`` for every input.
"""

from __future__ import annotations

import re

from sdhub.errors import BadInputError

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK_ENTRY = ("BREAK", -1)

# Alternatives are tried in this order at each position: escapes first, then a lone backslash,
# openers, an explicit weight closing a round bracket, plain closers, a text run, a lone colon.
_TOKEN = re.compile(
    r"""
      (?P<escape>\\[()\[\]\\]?)
    | (?P<open>[(\[])
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)
    | (?P<close>[)\]])
    | (?P<text>[^\\()\[\]:]+|:)
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str) -> list[list]:
    """Split ``text`` into ``[[text, weight], ...]`` exactly as A1111 does (see module docstring)."""
    runs: list[list] = []
    open_round: list[int] = []
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    def add_text(piece: str) -> None:
        for index, part in enumerate(_BREAK.split(piece)):
            if index:
                runs.append(list(BREAK_ENTRY))
            runs.append([part, 1.0])

    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if match.group("escape") is not None:
            runs.append([token[1:], 1.0])
        elif token == "(":
            open_round.append(len(runs))
        elif token == "[":
            open_square.append(len(runs))
        elif match.group("weight") is not None and open_round:
            scale_from(open_round.pop(), _weight_value(match.group("weight"), text))
        elif token == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            add_text(token)

    for start in open_round:
        scale_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_MULTIPLIER)

    if not runs:
        return [["", 1.0]]
    merged = [runs[0]]
    for run in runs[1:]:
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return merged


def _weight_value(number: str, prompt: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise BadInputError(
            f"the emphasis weight ':{number})' in the prompt {prompt!r} is not a number; write e.g. (word:1.2)"
        ) from None
