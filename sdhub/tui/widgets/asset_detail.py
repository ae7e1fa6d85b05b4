"""Everything the catalog knows about one asset, laid out for reading: the detail pane and the
details screen both show this widget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from sdhub.catalog.generation_defaults import GenerationDefaults, defaults_rows
from sdhub.catalog.records import Asset, AssetDetails
from sdhub.text import printable
from sdhub.tui.widgets.image_view import ImageView
from sdhub.units import human_size

_HTML_TAG = re.compile(r"<[^>]+>")
DESCRIPTION_LIMIT = 600


def _heading(text: Text, title: str) -> None:
    text.append(f"\n{title}\n", style="bold underline")


def _field(text: Text, name: str, value: Any, style: str = "") -> None:
    if value in (None, "", []):
        return
    text.append(f"{name}: ", style="bold")
    text.append(f"{value}\n", style=style)


def _base(asset: Asset) -> str:
    """The family, with the label a source gives it and whether only that label tells the family."""
    if asset.base_model_from == "label" and asset.base_label:
        return f"{asset.base_model} (from the label {asset.base_label})"
    return asset.base_text


def remote_summary(remote: dict[str, Any]) -> list[tuple[str, Any]]:
    """The fields of one remote-metadata entry worth showing (Civitai's as its version answer has them)."""
    ids = "/".join(str(remote.get(k)) for k in ("model_id", "version_id") if remote.get(k))
    data = remote.get("json") if isinstance(remote.get("json"), dict) else {}
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    creator = model.get("creator") if isinstance(model.get("creator"), dict) else {}
    return [("name", remote.get("name")), ("version", data.get("name")), ("type", model.get("type")),
            ("base model", data.get("baseModel")), ("creator", creator.get("username")),
            ("nsfw", "yes" if model.get("nsfw") else None), ("ids", ids), ("repo", remote.get("repo")),
            ("revision", remote.get("revision")), ("url", remote.get("url"))]


def _civitai_record(text: Text, details: AssetDetails) -> None:
    """Civitai's status, licence, file scans, the newer version and example prompts (server text escaped)."""
    record = details.civitai
    if not record:
        return
    status = record.get("status") or {}
    said = [word for word, on in (("taken down", status.get("taken_down")), ("archived", status.get("archived")),
                                  ("generation only", status.get("generation_only"))) if on]
    if status.get("early_access"):
        said.append(f"early access until {status.get('early_access_ends_at') or '?'}")
    newer = details.asset.newer_version
    if newer:
        _field(text, "newer version", printable(f"{newer.get('version_name')} ({newer.get('version_id')})"
                                                + (" in early access" if newer.get("early_access") else "")), "yellow")
    _field(text, "air", printable(record.get("air") or ""))
    _field(text, "civitai status", ", ".join(said), "yellow")
    licence = record.get("license") or {}
    _field(text, "licence", printable(", ".join(f"{k}={'/'.join(v) if isinstance(v, list) else v}"
                                                for k, v in licence.items())))
    file = record.get("file") or {}
    scan = file.get("scan") or {}
    _field(text, "file", printable(" ".join(str(file[k]) for k in ("format", "size", "fp") if file.get(k))))
    flagged = "danger" in (str(scan.get("pickle")).lower(), str(scan.get("virus")).lower())
    _field(text, "scans", printable(", ".join(f"{k} {scan[k]}" for k in ("pickle", "virus") if scan.get(k))),
           "red" if flagged else "")
    for example in record.get("example_prompts") or []:
        _heading(text, "Example prompt")
        text.append(printable(example.get("prompt") or "") + "\n")
        _field(text, "negative", printable(example.get("negativePrompt") or ""))
        _field(text, "settings", printable(", ".join(f"{k} {example[k]}" for k in ("sampler", "cfgScale", "steps", "seed")
                                                     if k in example)))


def component_names(inspect: dict[str, Any]) -> list[str]:
    """The parts the inspect report found in the file (unet, vae, text_encoder, ema...)."""
    components = inspect.get("components")
    if not isinstance(components, list):
        return []
    return [str(c["name"]) for c in components if isinstance(c, dict) and c.get("name")]


def _count(value: Any) -> str | None:
    return f"{value:,}" if isinstance(value, int) else None


def details_text(details: AssetDetails) -> Text:
    """The body of the detail pane (everything but the title and the picture)."""
    asset = details.asset
    text = Text()
    _field(text, "kind", asset.kind)
    _field(text, "base", _base(asset))
    _field(text, "architecture", asset.architecture)
    _field(text, "format", asset.format)
    _field(text, "dtype", asset.dtype)
    _field(text, "size", f"{human_size(asset.size)} ({asset.size:,} bytes)")
    _field(text, "components", ", ".join(component_names(details.inspect)))
    _field(text, "parameters", _count(details.inspect.get("parameter_count")))
    _field(text, "status", asset.status, "green" if asset.status == "pass" else "yellow")
    _field(text, "added", (asset.added_at or "")[:16].replace("T", " "))

    if asset.trigger_words:
        _heading(text, "Trigger words (w copies)")
        text.append(", ".join(asset.trigger_words) + "\n", style="bold cyan")
    if asset.tags:
        _field(text, "tags", ", ".join(asset.tags))

    defaults = defaults_rows(GenerationDefaults.of(asset))
    if defaults:
        _heading(text, "Generation defaults (sdhub set)")
        for label, value in defaults:
            _field(text, label, value)

    if asset.problems:
        _heading(text, "Problems")
        for problem in asset.problems:
            text.append(f"• {problem}\n", style="red")

    _heading(text, "Files")
    for record in asset.files:
        text.append(f"{record.path}", style="dim strike" if record.missing else "")
        text.append("  (missing)\n" if record.missing else "\n", style="yellow")
    for member in details.folder_files:  # a pipeline folder's own files
        text.append(f"  {member['path']}  {human_size(member['size'])}\n", style="dim")

    _heading(text, "Hashes (y copies SHA-256)")
    _field(text, "sha256", asset.sha256)
    for scheme, value in sorted(details.hashes.items()):
        if scheme != "sha256":
            _field(text, scheme, value)

    for remote in details.remote:
        _heading(text, "Civitai" if remote.get("source") == "civitai" else "Hugging Face"
                 if remote.get("source") == "huggingface" else str(remote.get("source", "Remote")))
        for name, value in remote_summary(remote):
            _field(text, name, value)
    _civitai_record(text, details)
    if asset.description:
        description = _HTML_TAG.sub("", asset.description).strip()
        if len(description) > DESCRIPTION_LIMIT:
            description = description[:DESCRIPTION_LIMIT] + "…"
        _heading(text, "Description")
        text.append(description + "\n")

    if details.tests:
        _heading(text, "Last test")
        last = details.tests[0]
        _field(text, "verdict", last.get("verdict"), "green" if last.get("verdict") == "pass" else "yellow")
        for reason in (last.get("details") or {}).get("reasons") or []:
            text.append(f"  {reason}\n")
        _field(text, "test", last.get("kind"))
        _field(text, "at", last.get("at"))
        _field(text, "image", last.get("image_path"))

    if details.ancestors or details.derived:
        _heading(text, "Lineage")
        for link in details.ancestors:
            _field(text, f"from ({link.relation or 'source'})", link.name or link.sha256[:12])
        for link in details.derived:
            _field(text, f"made ({link.relation or 'copy'})", link.name or link.sha256[:12])
    return text


def preview_path(details: AssetDetails, catalog_dir: Path, highest_nsfw: int | None = None) -> Path | None:
    """The first preview image that exists on disk (relative paths are under the catalog folder); one
    rated above ``highest_nsfw`` (the user's preview_nsfw setting by default) is hidden."""
    if highest_nsfw is None:
        highest_nsfw = _highest_nsfw()
    for preview in details.previews:
        raw = preview.get("path")
        level = preview.get("nsfw_level")
        if not raw or (isinstance(level, int) and level > highest_nsfw):
            continue
        path = Path(raw)
        if not path.is_absolute():
            path = catalog_dir / path
        if path.is_file():
            return path
    return None


def _highest_nsfw() -> int:
    """The user's preview_nsfw setting; safe for work when the settings file cannot be read."""
    from sdhub.config import DEFAULT_PREVIEW_NSFW, NSFW_LEVELS, preview_nsfw_max
    from sdhub.errors import SdhubError

    try:
        return preview_nsfw_max()
    except SdhubError:
        return NSFW_LEVELS[DEFAULT_PREVIEW_NSFW]


class AssetDetail(VerticalScroll):
    """Title, preview picture and the fields of one asset; ``show(None)`` shows a hint."""

    DEFAULT_CSS = """
    AssetDetail { padding: 0 1; }
    AssetDetail #detail-title { text-style: bold; }
    AssetDetail ImageView { height: 10; margin: 1 0 0 0; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.details: AssetDetails | None = None

    def compose(self) -> ComposeResult:
        yield Static("Nothing selected.", id="detail-title")
        yield ImageView(id="detail-preview")
        yield Static("", id="detail-body")

    def show(self, details: AssetDetails | None, catalog_dir: Path) -> None:
        """Display ``details`` (None: nothing highlighted)."""
        self.details = details
        title = self.query_one("#detail-title", Static)
        body = self.query_one("#detail-body", Static)
        image = self.query_one(ImageView)
        if details is None:
            title.update("Nothing selected.")
            body.update("")
            image.show(None)
            image.display = False
            return
        heading = Text(details.asset.name, style="bold")
        if details.asset.missing:
            heading.append("  (missing)", style="yellow")
        title.update(heading)
        picture = preview_path(details, catalog_dir)
        image.show(picture)
        image.display = picture is not None
        body.update(details_text(details))
        self.scroll_home(animate=False)
