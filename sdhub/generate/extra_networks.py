"""A1111 extra-network tags such as ``<lora:name:0.8>``: found, removed from the prompt, parsed.

Every ``<word:args>`` tag is removed (A1111 removes unknown networks too and only warns).
For ``lora`` and its alias ``lyco``: ``<lora:name>`` is multiplier 1.0; ``<lora:name:te>`` sets the
text-encoder multiplier and the UNet follows it; ``<lora:name:te:unet>`` sets both;
``te=``/``unet=``/``dyn=`` named arguments override positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sdhub.errors import BadInputError

_TAG = re.compile(r"<(\w+):([^>]+)>")
LORA_NETWORKS = ("lora", "lyco")


@dataclass
class ExtraNetworkTag:
    """One tag: the network kind, its arguments, and for LoRAs the name and multipliers."""

    network: str
    items: list[str]
    positional: list[str] = field(default_factory=list)
    named: dict[str, str] = field(default_factory=dict)
    name: str = ""
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0
    dyn_dim: int | None = None

    def to_dict(self) -> dict:
        return {"network": self.network, "name": self.name, "te_multiplier": self.te_multiplier,
                "unet_multiplier": self.unet_multiplier, "dyn_dim": self.dyn_dim, "items": self.items}


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkTag]]:
    """The prompt with every ``<network:args>`` tag removed, and the tags in order of appearance."""
    tags: list[ExtraNetworkTag] = []

    def found(match: re.Match) -> str:
        tags.append(_parse_tag(match.group(1), match.group(2).split(":"), match.group(0)))
        return ""

    return _TAG.sub(found, prompt), tags


def _parse_tag(network: str, items: list[str], source: str) -> ExtraNetworkTag:
    tag = ExtraNetworkTag(network, items)
    for item in items:
        parts = item.split("=", 2)
        if len(parts) == 2:
            tag.named[parts[0]] = parts[1]
        else:
            tag.positional.append(item)
    tag.name = tag.positional[0] if tag.positional else ""
    if network not in LORA_NETWORKS:
        return tag
    try:
        te = float(tag.positional[1]) if len(tag.positional) > 1 else 1.0
        te = float(tag.named.get("te", te))
        unet = float(tag.positional[2]) if len(tag.positional) > 2 else te
        unet = float(tag.named.get("unet", unet))
        dyn = int(tag.positional[3]) if len(tag.positional) > 3 else None
        dyn = int(tag.named["dyn"]) if "dyn" in tag.named else dyn
    except ValueError:
        raise BadInputError(f"the tag {source} has a multiplier that is not a number; write e.g. <lora:name:0.8>") from None
    if not tag.name:
        raise BadInputError(f"the tag {source} names no LoRA; write e.g. <lora:name:0.8>")
    tag.te_multiplier, tag.unet_multiplier, tag.dyn_dim = te, unet, dyn
    return tag
