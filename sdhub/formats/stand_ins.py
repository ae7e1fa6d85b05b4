"""Files saved under a model's name that are something else: empty, a Git LFS pointer, a page.

A clone without ``git lfs`` leaves 130-byte pointers where the models should be; a download
that hit a login wall or an error leaves an HTML page or a JSON error body; an interrupted copy
leaves 0 bytes. ``stand_in_reason`` says which, in words a user can act on, so that every
command (inspect, convert, scan, and ``hash``, which refuses them: their hashes would be taken
for the model's) reports the same line. Text quoted from the file (a page title, a server's
message) passes through ``sdhub.text.printable`` first.
"""

from __future__ import annotations

import html
import json
import re

from sdhub.text import printable
from sdhub.units import human_size

#: How much of a file's start is read to tell what it is (a page's <title> sits in its first KiB or so).
HEAD_BYTES = 64 * 1024
#: git-lfs writes pointers far smaller than this; anything larger is not one.
_MAX_POINTER_BYTES = 1024
#: A JSON or text body longer than this is not an error message saved by mistake.
_MAX_BODY_BYTES = 64 * 1024
#: Quoted titles and messages are cut to this many characters.
_MAX_QUOTE = 120

_LFS_VERSION = b"version https://git-lfs.github.com/spec/v1"
_LFS_OID = re.compile(rb"^oid sha256:([0-9a-f]{64})$", re.MULTILINE)
_LFS_SIZE = re.compile(rb"^size (\d{1,20})$", re.MULTILINE)
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_BOMS = (b"\xef\xbb\xbf",)


def stand_in_reason(head: bytes, size: int) -> str | None:
    """What the file is instead of a model ("is a Git LFS pointer ..."), or None if it is none of these.

    ``head`` is the file's first bytes (``HEAD_BYTES`` of them, or all of a shorter file).
    """
    if size == 0:
        return "is empty (0 bytes): a download or copy that never started; get it again"
    text = _without_bom(head).lstrip()
    if size <= _MAX_POINTER_BYTES and text.startswith(_LFS_VERSION):
        return _lfs_pointer(head)
    if text[:64].lower().startswith(_HTML_STARTS):
        title = _page_title(head)
        return ("is a web page (HTML" + (f", {title}" if title else "") + "), not a model: a login or error page "
                "saved under the model's name; get the file again (with a token if the site needs one)")
    if size <= _MAX_BODY_BYTES and len(head) >= size and text[:1] in (b"{", b"["):
        document = _json(head)
        if document is not None:
            said = _json_message(document)
            return ("is a JSON document" + (f" ({said})" if said else "") + ", not a model: a server's answer "
                    "saved under the model's name; get the file again")
    return None


def _without_bom(head: bytes) -> bytes:
    for bom in _BOMS:
        if head.startswith(bom):
            return head[len(bom):]
    return head


def _lfs_pointer(head: bytes) -> str:
    size = _LFS_SIZE.search(head)
    oid = _LFS_OID.search(head)
    target = f"a file of {int(size.group(1)):,} bytes ({human_size(int(size.group(1)))})" if size else "a file"
    digest = f", sha256 {oid.group(1).decode()[:12]}…" if oid else ""
    return (f"is a Git LFS pointer to {target}{digest}, not the file itself: `git lfs pull` in its repository "
            "fetches the file")


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _MAX_QUOTE:
        text = text[:_MAX_QUOTE - 1] + "…"
    return printable(text)


def _page_title(head: bytes) -> str | None:
    match = _TITLE.search(head)
    if not match:
        return None
    title = _quote(html.unescape(match.group(1).decode("utf-8", "replace")))
    return f"titled '{title}'" if title else None


def _json(head: bytes) -> object | None:
    try:
        return json.loads(_without_bom(head).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _json_message(document: object) -> str | None:
    """The ``error`` / ``message`` / ``detail`` a server's JSON error body carries, if short and plain."""
    if not isinstance(document, dict):
        return None
    for key in ("error", "message", "detail", "msg"):
        value = document.get(key)
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return f"{key}: '{_quote(value)}'"
    return None
