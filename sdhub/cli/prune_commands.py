"""``sdhub prune``: cut a checkpoint down to the inference weights, in the precision asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import typer
from rich.markup import escape

from sdhub.cli.app import app
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import human_size, info, print_json
from sdhub.errors import UsageError
from sdhub.progress import reporting_stop

if TYPE_CHECKING:
    from sdhub.ops.prune import PruneReport


@app.command("prune")
def prune_command(
    paths: List[str] = typer.Argument(..., metavar="PATH [VAE_FILE]",
                                      help="The model file; with --vae bake, the VAE file follows it."),
    out: Optional[str] = typer.Option(None, "-o", "--out", metavar="OUT",
                                      help="Output .safetensors, or a folder for <name>-pruned.safetensors "
                                           "(default: beside PATH)."),
    ema: Optional[str] = typer.Option(None, "--ema", metavar="use|drop|keep",
                                      help="EMA weights: use them as the model's weights (default when present), "
                                           "drop them, or keep both."),
    dtype: str = typer.Option("fp16", "--dtype", metavar="fp16|bf16|fp32|fp8|keep",
                              help="Precision of floating tensors (integers are never cast); fp8 (e4m3fn) stores "
                                   "the diffusion model's matrices in fp8 and the rest (text encoders, VAE, biases, "
                                   "norms) in fp16, clamping values beyond ±448 and reporting them."),
    vae: str = typer.Option("keep", "--vae", metavar="keep|drop|bake",
                            help="Keep the baked-in VAE, drop it, or bake in VAE_FILE (--vae bake VAE_FILE; "
                                 "A1111 or diffusers layout)."),
    vae_dtype: str = typer.Option("same", "--vae-dtype", metavar="fp32|same",
                                  help="Keep the VAE in fp32, or give it the same precision as the rest."),
    fix_clip: bool = typer.Option(False, "--fix-clip", help="Repair broken CLIP position_ids (rewrite 0..76)."),
    keep_training_state: bool = typer.Option(False, "--keep-training-state",
                                             help="Keep training-only tensors (loss, discriminator) and counters."),
    force: bool = typer.Option(False, "--force", help="Clamp values beyond fp16's range instead of stopping."),
    allow_expansion: bool = typer.Option(
        False, "--allow-expansion",
        help="Accept tensors that describe far more than the file stores (stride-0 views, one storage under "
             "many names)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file (never the input)."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Write an inference-only .safetensors: EMA handled, training state dropped, precision cast.

    Example: sdhub prune models/v1-5-pruned.ckpt --ema use --dtype fp16 --vae bake models/vae/vae-ft-mse.safetensors

    Example: sdhub prune models/flux1-dev.safetensors --dtype fp8 -o models/flux1-dev-fp8.safetensors
    """
    with reporting_stop(lambda: "no output written"):  # the stop may come while the code loads
        from sdhub.ops.prune import PruneOptions, prune

    if vae == "bake":
        if len(paths) != 2:
            raise UsageError("--vae bake needs the VAE file after the model: sdhub prune MODEL --vae bake VAE_FILE")
        src, vae_file = paths
    else:
        if len(paths) != 1:
            raise UsageError(f"prune takes one model file (got {len(paths)}); a second file goes with --vae bake")
        src, vae_file = paths[0], None
    options = PruneOptions(ema=ema, dtype=dtype, vae=vae, vae_file=vae_file, vae_dtype=vae_dtype, fix_clip=fix_clip,
                           keep_training_state=keep_training_state, force=force, allow_expansion=allow_expansion)
    with RichProgress() as progress:
        report = prune(src, out, options, progress, overwrite=overwrite)
    if json_output:
        print_json(report)
        return
    for warning in report.warnings:
        info(f"warning: {escape(warning)}")
    if report.position_ids_fixed:
        info("repaired CLIP position_ids: " + ", ".join(report.position_ids_fixed))
    dropped = ", ".join(f"{count} {reason}" for reason, count in report.dropped.items())
    if report.training_entries_dropped:
        dropped = ", ".join(filter(None, [dropped, "training state (" + ", ".join(report.training_entries_dropped) + ")"]))
    info(escape(f"pruned {report.source} -> {report.output}"))
    parts = [f"{human_size(report.bytes_before)} -> {human_size(report.bytes_after)} "
             f"(saved {human_size(report.bytes_saved)})",
             # A LoRA or a checkpoint without EMA or VAE has nothing to report there.
             *([f"EMA {report.ema}"] if report.ema != "none" else []), _dtype_summary(report),
             *([f"VAE {report.vae}"] if report.vae != "none" else []), f"{report.tensors_written} tensors",
             *([f"dropped {dropped}"] if dropped else [])]
    info(escape("  " + "; ".join(parts)))


def _dtype_summary(report: PruneReport) -> str:
    """``fp16``, or for fp8 how many tensors went to fp8 and that the rest is 16 bit."""
    if report.fp8_clipping is None:
        return report.dtype
    fp8 = report.tensors_by_dtype.get("F8_E4M3", 0)
    clamped = report.fp8_clipping["total"]
    return f"fp8 ({fp8} diffusion-model tensors in fp8, the rest in 16 bit; {clamped} value(s) clamped)"
