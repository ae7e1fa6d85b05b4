"""``sdhub get`` and the ``sdhub civitai`` group: search, info, sync, login."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Optional

import typer

from sdhub.cli.app import app
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import format_option, human_size, info, output_format, print_fields, print_json, print_table
from sdhub.cli.state import STATE
from sdhub.errors import NotFoundError, SdhubError, UsageError

civitai_app = typer.Typer(help="Search Civitai, look models up, and fill in the catalog from Civitai.",
                          no_args_is_help=True)
app.add_typer(civitai_app, name="civitai")


@app.command("get")
def get_command(
    refs: List[str] = typer.Argument(..., metavar="REF...",
                                     help="Civitai URL or AIR, Hugging Face URL or ORG/REPO/PATH, or a plain URL "
                                          "(with --from-png: images)."),
    kind: Optional[str] = typer.Option(
        None, "--kind", help="What the file is: checkpoint, lora, vae, controlnet, upscaler... or other "
                             "(default: detected, else the source's type; unknown ones are kept in downloads/)."),
    version: Optional[str] = typer.Option(None, "--version", help="Civitai version id or name (default: newest)."),
    format: Optional[str] = typer.Option(None, "--format", help="Civitai file format: safetensors, ckpt, gguf..."),
    fp: Optional[str] = typer.Option(None, "--fp", help="Civitai file precision: fp16, fp32, bf16..."),
    size: Optional[str] = typer.Option(None, "--size", help="Civitai file size: full or pruned."),
    file_type: Optional[str] = typer.Option(None, "--type", help="Civitai file type: Model, VAE, Pruned Model..."),
    to: Optional[Path] = typer.Option(None, "--to", metavar="FOLDER", help="Put the file here instead."),
    connections: Optional[int] = typer.Option(
        None, "--connections", min=1, max=16,
        help="At most this many parallel connections (default: added while they help a slow server that "
             "allows ranges, up to 8); 1 keeps one."),
    include: List[str] = typer.Option([], "--include", metavar="PATTERN",
                                      help="For a whole Hugging Face repo: only files matching (repeatable; '*' for all). "
                                           "Without it a diffusers pipeline repo brings only what the pipeline loads."),
    no_sidecars: bool = typer.Option(False, "--no-sidecars", help="Do not write .civitai.info / .preview.png."),
    keep_pickle: bool = typer.Option(False, "--keep-pickle", help="Keep a .ckpt/.pt beside its safetensors copy."),
    update: bool = typer.Option(False, "--update",
                                help="REF names catalogued assets: fetch the newest version of each one's Civitai "
                                     "model (the old file stays; see `sdhub outdated`)."),
    replace: bool = typer.Option(False, "--replace", help="With --update: delete the old version's files."),
    from_png: bool = typer.Option(False, "--from-png",
                                  help="REF... are images: fetch every model their metadata names (A1111 infotext, "
                                       "Civitai resources, ComfyUI loaders) that the library lacks."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --from-png: only say what would be fetched."),
    prefer: List[str] = typer.Option([], "--prefer", metavar="WISH",
                                     help="Put a wish before the file rule: full, fp32, ckpt, pruned, fp16, "
                                          "safetensors... (repeatable)."),
    file_name: Optional[str] = typer.Option(None, "--file", metavar="NAME", help="Take exactly this file."),
    list_files: bool = typer.Option(False, "--list",
                                    help="Only list the candidate files, their sizes and the one the rule picks."),
    take_all: bool = typer.Option(False, "--all", help="A Civitai collection or search page: get every model listed."),
    pick: Optional[str] = typer.Option(None, "--pick", metavar="N,M",
                                       help="A Civitai collection or search page: get these (numbers from "
                                            "`sdhub civitai browse`)."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="With --all/--pick: how many models to list."),
    nsfw: Optional[bool] = typer.Option(None, "--nsfw/--sfw", help="With --all/--pick: include (exclude) NSFW models."),
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Download models into the library: verified, in the right folder, catalogued.

    Example: sdhub get https://civitai.com/models/4201 --format safetensors --fp fp16
    Example: sdhub get hf:SruNya/Astra_by_SruNya --list
    Example: sdhub get https://civitai.com/collections/42742 --pick 1,3
    Example: sdhub get --from-png 00012-1234.png --dry-run
    """
    from sdhub import GetOptions, get
    from sdhub import update as update_asset

    if replace and not update:
        raise UsageError("--replace goes with --update")
    if dry_run and not from_png:
        raise UsageError("--dry-run goes with --from-png")
    home = STATE.open_home()
    options = GetOptions(kind=kind, version=version, format=format, fp=fp, size=size, file_type=file_type,
                         to=to, connections=connections, sidecars=not no_sidecars, keep_pickle=keep_pickle,
                         include=list(include), prefer=list(prefer), file_name=file_name)
    if list_files:
        _list_candidates(refs, options, json_output)
        return
    if take_all or pick is not None:
        _get_from_listing(home, refs, options, take_all=take_all, pick=pick, limit=limit, nsfw=nsfw,
                          json_output=json_output)
        return
    if from_png:
        if update or kind or version or file_type or include:
            raise UsageError("--from-png takes the models the images name: not with --update, --kind, --version, "
                             "--type or --include")
        _get_from_png(home, refs, options, dry_run=dry_run, json_output=json_output)
        return
    results, failures = [], []
    with RichProgress() as progress:
        for ref in refs:
            try:
                if update:
                    updated = update_asset(ref, home, replace=replace, options=options, progress=progress)
                    result = updated.new
                    for path in updated.files_deleted:
                        info(f"deleted the old version {path}")
                    if not updated.replaced:
                        info(f"kept the old version {', '.join(updated.old['paths']) or updated.old['name']}")
                else:
                    result = get(ref, home, options=options, progress=progress)
            except SdhubError as error:
                if len(refs) == 1:
                    raise
                failures.append((ref, error))
                info(f"sdhub: error: {ref}: {error}")
                continue
            results.append(result)
            for warning in result.warnings:
                info(f"warning: {warning}")
            verb = "already in the library" if result.already_present else "saved"
            info(f"{verb}: {result.path} ({result.kind}, {human_size(result.size)})")
    if json_output:
        print_json({"results": results, "failed": [{"ref": r, "error": str(e)} for r, e in failures]})
    if failures:
        raise SdhubError(f"{len(failures)} of {len(refs)} downloads failed",
                         exit_code=max(e.exit_code for _, e in failures))


