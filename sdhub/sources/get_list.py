"""``sdhub get --list``: the files a reference could bring, their sizes, and which one the file rule picks.

Nothing is downloaded: a Civitai version's files come from its API answer, a Hub repo's from its
file listing. The same choice code as ``get`` decides (``sdhub.sources.file_choice``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdhub.errors import UsageError
from sdhub.sources import huggingface as hub
from sdhub.sources.civitai import CivitaiClient
from sdhub.sources.file_choice import RULE_TEXT, FileChoice, from_file_name
from sdhub.sources.get import GetOptions, options_from
from sdhub.sources.hub_selection import choices_for_listing
from sdhub.sources.refs import CivitaiRef, HubRef, parse_ref


@dataclass
class CandidateListing:
    """The candidates of one reference: one choice per model it holds (one for a Civitai version)."""

    ref: str
    source: str
    what: str
    choices: list[FileChoice] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "source": self.source, "what": self.what, "rule": RULE_TEXT, "note": self.note,
                "choices": [c.to_dict() for c in self.choices]}


def file_candidates(ref: str, *, options: GetOptions | None = None, **overrides: Any) -> CandidateListing:
    """What ``get ref`` would choose from, and what it picks (``--format/--fp/--size``, ``--prefer``,
    ``--file`` applied), without downloading anything."""
    chosen = options_from(options, overrides)
    parsed = parse_ref(ref)
    if isinstance(parsed, CivitaiRef):
        client = CivitaiClient()
        try:
            choice = client.resolve(parsed, version=chosen.version, file_type=chosen.file_type, format=chosen.format,
                                    size=chosen.size, fp=chosen.fp, prefer=chosen.prefer, file_name=chosen.file_name)
        finally:
            client.close()
        data = choice.to_dict()
        what = f"Civitai {data['model_name'] or 'model'} {data['version_name'] or ''} ({data['version_id']})"
        return CandidateListing(ref, "civitai", what.replace("  ", " "), [choice.file_choice] if choice.file_choice else [])
    if isinstance(parsed, HubRef):
        return _hub_candidates(ref, parsed, chosen)
    raise UsageError(f"{ref} is one file at a plain URL: there is nothing to choose from")


def _hub_candidates(text: str, ref: HubRef, options: GetOptions) -> CandidateListing:
    what = f"Hugging Face repo {ref.repo_path}"
    sizes = hub.list_files(ref)
    if ref.path is not None:
        if ref.path not in sizes:
            raise UsageError(f"{what} has no file {ref.path!r}")
        from sdhub.sources.file_choice import choose

        return CandidateListing(text, "huggingface", what, [choose([from_file_name(ref.path, sizes[ref.path])])])
    if ref.folder is None and "model_index.json" in sizes:
        return CandidateListing(text, "huggingface", what, [],
                                "a diffusers pipeline: get fetches the files its pipeline loads, as one model")
    if ref.folder is not None:
        sizes = {name: size for name, size in sizes.items() if name.startswith(f"{ref.folder}/")}
    choices = choices_for_listing(sizes, prefer=options.prefer, file_name=options.file_name, what=what)
    note = "" if choices else "no weight files (.safetensors, .ckpt, .pt, .bin, .gguf) here"
    return CandidateListing(text, "huggingface", what, choices, note)
