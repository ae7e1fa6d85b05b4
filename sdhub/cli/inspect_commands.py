"""``sdhub inspect`` and ``sdhub hash``: what a model file is, and every hash it is known by."""

from __future__ import annotations

import json
from typing import List

import typer
from rich.markup import escape
from rich.text import Text

from sdhub.cli.app import app
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import human_size, info, print_fields, print_json, print_table
from sdhub.errors import Interrupted, SdhubError
from sdhub.progress import interrupted

_METADATA_WIDTH = 160
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


@app.command("inspect")
def inspect_command(
    path: str = typer.Argument(..., metavar="PATH", help="A .safetensors, .ckpt/.pt/.bin file or a diffusers folder."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON (schema: docs/inspect-json.md)."),
    quick: bool = typer.Option(False, "--quick", help="Names and shapes only: skip the NaN/Inf/overflow checks."),
    pickle: bool = typer.Option(False, "--pickle", help="Also list the globals and opcodes of a pickle file."),
) -> None:
    """Say what a model file is (kind, architecture, components) and what is wrong with it.

    Example: sdhub inspect models/v1-5-pruned.ckpt --json
    """
    from sdhub.ops.inspect import inspect_file

    with RichProgress() as progress:
        report = inspect_file(path, check_values=not quick, progress=progress)
    if json_output:
        print_json(report)
        return
    data = report.to_dict()
    _print_summary(data)
    print_table(
        ([c["name"], c["tensors"], f"{c['parameters']:,}", human_size(c["bytes"]),
          ", ".join(f"{t} x{n}" for t, n in c["dtypes"].items()),
          "-" if c["nan_values"] is None else c["nan_values"], "-" if c["inf_values"] is None else c["inf_values"]]
         for c in data["components"]),
        ["component", "tensors", "parameters", "size", "dtypes", "NaN", "Inf"], title="components")
    if data["lora"]:
        print_fields([(key, _short(value)) for key, value in data["lora"].items()])
    if data["problems"]:
        print_table(([Text(p["severity"], style=_SEVERITY_STYLE.get(p["severity"], "")), p["code"], p["message"]]
                     for p in data["problems"]), ["severity", "problem", "details"], title="problems")
    else:
        info("no problems found" + ("" if data["values_checked"] else " (values not checked: --quick)"))
    if data["metadata"] and not data["lora"]:
        print_fields([(key, _short(value)) for key, value in sorted(data["metadata"].items())])
    if pickle and data["reader"]:
        print_table(sorted(data["reader"]["globals"].items()), ["global", "sdhub"], title="pickle globals")


def _print_summary(data: dict) -> None:
    architecture = data["architecture"] or "-"
    if data["variant"]:
        architecture += f" ({data['variant']})"
    details = data.get("details") or {}
    if data["kind"] == "upscaler":
        architecture = f"{data['variant'] or '-'}, " + (f"x{details['scale']}" if details.get("scale") else "scale unknown")
    prune = data["prune"]
    saving = "- (nothing to prune in an embedding)" if data["kind"] == "embedding" else "- (prune works on single files)"
    if data.get("quantisation"):
        saving = "- (quantised: sdhub does not rewrite it)"
    if prune:
        saving = (f"{human_size(prune['bytes_saved']['keep'])} keeping types, "
                  f"{human_size(prune['bytes_saved']['fp16'])} as fp16")
    fields = [
        ("file", data["path"]),
        ("format", f"{data['format']}, {human_size(data['size'])}"),
        ("kind", data["kind"] + (f" ({data['lora_flavour']})" if data["lora_flavour"] else "")),
        ("architecture", architecture),
        ("base model", data["base_model"]),
        ("dtype", data["dtype"]),
        ("tensors", f"{data['tensor_count']:,} ({data['parameter_count']:,} parameters)"),
        ("EMA weights", "yes" if data["ema"] else "no"),
        ("training state", ", ".join(data["training_entries"]) if data["training_state"] else "no"),
        ("prune would save", saving),
        ("evidence", "; ".join(data["evidence"])),
    ]
    if data["embedding_vectors"]:
        fields.insert(5, ("vectors", data["embedding_vectors"]))
    if details:
        fields.insert(fields.index(("base model", data["base_model"])) + 1,
                      ("details", ", ".join(f"{key} {_short(value)}" for key, value in details.items())))
    if data.get("quantisation"):
        fields.insert(fields.index(("dtype", data["dtype"])) + 1, ("quantisation", data["quantisation"]["summary"]))
    print_fields(fields)


def _short(value: object) -> str:
    """One line of a metadata value (print_fields escapes it for rich)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= _METADATA_WIDTH else text[:_METADATA_WIDTH - 1] + "…"
    return text


@app.command("hash")
def hash_command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="Model files to hash."),
    json_output: bool = typer.Option(False, "--json", help="Print the hashes as JSON."),
    components: bool = typer.Option(True, "--components/--no-components",
                                    help="Also hash each component (UNet, VAE, text encoders) of checkpoints and VAEs."),
    all_hashes: bool = typer.Option(False, "--all",
                                    help="Also take AutoV3/addnet of every .safetensors, not only of LoRAs "
                                         "(a second SHA-256: about 1.3x the time on two cores)."),
) -> None:
    """Compute SHA-256, AutoV1/V2, CRC32, BLAKE3, a LoRA's AutoV3 and per-component content hashes, all in one read.

    Example: sdhub hash models/*.safetensors --json
    """
    from sdhub.ops.hashing import hash_model

    results, failures = [], []
    with RichProgress() as progress:
        for path in paths:
            try:
                results.append(hash_model(path, components=components, all_hashes=all_hashes, progress=progress))
            except (KeyboardInterrupt, Interrupted) as stop:
                raise interrupted(stop, f"{len(results)} of {len(paths)} files hashed, nothing printed") from None
            except SdhubError as error:  # one missing or unreadable file does not stop the others
                failures.append(error)
                info(f"sdhub: error: {escape(str(error))}")
    if json_output:
        print_json(results)
    else:
        _print_hashes(results, all_hashes)
    for result in results:
        if result.not_a_model:
            info(f"file hashes only, not read as a model: {escape(result.not_a_model)}")
    if failures:
        if len(paths) > 1:
            info(f"{len(failures)} of {len(paths)} files not hashed")
        raise typer.Exit(max(error.exit_code for error in failures))


def _print_hashes(results: list, all_hashes: bool) -> None:
    for result in results:
        hashes = result.file
        if hashes.addnet_hash:
            autov3 = f"{hashes.autov3}  ({hashes.addnet_hash})"
        elif all_hashes or not hashes.path.lower().endswith(".safetensors"):
            autov3 = "- (not safetensors)"
        else:
            autov3 = "- (taken for LoRAs; --all takes it for every file)"
        fields = [
            ("file", hashes.path), ("size", human_size(hashes.size)), ("sha256", hashes.sha256),
            ("autov2 (A1111 hash)", hashes.autov2), ("legacy model hash", hashes.legacy_model_hash),
            ("autov1 (Civitai)", hashes.autov1 or "- (files under 2 MiB have none)"),
            ("autov3 / addnet", autov3),
            ("crc32 (Civitai order)", hashes.crc32), ("crc32 (zlib)", hashes.crc32_zlib), ("blake3", hashes.blake3),
        ]
        fields += [(f"{name} content", digest) for name, digest in (result.components or {}).items()]
        print_fields(fields)