def _list_candidates(refs: List[str], options, json_output: bool) -> None:
    """``get --list``: per reference, a table of its candidate files, which one the rule picks and why."""
    from rich.markup import escape

    from sdhub import file_candidates

    listings = [file_candidates(ref, options=options) for ref in refs]
    if json_output:
        print_json(listings)
        return
    for listing in listings:
        info(f"[bold]{escape(listing.what)}[/bold]" + (f": {escape(listing.note)}" if listing.note else ""))
        for choice in listing.choices:
            print_table([("*" if row["chosen"] else "", row["name"], human_size(row["size"]), row["format"],
                          row["prune"] or "?", row["precision"] or "?", "EMA-only" if row["ema_only"] else "",
                          row["why"]) for row in choice.rows()],
                        ["pick", "file", "size", "format", "pruned/full", "precision", "", "why"])


def _get_from_listing(home, refs: List[str], options, *, take_all: bool, pick: Optional[str], limit: int,
                      nsfw: Optional[bool], json_output: bool) -> None:
    """``get URL --all`` / ``--pick 1,3``: the models of a Civitai collection or search page, each through get."""
    from rich.markup import escape

    from sdhub import get_from_listing
    from sdhub.sources.get_listing import parse_pick

    if len(refs) != 1:
        raise UsageError("--all and --pick take one collection or search page URL")
    if take_all and pick is not None:
        raise UsageError("--all or --pick, not both")
    with RichProgress() as progress:
        report = get_from_listing(refs[0], home, pick=parse_pick(pick) if pick else None, everything=take_all,
                                  limit=limit, nsfw=nsfw, options=options, progress=progress)
    for note in report.listing.notes:
        info(f"note: {escape(note)}")
    for result in report.results:
        for warning in result.warnings:
            info(f"warning: {escape(warning)}")
        verb = "already in the library" if result.already_present else "saved"
        info(f"{verb}: {escape(str(result.path))} ({result.kind}, {human_size(result.size)})")
    for number, ref, error in report.failed:
        info(f"sdhub: error: #{number} {escape(ref)}: {escape(str(error))}")
    if json_output:
        print_json(report)
    if report.failed:
        raise SdhubError(f"{len(report.failed)} of {len(report.failed) + len(report.results)} downloads failed",
                         exit_code=max(e.exit_code for _, _, e in report.failed))


