"""``sdhub set NAME``: a checkpoint's generation defaults (VAE, clip skip, sampler, CFG, negative prompt)."""

from __future__ import annotations

from typing import Optional

import typer

from sdhub.cli.app import app
from sdhub.cli.render import info, print_fields, print_json
from sdhub.cli.state import STATE


@app.command("set")
def set_command(
    ref: str = typer.Argument(..., help="The checkpoint: an id, path, name or hash."),
    vae: Optional[str] = typer.Option(None, "--vae", help="Preferred VAE: a VAE's path, name or hash, or None for "
                                      "the checkpoint's own (kept as A1111's preferred VAE in its .json)."),
    clip_skip: Optional[int] = typer.Option(None, "--clip-skip", help="Clip skip (2 for most anime models)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="A1111 sampler, such as 'DPM++ 2M' or "
                                          "'DPM++ 2M Karras'."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="A1111 schedule type for that sampler."),
    cfg: Optional[float] = typer.Option(None, "--cfg", help="CFG scale."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt (A1111's 'negative text')."),
    clear: list[str] = typer.Option([], "--clear", help="Forget a default: vae, clip-skip, sampler, schedule, cfg, "
                                    "negative (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the defaults as JSON."),
) -> None:
    """Set what a checkpoint generates with unless told otherwise: generate, smoke and test use it.

    Example: sdhub set anything-v5 --vae kl-f8-anime2 --clip-skip 2 --sampler "DPM++ 2M" --cfg 7
    """
    from sdhub.catalog.generation_defaults import defaults_rows
    from sdhub.generate.model_defaults import set_model_defaults

    update = set_model_defaults(STATE.open_home(), ref, vae=vae, clip_skip=clip_skip, sampler=sampler,
                                schedule=schedule, cfg_scale=cfg, negative=negative, clear=clear)
    for path in update.sidecars:
        info(f"wrote {path}")
    if as_json:
        print_json(update)
        return
    rows = defaults_rows(update.defaults)
    print_fields([("model", update.asset.name)] + (rows or [("defaults", "none (sdhub's own)")]))
