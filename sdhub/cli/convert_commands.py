"""``sdhub convert`` and ``sdhub scan-pickle``: pickles to safetensors, and what a pickle contains."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.markup import escape

from sdhub.cli.app import app
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import human_size, info, print_fields, print_json, print_table
from sdhub.progress import reporting_stop


@app.command("convert")
def convert_command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="Pickle files (.ckpt/.pt/.pth/.bin) or folders."),
    out: Optional[str] = typer.Option(None, "-o", "--out", metavar="OUT",
                                      help="Output file (one input) or folder (default: beside each input)."),
    dtype: str = typer.Option("keep", "--dtype", metavar="keep|fp16|bf16|fp32",
                              help="Store floating tensors in this precision (integers are never cast)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing .safetensors outputs."),
    verify: bool = typer.Option(False, "--verify", help="Re-read the output and compare every tensor with the source."),
    delete_original: bool = typer.Option(False, "--delete-original", help="Remove each source after it converted."),
    allow_expansion: bool = typer.Option(
        False, "--allow-expansion",
        help="Accept tensors that describe far more than the file stores (stride-0 views, one storage under "
             "many names); the output can be many times the input."),
    json_output: bool = typer.Option(False, "--json", help="Print the reports as JSON."),
) -> None:
    """Convert PyTorch pickles to .safetensors without running any code from them.

    Example: sdhub convert models/v1-5-pruned-emaonly.ckpt --dtype fp16 --verify
    """
    with reporting_stop(lambda: "no output written"):  # the stop may come while the code loads
        from sdhub.ops.convert import convert_paths

    with RichProgress() as progress:
        reports = convert_paths(paths, out, dtype=dtype, overwrite=overwrite, verify=verify,
                                delete_original=delete_original, progress=progress,
                                allow_expansion=allow_expansion)
    failed = [report for report in reports if report.status == "failed"]
    if json_output:
        print_json(reports)
    for report in [] if json_output else reports:
        if report.status != "converted":
            info(escape(f"{report.status} {report.source}: {report.reason}"))
            continue
        extra = f", left out {len(report.dropped)} entries that are not weights" if report.dropped else ""
        info(escape(f"converted {report.source} -> {report.output} ({report.tensors} tensors, "
                    f"{human_size(report.bytes_written)}{', verified' if report.verified else ''}{extra})"))
    if not reports and not json_output:
        info("no pickle files found")
    if failed:
        raise typer.Exit(max(report.exit_code for report in failed))


@app.command("scan-pickle")
def scan_pickle_command(
    path: str = typer.Argument(..., metavar="PATH", help="A .ckpt/.pt/.pth/.bin file."),
    json_output: bool = typer.Option(False, "--json", help="Print the scan as JSON."),
) -> None:
    """List the globals and opcodes a pickle uses and whether sdhub would accept it, without converting.

    Example: sdhub scan-pickle downloads/suspicious.ckpt --json
    """
    from sdhub.ops.scan_pickle import scan_pickle

    report = scan_pickle(path)
    if json_output:
        print_json(report)
    else:
        print_fields([("file", report.path), ("format", report.format), ("verdict", report.verdict),
                      ("reason", report.reason or None), ("tensors", report.tensors)])
        print_table(sorted(report.globals.items()), ["global", "sdhub"], title="globals")
        print_table(sorted(report.opcodes.items()), ["opcode", "count"], title="opcodes")
    if report.exit_code:
        raise typer.Exit(report.exit_code)