def _get_from_png(home, images: List[str], options, *, dry_run: bool, json_output: bool) -> None:
    """``get --from-png``: a table of what each image names and what became of it."""
    from rich.markup import escape

    from sdhub import get_from_images
    from sdhub.sources.from_image import FAILED, FETCHED, NOT_FOUND, PRESENT, WOULD_FETCH
    from sdhub.text import printable

    with RichProgress() as progress:
        report = get_from_images(images, home, dry_run=dry_run, options=options, progress=progress)
    if len(images) == 1 and report.errors:
        raise report.errors[0][1]
    if json_output:
        print_json(report)
    else:
        rows = [((Path(r.image).name,) if len(images) > 1 else ()) + (
            r.resource.kind, r.resource.label(), r.status, str(r.path) if r.path else r.reason or "")
            for r in report.resources]
        print_table(rows, (["image"] if len(images) > 1 else []) + ["kind", "model", "status", "path or why"])
    for image, error in report.errors:
        info(f"sdhub: error: {escape(printable(error))}")
    counts = {status: report.count(status) for status in (PRESENT, FETCHED, WOULD_FETCH, NOT_FOUND, FAILED)}
    info(", ".join(f"{count} {status}" for status, count in counts.items() if count) or "no models named")
    missing = counts[NOT_FOUND] + counts[FAILED]
    if missing or report.errors:
        unread = f"; {len(report.errors)} of {len(images)} images not read" if report.errors else ""
        raise SdhubError(f"{missing} of {len(report.resources)} models not found or not fetched{unread}",
                         exit_code=max([1] + [e.exit_code for _, e in report.errors]))


@app.command("outdated")
def outdated_command(
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    table_format: Optional[str] = format_option(),
) -> None:
    """List assets whose Civitai model has a newer version (one in early access is listed as such).

    Example: sdhub outdated   then   sdhub get --update NAME
    """
    from sdhub import outdated

    fmt = output_format(table_format, json_output)
    home = STATE.open_home()
    with RichProgress() as progress:
        report = outdated(home, progress=progress)
    if fmt == "json":
        print_json(report)
        return
    rows = []
    for entry in report.outdated:
        newer = f"{entry.newer_version_name} ({entry.newer_version_id})"
        if entry.early_access:
            newer += f" early access until {entry.early_access_ends_at or '?'}"
        ready = "" if entry.downloadable_version_id is None else \
            f"{entry.downloadable_version_name} ({entry.downloadable_version_id})"
        rows.append((entry.id, entry.name, f"{entry.version_name} ({entry.version_id})", newer, ready))
    print_table(rows, ["id", "name", "has", "newest on Civitai", "downloadable now"], fmt=fmt)
    for error in report.errors:
        info(f"error: Civitai model {error['model_id']}: {error['error']}")
    info(f"{report.models_checked} Civitai models checked, {len(report.outdated)} assets have a newer version"
         + ("; `sdhub get --update NAME` fetches one" if report.outdated else ""))


