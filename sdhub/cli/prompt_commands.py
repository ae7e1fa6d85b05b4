"""``sdhub prompt`` (how A1111 reads a prompt) and ``sdhub pnginfo`` (what made an image)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.text import Text

from sdhub.cli.app import app
from sdhub.cli.render import info, print_json, stdout
from sdhub.cli.state import STATE
from sdhub.errors import HomeError, MissingDependencyError, UsageError


def _tokenizer() -> tuple[Any, str]:
    """CLIP's tokenizer (Hugging Face cache or open_clip's vocabulary), else the shipped byte-level stand-in."""
    from transformers import CLIPTokenizer

    from sdhub.generate.clip_vocabulary import packaged_tokenizer_dir, vocabulary_source
    from sdhub.generate.model_configs import resolve_tokenizer_dir

    try:
        folder = resolve_tokenizer_dir("tokenizer")
        source = vocabulary_source() if folder == packaged_tokenizer_dir() else "the Hugging Face cache"
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=77)
        return tokenizer, f"CLIP (openai/clip-vit-large-patch14, {source})"
    except MissingDependencyError:
        from sdhub.generate.byte_tokenizer import write_tokenizer_files

        with tempfile.TemporaryDirectory(prefix="sdhub-tokenizer-") as folder:
            tokenizer = CLIPTokenizer.from_pretrained(str(write_tokenizer_files(Path(folder))), local_files_only=True)
        return tokenizer, "byte-level stand-in (CLIP's tokenizer is not at hand: `pip install --no-deps open_clip_torch`)"


def _home_folders() -> tuple[Path | None, Path | None]:
    try:
        home = STATE.open_home()
    except HomeError:
        return None, None
    return home.folder("embedding"), home.folder("lora")


def _model_note(ref: str) -> str:
    path = Path(ref).expanduser()
    if path.exists():
        from sdhub.ops.inspect import inspect_file

        detection = inspect_file(path, check_values=False).detection
        return f"{path.name}: {detection.architecture or detection.kind}"
    from sdhub.catalog import Catalog

    asset = Catalog(STATE.open_home()).find(ref)
    return f"{asset.name}: {asset.architecture or asset.kind}"


@app.command("prompt")
def prompt_command(
    text: str = typer.Argument(..., help="The prompt, in A1111 syntax."),
    negative: Optional[str] = typer.Option(None, "--negative", "-n", help="A negative prompt to show as well."),
    steps: int = typer.Option(20, "--steps", min=1, help="Sampling steps for the prompt-editing schedule."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="REF", help="Say which model the prompt is for."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (keys: attention, schedule, subprompts, ...)."),
) -> None:
    r"""Show how A1111 reads a prompt: emphasis, schedule, 75-token chunks, embeddings and LoRAs.

    Example: sdhub prompt "(masterpiece:1.2), \[day:night:0.5] <lora:add_detail:0.6>" --negative "bad-hands-5"
    """
    from sdhub.generate.embeddings import load_embeddings
    from sdhub.generate.prompt_report import analyse_prompt

    tokenizer, tokenizer_name = _tokenizer()
    embedding_folder, lora_folder = _home_folders()
    embeddings, skipped = load_embeddings(embedding_folder) if embedding_folder else ([], [])
    report = analyse_prompt(text, negative=negative, steps=steps, tokenizer=tokenizer, tokenizer_name=tokenizer_name,
                            embeddings=embeddings, lora_folder=lora_folder)
    report.notes += [f"embedding skipped: {reason}" for reason in skipped]
    if model:
        report.notes.append(f"model {_model_note(model)}")
    if as_json:
        print_json(report)
        return
    _render_report(report)


def _render_report(report) -> None:
    print_fields([("attention", _runs(report.attention)),
                  ("schedule", "; ".join(f"≤{until}: {text!r}" for until, text in report.schedule))])
    for index, sub in enumerate(report.subprompts):
        title = f"sub-prompt {index + 1} (weight {sub['weight']})" if len(report.subprompts) > 1 else "text"
        _render_texts(title, sub["schedule"])
    if report.negative is not None:
        _render_texts("negative", report.negative["schedule"])
    lora_lines = [f"{l['name']} te={l['te_multiplier']} unet={l['unet_multiplier']} "
                  f"{'found: ' + l['path'] if l['path'] else 'NOT FOUND in the loras folder'}" for l in report.loras]
    print_fields([("loras", "; ".join(lora_lines) or "none"),
                  ("embeddings", ", ".join(report.embeddings) or "none"),
                  ("tokenizer", report.tokenizer)])
    for note in report.notes:
        info(escape(note))


def print_fields(fields: list[tuple[str, Any]]) -> None:
    """``name  value`` lines; prompts are printed literally (brackets and ``:dog:`` are not markup)."""
    width = max((len(name) for name, _ in fields), default=0)
    for name, value in fields:
        line = Text(name.ljust(width), style="bold")
        line.append("  " + ("" if value is None else str(value)))
        stdout.print(line, highlight=False)


def _runs(runs: list[list]) -> str:
    return " ".join(f"[{text!r} {weight:g}]" for text, weight in runs)


def _render_texts(title: str, schedule: list[dict]) -> None:
    for entry in schedule:
        prefix = f"{title} (until step {entry['until_step']})" if len(schedule) > 1 else title
        line = Text(prefix, style="bold")
        line.append(f": {entry['text']!r} — {entry['token_count']} tokens")
        stdout.print(line, highlight=False)
        for number, chunk in enumerate(entry["chunks"], 1):
            stdout.print(Text(f"  chunk {number} ({chunk['token_count']}/75): {' '.join(chunk['tokens'])}"),
                         highlight=False)


@app.command("pnginfo")
def pnginfo_command(
    file: Path = typer.Argument(..., help="A PNG, JPEG or WebP image."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (source, prompt, negative_prompt, steps, ...)."),
) -> None:
    """Show the generation parameters stored in an image by A1111, ComfyUI or NovelAI.

    Example: sdhub pnginfo outputs/00001-1234.png --json
    """
    from sdhub.generate.pnginfo import read_image_metadata

    if not file.exists():
        raise UsageError(f"{file}: no such file")
    metadata = read_image_metadata(file)
    if as_json:
        print_json(metadata)
        return
    if metadata.source == "none":
        info(f"{file}: no generation metadata found")
        return
    print_fields([("source", metadata.source), ("prompt", metadata.prompt), ("negative", metadata.negative_prompt),
                  ("steps", metadata.steps), ("sampler", metadata.sampler), ("cfg scale", metadata.cfg_scale),
                  ("seed", metadata.seed), ("size", f"{metadata.width}x{metadata.height}"),
                  ("model", metadata.model), ("model hash", metadata.model_hash)])
    if metadata.source == "a1111":
        extra = {k: v for k, v in metadata.parameters.items()
                 if k not in ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Model hash")}
        if extra:
            print_fields(list(extra.items()))
