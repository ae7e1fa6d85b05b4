"""Merging two manifests of one asset: newest change wins per synced field; lists of facts are united.

The rule (docs/remote.md, "Metadata both ways"): each synced field carries the time it last changed
(``modified``); the value with the later time wins, ties go to the larger JSON text so every machine picks
the same. Test verdicts, lineage links and names are facts, never lost: the union is kept. Descriptive
fields (kind, family, hashes) come from whichever manifest was pushed later.
"""

from __future__ import annotations

import json
from typing import Any

#: Fields of ``manifest["user"]`` synced per field (the catalog columns of ``store.SYNCED_FIELDS``).
USER_FIELDS = ("name", "tags", "notes", "description", "trigger_words", "preferred_weight", "negative_text",
               "sd_version", "nsfw", "preferred_vae", "generation_defaults")


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def newer(time_a: str, value_a: Any, time_b: str, value_b: Any) -> bool:
    """Whether (time_b, value_b) beats (time_a, value_a) under the newest-wins rule."""
    return (time_b, _text(value_b)) > (time_a, _text(value_a))


def _union(first: list[Any], second: list[Any], key: Any) -> list[Any]:
    seen: dict[str, Any] = {}
    for item in [*first, *second]:
        seen.setdefault(_text(key(item)), item)
    return list(seen.values())


def merge_manifests(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` laid over ``old`` (both of the same SHA-256) by the rule above; neither is changed."""
    if not old:
        return json.loads(json.dumps(new))
    later, earlier = (new, old) if str(new.get("pushed_at", "")) >= str(old.get("pushed_at", "")) else (old, new)
    merged = json.loads(json.dumps(later))
    user: dict[str, Any] = dict(earlier.get("user") or {})
    modified: dict[str, str] = dict(earlier.get("modified") or {})
    user_set = set(earlier.get("user_fields") or [])
    for field in USER_FIELDS:
        value, time = (later.get("user") or {}).get(field), (later.get("modified") or {}).get(field, "")
        if field not in (earlier.get("user") or {}) or newer(modified.get(field, ""), user.get(field), time, value):
            if field in (later.get("user") or {}):
                user[field] = value
                modified[field] = time
                user_set.discard(field)
                if field in (later.get("user_fields") or []):
                    user_set.add(field)
    merged["user"], merged["modified"] = user, modified
    merged["user_fields"] = sorted(user_set)
    merged["tests"] = sorted(_union(old.get("tests") or [], new.get("tests") or [],
                                    lambda t: [t.get("kind"), t.get("at"), t.get("verdict")]),
                             key=lambda t: str(t.get("at")))
    merged["lineage"] = _union(old.get("lineage") or [], new.get("lineage") or [], lambda link: link.get("parent"))
    merged["names"] = sorted(set(old.get("names") or []) | set(new.get("names") or []))
    for optional in ("sources", "preview"):
        if not merged.get(optional) and earlier.get(optional):
            merged[optional] = earlier[optional]
    return merged
