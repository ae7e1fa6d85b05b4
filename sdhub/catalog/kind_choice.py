"""Who told an asset's kind: its tensors, a source (Civitai's model type), or the user.

The catalog's ``kind`` is what the tensors show. Where they cannot tell ("other"), the kind a
source gives fills in (a Civitai "Controlnet" is a controlnet until detection says otherwise); a
kind the user set (``sdhub mv NAME --kind KIND``) wins over both. The choice is kept in the
asset's ``inspect`` report under ``kind_choice`` (``{"kind", "by", "evidence"}``) beside what the
detector found, so a rescan, which replaces the report, carries it over and never loses it.
"""

from __future__ import annotations

import json
from typing import Any

from sdhub.models.kinds import OTHER

#: The key of the choice in an asset's ``inspect`` report.
CHOICE_KEY = "kind_choice"
#: Who may choose a kind, weakest first: a source's model type, then the user.
CHOOSERS = ("civitai", "huggingface", "user")
USER = "user"
#: The evidence recorded for a kind the user set.
SET_BY_USER = "set by the user"
_UNTOLD = (None, "", OTHER, "unknown")


def recorded_choice(inspect: str | dict[str, Any] | None) -> dict[str, str] | None:
    """The kind choice recorded in an ``inspect`` report (its JSON text or the dict), if any."""
    if isinstance(inspect, str):
        try:
            inspect = json.loads(inspect)
        except ValueError:
            return None
    choice = inspect.get(CHOICE_KEY) if isinstance(inspect, dict) else None
    if not isinstance(choice, dict) or choice.get("by") not in CHOOSERS or not isinstance(choice.get("kind"), str):
        return None
    return {"kind": choice["kind"], "by": choice["by"], "evidence": str(choice.get("evidence") or "")}


def settle_kind(detected: str, report: dict[str, Any], previous_inspect: str | None) -> tuple[str, dict[str, Any]]:
    """The kind to record for a fresh ``report`` whose tensors say ``detected``, and the report to store
    (carrying over the choice recorded in the asset's previous report)."""
    choice = recorded_choice(previous_inspect)
    if choice is None:
        return detected, report
    return kind_with(detected, choice), {**report, CHOICE_KEY: choice}


def kind_with(detected: str | None, choice: dict[str, str]) -> str:
    """The asset's kind given what its tensors say and a recorded choice: the user's always wins, a
    source's only where the tensors cannot tell."""
    if choice["by"] == USER or detected in _UNTOLD:
        return choice["kind"]
    return detected  # type: ignore[return-value]


def choose(inspect: str | None, kind: str, by: str, evidence: str) -> tuple[str, str]:
    """Record ``by``'s choice of ``kind`` in an ``inspect`` report; returns (the asset's kind now, the
    report's new JSON). A source never replaces the user's choice."""
    if by not in CHOOSERS:
        raise ValueError(f"unknown chooser {by!r}")
    try:
        report = json.loads(inspect) if inspect else {}
    except ValueError:
        report = {}
    if not isinstance(report, dict):
        report = {}
    previous = recorded_choice(report)
    if previous is None or previous["by"] != USER or by == USER:
        report[CHOICE_KEY] = {"kind": kind, "by": by, "evidence": evidence}
    detected = report.get("kind")
    return kind_with(detected if isinstance(detected, str) else None, report[CHOICE_KEY]), \
        json.dumps(report, ensure_ascii=False, sort_keys=True)