@civitai_app.command("search")
def search_command(
    query: Optional[str] = typer.Argument(None, help="Words to search for (omit to list)."),
    types: List[str] = typer.Option([], "--type", help="Model type: Checkpoint, LORA, TextualInversion, VAE..."),
    base: List[str] = typer.Option([], "--base", help="Base model: 'SD 1.5', 'SDXL 1.0', Pony..."),
    sort: Optional[str] = typer.Option(None, "--sort", help="'Highest Rated', 'Most Downloaded' or 'Newest'."),
    nsfw: Optional[bool] = typer.Option(None, "--nsfw/--sfw", help="Include (or exclude) NSFW models."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many models to list."),
    json_output: bool = typer.Option(False, "--json", help="Print the Civitai model objects as JSON."),
    table_format: Optional[str] = format_option(),
) -> None:
    """Search Civitai's models (piped: one tab-separated line per model).

    Example: sdhub civitai search "pixel art" --type LORA --base "SDXL 1.0" --limit 5
    """
    from sdhub.sources.civitai import CivitaiClient

    fmt = output_format(table_format, json_output)
    client = CivitaiClient()
    try:
        models = client.search(query, types=types, base_models=base, sort=sort, nsfw=nsfw, limit=limit)
    finally:
        client.close()
    if fmt == "json":
        print_json(models)
        return
    rows = []
    for model in models:
        newest = (model.get("modelVersions") or [{}])[0]
        stats = model.get("stats") or {}
        rows.append((model.get("id"), model.get("name"), model.get("type"), newest.get("baseModel"),
                     (model.get("creator") or {}).get("username"), stats.get("downloadCount"),
                     f"urn:air:civitai:{model.get('id')}@{newest.get('id')}" if newest.get("id") else ""))
    print_table(rows, ["id", "name", "type", "base", "creator", "downloads", "get with"], fmt=fmt)
    if not models:
        info("no models found")


@civitai_app.command("browse")
def browse_command(
    url: str = typer.Argument(..., help="A Civitai collection, search page (/search/models?...) or /models?... URL."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many models to list."),
    nsfw: Optional[bool] = typer.Option(None, "--nsfw/--sfw", help="Include (or exclude) NSFW models."),
    json_output: bool = typer.Option(False, "--json", help="Print the listing as JSON."),
    table_format: Optional[str] = format_option(),
) -> None:
    """List what a Civitai collection or search page holds; `sdhub get URL --pick 1,3` fetches from it.

    Example: sdhub civitai browse https://civitai.com/collections/42742
    """
    from rich.markup import escape

    from sdhub import civitai_browse
    from sdhub.text import printable

    fmt = output_format(table_format, json_output)
    listing = civitai_browse(url, limit=limit, nsfw=nsfw)
    if fmt == "json":
        print_json(listing)
        return
    rows = [(item.number, item.name, item.type, item.base_model, item.downloads,
             f"{item.rating:.1f}" if item.rating is not None else
             (f"{item.thumbs_up} up" if item.thumbs_up is not None else None),
             item.nsfw_level, human_size(item.file_size) if item.file_size is not None else None, item.ref)
            for item in listing.items]
    print_table(rows, ["#", "name", "type", "base", "downloads", "rating", "nsfw", "size", "get with"],
                title=escape(printable(listing.title)), fmt=fmt)
    for note in listing.notes:
        info(f"note: {escape(note)}")
    info(f"{len(listing.items)} models" + ("; `sdhub get URL --pick 1,3` or `--all` fetches them" if listing.items else ""))


_HASH = re.compile(r"^[0-9A-Fa-f]{8,64}$")


@civitai_app.command("info")
def info_command(
    ref: str = typer.Argument(..., help="A Civitai URL or AIR, a file hash, a model file, or a catalogued model."),
    json_output: bool = typer.Option(False, "--json", help="Print the Civitai data as JSON."),
) -> None:
    """Show what Civitai knows about a model, a version or a file.

    Example: sdhub civitai info urn:air:sd1:checkpoint:civitai:4201@130072
    """
    from sdhub.sources.civitai import CivitaiClient, describe_file
    from sdhub.sources.placing import sha256_file
    from sdhub.sources.refs import CivitaiRef, parse_ref

    client = CivitaiClient()
    try:
        if Path(ref).is_file():
            hashes = _catalog_hashes(ref)
            if not hashes:
                info(f"hashing {ref}...")
                hashes = [sha256_file(Path(ref))]
            data = client.by_any_hash(hashes)[1]
        elif _HASH.match(ref):
            data = client.by_any_hash(_catalog_hashes(ref, quiet=True) or [ref])[1]
        else:
            try:
                parsed = parse_ref(ref)
            except UsageError:
                parsed = None
            if isinstance(parsed, CivitaiRef):
                data = client.model_version(parsed.version_id) if parsed.version_id else client.model(parsed.model_id)
            else:
                hashes = _catalog_hashes(ref)
                if not hashes:
                    raise UsageError(f"{ref} is not a Civitai reference, a hash, a file or a catalogued model")
                data = client.by_any_hash(hashes)[1]
    finally:
        client.close()
    if json_output:
        print_json(data)
        return
    versions = data.get("modelVersions") if "modelVersions" in data else [data]
    model = data if "modelVersions" in data else (data.get("model") or {})
    print_fields([("model", f"{model.get('name')} ({data.get('id') if 'modelVersions' in data else data.get('modelId')})"),
                  ("type", model.get("type")), ("creator", (data.get("creator") or {}).get("username")),
                  ("tags", ", ".join(map(str, data.get("tags") or [])))])
    rows = []
    for version in versions:
        for file in version.get("files") or []:
            d = describe_file(file)
            rows.append((version.get("id"), version.get("name"), version.get("baseModel"), d["name"], d["type"],
                         d["format"], d["fp"], d["size"], human_size((d["size_kb"] or 0) * 1024),
                         "yes" if d["primary"] else ""))
    print_table(rows, ["version", "name", "base", "file", "type", "format", "fp", "size", "bytes", "primary"])


def _catalog_hashes(ref: str, *, quiet: bool = False) -> list[str]:
    """The hashes Civitai may know a catalogued asset by (its own, then its origins'), or [] when the
    catalog does not hold ``ref``; a file converted or pruned here is looked up by its original's."""
    from sdhub.catalog import Catalog

    try:
        home = STATE.open_home()
    except UsageError:  # no home here: a file or hash is looked up as it is
        return []
    if not home.database_path.exists():
        return []
    with Catalog(home) as catalog:
        try:
            asset = catalog.find(ref)
        except (NotFoundError, UsageError):
            return []
        hashes = catalog.origin_hashes(asset.sha256)
    if len(hashes) > 1 and not quiet:
        info(f"{asset.name} was made from another file; Civitai is asked by that file's hash too")
    return hashes


@civitai_app.command("sync")
def sync_command(
    no_sidecars: bool = typer.Option(False, "--no-sidecars", help="Do not write .civitai.info / .preview.png."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Look up every catalogued file without Civitai data by its hash, and fill it in.

    Example: sdhub civitai sync --json
    """
    from sdhub import civitai_sync

    home = STATE.open_home()
    with RichProgress() as progress:
        report = civitai_sync(home, sidecars=not no_sidecars, progress=progress)
    if json_output:
        print_json(report)
        return
    info(f"checked {report.checked}: {len(report.matched)} found on Civitai, {len(report.not_found)} not there, "
         f"{len(report.errors)} failed")
    print_table([(m["name"], m["model"], m["version"], m["version_id"]) for m in report.matched],
                ["file", "Civitai model", "version", "version id"])
    for error in report.errors:
        info(f"error: {error['sha256'][:12]}: {error['error']}")


@civitai_app.command("login")
def login_command(
    token_stdin: bool = typer.Option(False, "--token-stdin", help="Read the token from standard input."),
) -> None:
    """Store a Civitai API token in sdhub's settings file (readable only by you).

    Example: echo "$TOKEN" | sdhub civitai login --token-stdin
    """
    from sdhub.config import write_config

    if token_stdin:
        token = sys.stdin.readline().strip()
    else:
        token = typer.prompt("Civitai API token (from https://civitai.com/user/account)", hide_input=True).strip()
    if not token or any(c.isspace() for c in token):
        raise UsageError("that does not look like a Civitai API token")
    path = write_config({"civitai_token": token})
    info(f"token stored in {path}")
