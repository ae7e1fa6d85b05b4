"""A1111 hypernetworks: the family from the widths of the attention layers they modify.

An A1111 hypernetwork ``.pt`` is a dict whose int keys are attention widths (768, 320, 640, 1280 for
SD1; 1024 beside them for SD2), each holding a pair of layer dicts (for k and v); the safe reader
names their tensors ``768.0.linear.0.weight``. NovelAI's originals name the layers ``linear1`` /
``linear2`` (``768.1.linear2.bias``). Everything else in the file (``name``, ``layer_structure``,
``activation_func``, ``sd_checkpoint``...) is not a tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sdhub.models.detection import CROSS_ATTENTION_BASE, Detection, shape_of as _shape, tolerates_malformed_shapes

_NAME = re.compile(r"^(?P<width>\d+)\.(?P<pair>[01])\.(?:linear\.\d+|linear[12])\.(?:weight|bias)$")


@tolerates_malformed_shapes("hypernetwork")
def detect_hypernetwork(tensors: Mapping[str, Any]) -> Detection | None:
    """A hypernetwork verdict, or None when any tensor is not named like a hypernetwork layer."""
    widths: set[int] = set()
    for name, info in tensors.items():
        match = _NAME.match(name)
        if match is None:
            return None
        width = int(match["width"])
        if width == 0 or not _shape(info):
            return None
        widths.add(width)
    if not widths:
        return None
    evidence = [f"A1111 hypernetwork layers for attention widths {', '.join(map(str, sorted(widths)))}"]
    context = [w for w in widths if w in CROSS_ATTENTION_BASE]
    # SD1's UNet widths (320/640/1280) are shared by SD2; the text-context width tells the family.
    base = CROSS_ATTENTION_BASE[max(context)] if context else None
    if base is not None:
        evidence.append(f"text-context width {max(context)} ({base})")
    else:
        evidence.append("no text-context width (768, 1024) among them to tell the family from")
    return Detection("hypernetwork", architecture=base, base_model=base, evidence=evidence,
                     details={"widths": sorted(widths)})
