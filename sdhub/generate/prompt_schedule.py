"""A1111 prompt editing, alternation and ``AND``: which text is used at which sampling step.

``[from:to:when]`` uses ``from`` until step ``when`` and ``to`` after it; ``[to:when]`` and
``[from::when]`` leave one side empty; ``when`` with a ``.`` is a fraction of the steps.
``[a|b|c]`` alternates every step. ``prompt_schedule`` returns A1111's list of
``[until_step, text]`` pairs (``get_learned_conditioning_prompt_schedules``); ``split_and`` splits
composable prompts ``a AND b :0.5`` into ``(text, weight)`` pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A1111's grammar: plain text is any character but these, or a backslash and any character.
_SPECIAL = set("\\[]():|")
# lark's SIGNED_NUMBER between optional whitespace, closing a scheduled bracket.
_WHEN = re.compile(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?))\s*\]")
_AND = re.compile(r"\bAND\b")
_AND_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


class _NoParse(Exception):
    """The prompt does not fit the schedule grammar; A1111 then uses it unchanged."""


@dataclass
class _Scheduled:
    before: list | None
    after: list
    when_text: str
    when: int = 0


@dataclass
class _Alternate:
    options: list[list]


class _Parser:
    """Recursive descent over A1111's schedule grammar, preferring structure over stray brackets."""

    def __init__(self, text: str) -> None:
        self.text = text

    def parse(self) -> list:
        nodes, position = self._sequence(0, top=True)
        if position != len(self.text):
            raise _NoParse
        return nodes

    def _sequence(self, position: int, top: bool = False) -> tuple[list, int]:
        text, nodes = self.text, []
        while position < len(text):
            char = text[position]
            if char == "\\":
                if position + 1 >= len(text) or text[position + 1] == "\n":
                    raise _NoParse
                nodes.append(text[position:position + 2])
                position += 2
            elif char in "([":
                try:
                    node, position = (self._round if char == "(" else self._square)(position)
                except _NoParse:
                    if not top:
                        raise
                    node, position = char, position + 1  # at top level a bracket may stand alone
                if isinstance(node, list):
                    nodes.extend(node)
                else:
                    nodes.append(node)
            elif char == "|":
                if top:
                    raise _NoParse
                break
            elif char in "):]":
                if not top:
                    break
                nodes.append(char)
                position += 1
            else:
                end = position
                while end < len(text) and text[end] not in _SPECIAL:
                    end += 1
                nodes.append(text[position:end])
                position = end
        return nodes, position

    def _expect(self, position: int, char: str) -> int:
        if position >= len(self.text) or self.text[position] != char:
            raise _NoParse
        return position + 1

    def _round(self, position: int) -> tuple[list, int]:
        inner, position = self._sequence(position + 1)
        if position < len(self.text) and self.text[position] == ":":
            weight, position = self._sequence(position + 1)
            return ["(", *inner, ":", *weight, ")"], self._expect(position, ")")
        return ["(", *inner, ")"], self._expect(position, ")")

    def _square(self, position: int) -> tuple[object, int]:
        first, position = self._sequence(position + 1)
        if position >= len(self.text):
            raise _NoParse
        char = self.text[position]
        if char == "]":
            return ["[", *first, "]"], position + 1
        if char == "|":
            options = [first]
            while position < len(self.text) and self.text[position] == "|":
                option, position = self._sequence(position + 1)
                options.append(option)
            return _Alternate(options), self._expect(position, "]")
        if char != ":":
            raise _NoParse
        when = _WHEN.match(self.text, position + 1)
        if when:
            return _Scheduled(None, first, when.group(1)), when.end()
        second, position = self._sequence(position + 1)
        position = self._expect(position, ":")
        when = _WHEN.match(self.text, position)
        if not when:
            raise _NoParse
        return _Scheduled(first, second, when.group(1)), when.end()


def _walk(nodes: list):
    for node in nodes:
        yield node
        if isinstance(node, _Scheduled):
            yield from _walk(node.before or [])
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            for option in node.options:
                yield from _walk(option)


def _render(nodes: list, step: int) -> str:
    parts = []
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, _Scheduled):
            parts.append(_render(node.before or [], step) if step <= node.when else _render(node.after, step))
        else:
            parts.append(_render(node.options[(step - 1) % len(node.options)], step))
    return "".join(parts)


def prompt_schedule(
    prompt: str, steps: int, *, hires_steps: int | None = None, old_scheduling: bool = False
) -> list[list]:
    """A1111's ``[[until_step, text], ...]`` for one prompt (no ``AND``) sampled in ``steps`` steps.

    With ``hires_steps`` the schedule is the hires-fix second pass (integer steps continue the
    numbering of the first pass, fractions count from 1.0); ``old_scheduling`` is A1111 < 1.6
    ("Old prompt editing timelines": a value below 1 is a fraction, and hires uses base steps).
    """
    if hires_steps is None or old_scheduling:
        int_offset, fraction_offset, total = 0, 0.0, steps
    else:
        int_offset, fraction_offset, total = steps, 1.0, hires_steps
    try:
        tree = _Parser(prompt).parse()
    except _NoParse:
        return [[total, prompt]]
    boundaries = {total}
    for node in _walk(tree):
        if isinstance(node, _Scheduled):
            value = float(node.when_text)
            if old_scheduling:
                value = value * total if value < 1 else value
            elif "." in node.when_text:
                value = (value - fraction_offset) * total
            else:
                value = value - int_offset
            node.when = min(total, int(value))
            if node.when >= 1:
                boundaries.add(node.when)
        elif isinstance(node, _Alternate):
            boundaries.update(range(1, total + 1))
    return [[step, _render(tree, step)] for step in sorted(boundaries)]


def split_and(prompt: str) -> list[tuple[str, float]]:
    """Composable-diffusion sub-prompts of ``prompt``: ``a AND b :0.5`` -> ``[("a", 1.0), (" b", 0.5)]``."""
    parts = []
    for subprompt in _AND.split(prompt):
        match = _AND_WEIGHT.search(subprompt)
        if match is None:
            parts.append((subprompt, 1.0))
        else:
            text, weight = match.groups()
            parts.append((text, float(weight) if weight is not None else 1.0))
    return parts
