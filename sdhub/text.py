"""Text from files and servers made safe to print: control characters become visible escapes.

A tensor name, a pickle global, a file name or a server's message can hold terminal escapes
(``ESC[2K`` erases a line, ``\\r`` rewrites it, OSC sequences retitle the window) or bidi overrides
that reorder what is shown. Everything sdhub prints that came from outside passes through here.
"""

from __future__ import annotations

import unicodedata

#: Format characters that change how text around them is displayed (bidi embeddings, overrides, isolates).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters written as escapes (``\\x1b``, ``\\r``, ``\\u202e``), on one line
    unless ``keep_newlines``."""
    text = "" if text is None else str(text)
    if text.isprintable():
        return text
    return "".join(_escaped(ch) if _is_control(ch) and not (keep_newlines and ch == "\n") else ch for ch in text)


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS


def _escaped(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def json_for_terminal(text: str) -> str:
    """JSON text with the control characters ``json.dumps(ensure_ascii=False)`` leaves raw (DEL, C1,
    bidi controls) written as ``\\uXXXX``: the same JSON to a parser, harmless on a terminal."""
    if text.isprintable():
        return text
    return "".join(f"\\u{ord(ch):04x}" if ch not in "\n\t" and _is_control(ch) else ch for ch in text)
