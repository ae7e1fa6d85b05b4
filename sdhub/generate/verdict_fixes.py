"""What fixes a failed test image, in sdhub's options: the diagnosis a verdict gives, with the rerun it needs.

A black image from NaNs (or one that is black with the VAE in half precision) is the fp16 VAE problem:
``--vae-dtype fp32`` (A1111's ``--no-half-vae``). A washed-out or purple image is a missing or wrong VAE:
a VAE from the library of the model's family, the one the user set for the model first, then the one most
checkpoints prefer, then by name. ``--retry-fixes`` reruns with the first fix.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sdhub.config import Home
from sdhub.generate.generate import GenerationResult
from sdhub.generate.verdicts import Verdict


@dataclass
class Fix:
    """One fix: the option a user adds (``--vae-dtype fp32``), why, and ``generate``'s settings for the rerun."""

    option: str
    why: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest_fixes(home: Home, verdict: Verdict, generated: GenerationResult, vae_dtype: str | None) -> list[Fix]:
    """The fixes for ``verdict`` on the image ``generated`` made (``vae_dtype``: the VAE precision asked for)."""
    if verdict.verdict == "black":
        broken = generated.nan_in_output and generated.vae_fp32_retry  # NaN even in fp32: the weights
        half = (vae_dtype or generated.dtype) in ("fp16", "bf16")
        if not broken and (half or generated.nan_in_output):
            return [Fix("--vae-dtype fp32", "decode with the VAE in fp32 (A1111's --no-half-vae): an fp16 VAE "
                        "overflows to NaN, which draws black", {"vae_dtype": "fp32"})]
        return []
    if verdict.verdict == "washed-out":
        found = library_vae(home, generated)
        if found is not None:
            name, path, family = found
            return [Fix(f"--vae {name}", f"a {family} VAE from your library: washed-out or purple colours come "
                        "from a missing or wrong VAE", {"vae_ref": path})]
    return []


def library_vae(home: Home, generated: GenerationResult) -> tuple[str, str, str] | None:
    """(name, path, family) of the library VAE to try for the model: of its family, not the one just used;
    the model's preferred VAE first, then the one most checkpoints prefer, then by name."""
    from sdhub.catalog import Catalog

    if not generated.model.sha256 or not home.database_path.is_file():
        return None
    used = generated.vae.sha256 if generated.vae else None
    with Catalog(home) as catalog:
        model = catalog.get(generated.model.sha256)
        if model is None or not model.base_model:
            return None
        candidates = [vae for vae in catalog.list_assets(kind="vae")
                      if vae.base_model == model.base_model and vae.present_files and vae.sha256 != used]
        preferred = Counter(asset.preferred_vae for asset in catalog.list_assets(kind="checkpoint")
                            if asset.preferred_vae)
    if not candidates:
        return None

    def rank(vae: Any) -> tuple[bool, int, str]:
        names = {vae.file_name, *vae.aliases}
        return (model.preferred_vae not in names, -max((preferred[name] for name in names), default=0), vae.name)

    best = min(candidates, key=rank)
    return best.name, best.present_files[0].path, model.base_model


def with_fix_hint(reasons: list[str], fixes: list[Fix]) -> list[str]:
    """``reasons`` with each fix named after the first reason (unless that reason names it already)."""
    if not fixes or not reasons:
        return reasons
    hint = "; ".join(f"try {fix.option}" for fix in fixes if fix.option not in reasons[0])
    return [f"{reasons[0]}; {hint}" if hint else reasons[0], *reasons[1:]]
