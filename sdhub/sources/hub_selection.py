"""Which files of a Hugging Face repo of loose single-file models ``get`` fetches.

A community repo often holds one model several times (ckpt and safetensors, full and pruned, fp32
and fp16). Its weight files are grouped by the model they are variants of, and the file rule
(``sdhub.sources.file_choice``) picks one per model; every other file (README, configs) comes too.
A diffusers pipeline repo is not chosen from here: ``get`` keeps its own pipeline selection.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from typing import Any, Iterable

from sdhub.sources import file_choice
from sdhub.sources.file_choice import FileChoice


@dataclass
class HubSelection:
    """The files to fetch (as exact patterns), one choice per model, and what was left out."""

    wanted: list[str]
    choices: list[FileChoice] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def patterns(self) -> list[str]:
        return [glob.escape(name) for name in self.wanted]

    def note(self) -> str:
        """One line: what was left out, and how to get it."""
        if not self.left_out:
            return ""
        names = sorted(self.left_out)
        total = sum(self.left_out.values())
        picked = ", ".join(c.chosen.name for c in self.choices if c.others())
        return (f"picked {picked} by the file rule ({file_choice.RULE_TEXT}) and left out {len(names)} "
                f"other cop{'ies' if len(names) != 1 else 'y'} ({total / 1e9:.2f} GB): "
                f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''}; `get --list` shows them, "
                "--file NAME or --prefer fp32/full/ckpt picks another, --include '*' fetches every file")

    def to_dict(self) -> dict[str, Any]:
        return {"wanted": self.wanted, "left_out": self.left_out, "choices": [c.to_dict() for c in self.choices]}


def select_repo_files(sizes: dict[str, int], *, prefer: Iterable[str] = (), file_name: str | None = None,
                      what: str = "the repo") -> HubSelection | None:
    """The files to fetch from a repo listing (path -> size): one weight file per model, every other file.

    None when nothing would be left out (each model has one file and no ``--file`` is given).
    """
    prefer = list(prefer)
    weights = [name for name in sizes if file_choice.is_weight_file(name)]
    others = [name for name in sizes if name not in weights]
    if file_name is not None:
        candidates = [file_choice.from_file_name(name, sizes[name]) for name in weights]
        choices = [file_choice.choose(candidates, file_name=file_name, what=what)]
    else:
        groups = file_choice.group_variants(weights)
        if all(len(names) == 1 for names in groups.values()):
            return None
        choices = [file_choice.choose([file_choice.from_file_name(n, sizes[n]) for n in names], prefer=prefer,
                                      what=what) for names in groups.values()]
    chosen = {c.chosen.name for c in choices}
    return HubSelection(wanted=sorted(others) + sorted(chosen), choices=choices,
                        left_out={name: sizes[name] for name in weights if name not in chosen})


def choices_for_listing(sizes: dict[str, int], *, prefer: Iterable[str] = (), file_name: str | None = None,
                        what: str = "the repo") -> list[FileChoice]:
    """One choice per model of a repo, single-file models included (what ``get --list`` shows)."""
    weights = [name for name in sizes if file_choice.is_weight_file(name)]
    if file_name is not None:
        return [file_choice.choose([file_choice.from_file_name(n, sizes[n]) for n in weights], file_name=file_name,
                                   what=what)]
    return [file_choice.choose([file_choice.from_file_name(n, sizes[n]) for n in names], prefer=prefer, what=what)
            for names in file_choice.group_variants(weights).values()]
