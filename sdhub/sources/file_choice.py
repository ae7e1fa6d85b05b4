"""One rule for choosing among several weight files of one model (a Civitai version's files, a Hub
repo's loose checkpoints): the community FAQ's advice, stated once and used by every source.

The rule, criterion by criterion (the first that tells two files apart decides):

1. no EMA-only training copies (``*-ema.ckpt``, ``*_ema-only.safetensors``; a ``pruned-emaonly``
   file is the pruned generation copy and is not one of them);
2. safetensors before GGUF before pickles (``.ckpt``, ``.pt``, ``.bin``), which run code when loaded;
3. pruned before full (a full file carries training state generation never reads);
4. fp16 before bf16 before fp32 (half precision draws the same images at half the size);
5. the smaller file; then the source's own default (Civitai's primary file); then the name.

``--prefer full``, ``--prefer fp32``, ``--prefer ckpt`` (and ``pruned``, ``fp16``, ``bf16``,
``safetensors``, ``ema``) put that wish before the rule; ``--file NAME`` takes one file by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from sdhub.errors import NotFoundError, UsageError

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
RULE_TEXT = ("safetensors before pickles, pruned before full, fp16 before fp32, no EMA-only training copies, "
             "then the smaller file")
#: ``--prefer`` words and the criterion each one turns around.
PREFERENCES = {
    "full": ("size", "full"), "pruned": ("size", "pruned"),
    "fp32": ("precision", "fp32"), "fp16": ("precision", "fp16"), "bf16": ("precision", "bf16"),
    "ckpt": ("format", "pickle"), "pickle": ("format", "pickle"), "pt": ("format", "pickle"),
    "safetensors": ("format", "safetensors"), "gguf": ("format", "gguf"), "ema": ("ema", "ema"),
}
_FORMAT_RANK = {"safetensors": 0, "gguf": 1, "other": 2, "pickle": 3}
_SIZE_RANK = {"pruned": 0, None: 1, "full": 2}
_PRECISION_RANK = {"fp16": 0, "bf16": 1, "fp8": 2, None: 3, "fp32": 4}
_CIVITAI_FORMATS = {"safetensor": "safetensors", "pickletensor": "pickle", "gguf": "gguf"}


def _words(name: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", name.lower()))


@dataclass
class Candidate:
    """One weight file as the rule sees it: its format, pruned or full, precision, and EMA-only mark."""

    name: str
    size: int | None
    format: str
    prune: str | None
    precision: str | None
    ema_only: bool = False
    primary: bool = False
    source: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "format": self.format, "prune": self.prune,
                "precision": self.precision, "ema_only": self.ema_only, "primary": self.primary}


def from_file_name(name: str, size: int | None = None, *, source: Any = None) -> Candidate:
    """A candidate described by its file name alone (a Hub file): suffix, and words such as fp16 or pruned."""
    lowered = name.lower()
    words = _words(name.rsplit("/", 1)[-1])
    fmt = ("safetensors" if lowered.endswith((".safetensors", ".sft")) else "gguf" if lowered.endswith(".gguf")
           else "pickle" if lowered.endswith(PICKLE_SUFFIXES) else "other")
    precision = next((p for p, marks in (("fp16", {"fp16", "f16", "half"}), ("bf16", {"bf16"}),
                                         ("fp8", {"fp8"}), ("fp32", {"fp32", "f32", "float32"}))
                      if words & marks), None)
    prune = "pruned" if "pruned" in words else "full" if words & {"full", "unpruned"} else None
    return Candidate(name=name, size=size, format=fmt, prune=prune, precision=precision,
                     ema_only=_is_ema_copy(name), source=source)


def _is_ema_copy(name: str) -> bool:
    """An EMA-only copy kept for training or merging (``model-ema.ckpt``, ``model_ema_only.safetensors``);
    ``v1-5-pruned-emaonly`` (the pruned generation file) and ``no-ema``/``nonema`` files are not."""
    base = name.rsplit("/", 1)[-1].lower()
    if "pruned" in base or re.search(r"no[-_ ]?ema|non[-_ ]?ema", base):
        return False
    return bool(re.search(r"(^|[^a-z])ema([^a-z]|only|$)", base))


def from_civitai_file(file: dict[str, Any]) -> Candidate:
    """A candidate from a Civitai file object: its metadata first, its name where metadata is silent."""
    by_name = from_file_name(str(file.get("name") or ""), None)
    metadata = file.get("metadata") or {}
    fmt = _CIVITAI_FORMATS.get(str(metadata.get("format") or "").lower().replace(" ", ""))
    size_kb = file.get("sizeKB")
    prune = str(metadata["size"]).lower() if metadata.get("size") else None
    if prune is None and str(file.get("type", "")).lower() == "pruned model":
        prune = "pruned"
    return Candidate(
        name=by_name.name, size=int(float(size_kb) * 1024) if isinstance(size_kb, (int, float)) else None,
        format=fmt or (by_name.format if metadata.get("format") in (None, "") else "other"),
        prune=prune or by_name.prune, precision=(str(metadata["fp"]).lower() if metadata.get("fp") else None)
        or by_name.precision, ema_only=by_name.ema_only, primary=bool(file.get("primary")), source=file)


def parse_preferences(prefer: Iterable[str]) -> list[tuple[str, str]]:
    """``--prefer`` words (repeatable or comma-separated) as (criterion, wanted value) pairs."""
    wishes: list[tuple[str, str]] = []
    for word in (w.strip().lower() for text in prefer for w in text.split(",")):
        if not word:
            continue
        if word not in PREFERENCES:
            raise UsageError(f"--prefer {word!r} is not known; use one of: {', '.join(sorted(PREFERENCES))} "
                             "(or --file NAME for one file)")
        wishes.append(PREFERENCES[word])
    return wishes


def _value(candidate: Candidate, criterion: str) -> Any:
    return {"format": candidate.format, "size": candidate.prune, "precision": candidate.precision,
            "ema": "ema" if candidate.ema_only else None}[criterion]


def sort_key(candidate: Candidate, wishes: list[tuple[str, str]] = ()) -> tuple[Any, ...]:  # type: ignore[assignment]
    """The rule as a sort key: the user's wishes first, then the FAQ's criteria, then size, primary, name."""
    wished = tuple(_value(candidate, criterion) != wanted for criterion, wanted in wishes)
    ema_wished = any(criterion == "ema" for criterion, _ in wishes)
    return wished + (
        candidate.ema_only and not ema_wished, _FORMAT_RANK.get(candidate.format, 2),
        _SIZE_RANK.get(candidate.prune, 1), _PRECISION_RANK.get(candidate.precision, 3),
        candidate.size if candidate.size is not None else 1 << 62, not candidate.primary, candidate.name,
    )


def describe(candidate: Candidate) -> str:
    """What a candidate is, in a few words: ``safetensors, pruned, fp16``."""
    parts = [candidate.format, candidate.prune or "full or pruned unknown", candidate.precision or "precision unknown"]
    if candidate.ema_only:
        parts.append("EMA-only copy")
    return ", ".join(parts)


def why_not(loser: Candidate, winner: Candidate, wishes: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    """The first criterion on which ``loser`` loses to ``winner``, in words."""
    for criterion, wanted in wishes:
        if _value(loser, criterion) != wanted and _value(winner, criterion) == wanted:
            return f"not {wanted} (--prefer)"
    if loser.ema_only and not winner.ema_only:
        return "an EMA-only training copy"
    checks: list[tuple[Callable[[Candidate], Any], str]] = [
        (lambda c: _FORMAT_RANK.get(c.format, 2), f"{loser.format}, not {winner.format}"),
        (lambda c: _SIZE_RANK.get(c.prune, 1), f"{loser.prune or 'not marked pruned'}, not {winner.prune}"),
        (lambda c: _PRECISION_RANK.get(c.precision, 3),
         f"{loser.precision or 'precision unknown'}, not {winner.precision}"),
        (lambda c: c.size if c.size is not None else 1 << 62, "larger"),
    ]
    for rank, words in checks:
        if rank(loser) != rank(winner):
            return words
    return "listed later"


@dataclass
class FileChoice:
    """The candidates, the one the rule (or ``--file``/``--prefer``) picks, and why."""

    candidates: list[Candidate]
    chosen: Candidate
    reason: str
    wishes: list[tuple[str, str]] = field(default_factory=list)

    def others(self) -> list[Candidate]:
        return [c for c in self.candidates if c is not self.chosen]

    def rows(self) -> list[dict[str, Any]]:
        """One row per candidate for ``get --list``: what it is, its size, and chosen or why not."""
        return [{**c.to_dict(), "chosen": c is self.chosen,
                 "why": self.reason if c is self.chosen else why_not(c, self.chosen, self.wishes)}
                for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen.name, "reason": self.reason, "rule": RULE_TEXT, "candidates": self.rows()}


def choose(candidates: list[Candidate], *, prefer: Iterable[str] = (), file_name: str | None = None,
           what: str = "this model") -> FileChoice:
    """Pick one of ``candidates`` by ``file_name``, else by ``prefer`` and the rule."""
    if not candidates:
        raise NotFoundError(f"{what} has no weight files to choose from")
    wishes = parse_preferences(prefer)
    if file_name is not None:
        named = [c for c in candidates if c.name == file_name or c.name.rsplit("/", 1)[-1] == file_name]
        if not named:
            raise NotFoundError(f"{what} has no file named {file_name!r}; it has: "
                                f"{', '.join(c.name for c in candidates)}")
        return FileChoice(candidates, named[0], "named with --file", wishes)
    ranked = sorted(candidates, key=lambda c: sort_key(c, wishes))
    chosen = ranked[0]
    if len(candidates) == 1:
        reason = "the only file"
    else:
        said = f"--prefer {', '.join(w for _, w in wishes)}, then " if wishes else ""
        reason = f"{describe(chosen)}: {said}the rule ({RULE_TEXT})"
    return FileChoice(ranked, chosen, reason, wishes)


def is_weight_file(name: str) -> bool:
    """A file the rule chooses among (model weights), by its suffix."""
    return name.lower().endswith(WEIGHT_SUFFIXES)


_VARIANT_WORDS = {"fp16", "fp32", "bf16", "fp8", "f16", "f32", "half", "float32", "pruned", "full", "unpruned",
                  "ema", "emaonly", "only", "noema", "nonema", "no", "non", "safetensors", "ckpt", "pt", "pth",
                  "bin", "sft", "gguf"}


def model_key(name: str) -> str:
    """The model a file is a variant of: its folder and name without format, precision, pruning and EMA words
    (``Astra_fp16-pruned.safetensors`` and ``Astra.ckpt`` are both ``astra``)."""
    folder, _, base = name.rpartition("/")
    words = [w for w in re.split(r"[^a-z0-9]+", base.lower()) if w and w not in _VARIANT_WORDS]
    return f"{folder}/{'-'.join(words)}"


def group_variants(names: Iterable[str]) -> dict[str, list[str]]:
    """Weight files grouped by the model they are variants of (see ``model_key``)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        if is_weight_file(name):
            groups.setdefault(model_key(name), []).append(name)
    return groups


__all__ = ["Candidate", "FileChoice", "RULE_TEXT", "PREFERENCES", "choose", "from_file_name", "from_civitai_file",
           "group_variants", "is_weight_file", "model_key", "parse_preferences"]
