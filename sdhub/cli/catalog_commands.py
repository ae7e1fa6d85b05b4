"""Library commands over the catalog: scan, ls, search, show, dupes, rm, tag, roots, export-sidecars."""

from __future__ import annotations

import contextlib
import shlex
from typing import TYPE_CHECKING, Iterator, List, Optional

import typer

from rich.markup import escape

from sdhub.cli.app import app
from sdhub.cli.clean_command import leftovers_note
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import (
    format_option,
    human_size,
    info,
    output_format,
    plain_text,
    print_fields,
    print_json,
    print_table,
)
from sdhub.cli.state import STATE
from sdhub.errors import HomeError, UsageError
from sdhub.models.kinds import KINDS

if TYPE_CHECKING:
    from sdhub.catalog import Asset, AssetDetails, Catalog
    from sdhub.config import Home

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON.")
KIND_HELP = f"Only this kind: {', '.join(KINDS)}."
BASE_HELP = ("Only this base model, in either vocabulary, any case: a family (sd1, sd2, sdxl, sd3, flux1; sdxl "
             "includes Pony and Illustrious), an architecture (sd2-v, flux1-dev) or a label (Pony, \"SD 1.5\").")


@contextlib.contextmanager
def _catalog(*, create: bool = False) -> Iterator[Catalog]:
    """The home's catalog; only commands that write (``create``) may make one in a folder without it."""
    from sdhub.catalog import Catalog

    home = STATE.open_home()
    if not create and not home.is_set_up:
        raise HomeError(f"{home.root} (from {home.source}) is not an sdhub home yet: it has no catalog/ folder; "
                        f"`sdhub init {shlex.quote(str(home.root))}` sets it up, `sdhub scan` indexes its folders")
    catalog = Catalog(home)
    try:
        yield catalog
    finally:
        catalog.close()


def _copies(asset: Asset) -> str:
    present = len(asset.present_files)
    return "missing" if present == 0 else str(present)


def _asset_rows(assets: list[Asset]) -> list[list[object]]:
    return [[a.id, a.name, a.file_name, a.kind, a.base_text, human_size(a.size),
             a.dtype or "", a.condition, _copies(a), a.autov2] for a in assets]


_ASSET_COLUMNS = ["id", "name", "file", "kind", "base", "size", "dtype", "status", "copies", "autov2"]


def _problem(asset: Asset) -> str:
    """What is wrong with an asset, in a line."""
    if asset.defect or not asset.files or not asset.missing:
        if asset.problems:
            return "; ".join(asset.problems)
        return f"the latest test's verdict: {asset.status}" if asset.status else ""
    return "every copy is gone from disk, last at " + asset.files[0].path


def _problem_rows(assets: list[Asset]) -> list[list[object]]:
    return [[a.id, a.name, a.file_name, a.kind, a.condition, _problem(a)] for a in assets]


_PROBLEM_COLUMNS = ["id", "name", "file", "kind", "status", "problem"]


def _print_assets(assets: list[Asset], fmt: str, *, problems: bool = False) -> None:
    if fmt == "json":
        print_json(assets)
    elif problems:
        print_table(_problem_rows(assets), _PROBLEM_COLUMNS, fmt=fmt)
    else:
        print_table(_asset_rows(assets), _ASSET_COLUMNS, fmt=fmt)


@app.command("scan")
def scan_command(
    full: bool = typer.Option(False, "--full", help="Read every file again, even unchanged ones."),
    check_values: bool = typer.Option(False, "--check-values",
                                      help="Also look for NaN/Inf weights and broken CLIP position ids (slower)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Index the home's model folders (and added roots); only new or changed files are read.

    Example: sdhub scan
    """
    with _catalog(create=True) as catalog, RichProgress() as progress:
        report = catalog.scan(progress, full=full, check_values=check_values)
    if json_output:
        print_json(report)
        return
    print_fields([
        ("files seen", report.files_seen), ("unchanged", report.files_unchanged),
        ("read", f"{report.files_read} ({human_size(report.bytes_read)})"), ("new files", report.files_added),
        ("changed", report.files_changed), ("moved", report.files_moved), ("missing", report.files_missing),
        ("new assets", report.assets_added), ("broken", len(report.broken)), ("seconds", report.seconds),
    ])
    for error in report.errors:
        info(f"skipped {error['path']}: {error['error']}")
    _print_broken(report.broken)
    note = leftovers_note(report.leftovers)
    if note:
        info(escape(note))


#: At most this many broken files are named after a scan; `sdhub ls --problems` lists them all.
SHOWN_BROKEN = 10


def _print_broken(broken: list[dict[str, str]]) -> None:
    for item in broken[:SHOWN_BROKEN]:
        info(escape(plain_text(f"{item['defect']}: {item['path']}: {item['reason']}")))
    if broken:
        more = f" ({len(broken) - SHOWN_BROKEN} more)" if len(broken) > SHOWN_BROKEN else ""
        info(f"{len(broken)} file(s) are not usable models{more}: `sdhub ls --problems` lists them")


@app.command("ls")
def ls_command(
    kind: Optional[str] = typer.Option(None, "--kind", help=KIND_HELP),
    base: Optional[str] = typer.Option(None, "--base", help=BASE_HELP),
    sort: str = typer.Option("name", "--sort", help="Sort by name, size or added (newest first)."),
    problems: bool = typer.Option(False, "--problems",
                                  help="Only what is wrong: broken or unsafe files, missing files, failed tests, "
                                       "NaN weights and other problems found, each with what is wrong."),
    remote: Optional[str] = typer.Option(None, "--remote", help="List what this remote holds instead (its index)."),
    json_output: bool = JSON_OPTION,
    table_format: Optional[str] = format_option(),
) -> None:
    """List the catalogued assets (piped: one tab-separated line per asset).

    Example: sdhub ls --kind lora --base sdxl --sort size   (--base pony: only what Civitai labels Pony)
    """
    fmt = output_format(table_format, json_output)
    if remote:
        _print_remote_assets(remote, fmt, kind=kind)
        return
    with _catalog() as catalog:
        assets = catalog.list_assets(kind=kind, base=base, sort=sort, problems=problems)
        home = catalog.home
    _print_assets(assets, fmt, problems=problems)
    if fmt != "json":
        if problems and not assets:
            info("no problems known; `sdhub scan --check-values` also looks for NaN weights")
        elif not assets:
            info(escape(_empty_listing_note(home, filtered=bool(kind or base))))


def _empty_listing_note(home: Home, *, filtered: bool) -> str:
    """Say which home an empty listing came from, and how to choose another."""
    what = "no assets match" if filtered else "no assets catalogued"
    return (f"{what} in the home {home.root} (from {home.source}); `sdhub scan` indexes its folders; "
            "choose another home with --home DIR, SDHUB_HOME=DIR or `sdhub init DIR --default`")


@app.command("search")
def search_command(
    text: str = typer.Argument(..., help="Words to look for in names, tags, trigger words, descriptions and "
                                         "base models."),
    kind: Optional[str] = typer.Option(None, "--kind", help=KIND_HELP),
    base: Optional[str] = typer.Option(None, "--base", help=BASE_HELP),
    remote: Optional[str] = typer.Option(None, "--remote", help="Search this remote's index instead."),
    json_output: bool = JSON_OPTION,
    table_format: Optional[str] = format_option(),
) -> None:
    """Full-text search of the catalog (every word must match, as a prefix).

    Example: sdhub search "anime style" --base illustrious
    """
    fmt = output_format(table_format, json_output)
    if remote:
        _print_remote_assets(remote, fmt, kind=kind, text=text)
        return
    with _catalog() as catalog:
        assets = catalog.search(text, kind=kind, base=base)
    _print_assets(assets, fmt)


def _print_remote_assets(remote: str, fmt: str, *, kind: str | None = None, text: str | None = None) -> None:
    """A remote's assets from its index, each marked "both" when this home has it too."""
    from sdhub.remote import remote_assets

    found = remote_assets(remote, STATE.open_home(must_exist=False), kind=kind, text=text)
    if fmt == "json":
        print_json(found)
        return
    print_table([[a.name, a.file_name, a.kind, a.base, human_size(a.size), a.status or "", a.sha256[:10],
                  "both" if a.here else "remote"] for a in found],
                ["name", "file", "kind", "base", "size", "status", "autov2", "where"], fmt=fmt)


def _family_text(asset: Asset) -> str | None:
    """The family, and whether the tensors prove it or only the label names it."""
    if asset.base_model and asset.base_model_from == "label":
        return f"{asset.base_model} (from the label; the tensors do not tell)"
    return asset.base_model


def _label_text(asset: Asset) -> str | None:
    """The label and who gave it ("Pony (civitai)")."""
    if not asset.base_label:
        return None
    return f"{asset.base_label} ({asset.base_label_from})" if asset.base_label_from else asset.base_label


def _detail_fields(details: AssetDetails) -> list[tuple[str, object]]:
    from sdhub.catalog.generation_defaults import GenerationDefaults, defaults_rows

    asset = details.asset
    fields: list[tuple[str, object]] = [
        ("id", asset.id), ("name", asset.name), ("kind", asset.kind), ("architecture", asset.architecture),
        ("base model", _family_text(asset)), ("base label", _label_text(asset)),
        ("format", asset.format), ("dtype", asset.dtype),
        ("size", f"{human_size(asset.size)} ({asset.size} bytes)"), ("status", asset.condition),
    ]
    fields += [(f"hash {scheme}", value) for scheme, value in details.hashes.items()]
    fields += [("trigger words", ", ".join(asset.trigger_words)), ("tags", ", ".join(asset.tags)),
               ("nsfw", asset.nsfw), ("description", asset.description), ("notes", asset.notes)]
    fields += [(f"default {label}", value) for label, value in defaults_rows(GenerationDefaults.of(asset))]
    for record in asset.files:
        fields.append(("file", record.path + ("  (missing)" if record.missing else "")))
    for member in details.folder_files:
        fields.append(("  contains", f"{member['path']}  {human_size(member['size'])}"))
    for remote in details.remote:
        via = f"  (inherited from {remote['inherited_from'][:10]})" if remote["inherited_from"] else ""
        fields.append((remote["source"], (remote["url"] or remote["repo"] or "") + via))
    fields += _civitai_fields(details.civitai, asset)
    for link in details.ancestors:
        fields.append(("made from", f"{link.name or '(not in catalog)'} [{link.sha256[:10]}] {link.relation or ''}"))
    for link in details.derived:
        fields.append(("derived", f"{link.name or '(not in catalog)'} [{link.sha256[:10]}] {link.relation or ''}"))
    for test in details.tests[:3]:
        fields.append(("test", f"{test['at']} {test['kind']}: {test['verdict']}"))
    for problem in asset.problems:
        fields.append(("problem", problem))
    fields.append(("added", asset.added_at))
    return [(name, value) for name, value in fields if value not in (None, "")]


def _civitai_fields(record: dict[str, object] | None, asset: Asset) -> list[tuple[str, object]]:
    """What the Civitai record says, for ``show``: names, AIR, creator, licence, status, file, example prompts."""
    if not record:
        return []
    licence = record.get("license") or {}
    file = record.get("file") or {}
    scan = file.get("scan") or {}
    status = record.get("status") or {}
    said = [word for word, on in (("taken down", status.get("taken_down")), ("archived", status.get("archived")),
                                  ("generation only", status.get("generation_only"))) if on]
    if status.get("early_access"):
        said.append(f"early access until {status.get('early_access_ends_at') or '?'}")
    fields: list[tuple[str, object]] = [
        ("civitai model", f"{record.get('model_name')} ({record.get('model_id')})"),
        ("civitai version", f"{record.get('version_name')} ({record.get('version_id')})"),
        ("air", record.get("air")), ("creator", record.get("creator")),
        ("civitai tags", ", ".join(map(str, record.get("tags") or []))),
        ("licence", ", ".join(f"{k}={'/'.join(v) if isinstance(v, list) else v}" for k, v in licence.items())),
        ("civitai status", ", ".join(said) or (status.get("availability") or "published")),
        ("civitai file", " ".join(f"{k}={file.get(k)}" for k in ("name", "format", "size", "fp") if file.get(k))),
        ("civitai scans", ", ".join(f"{k} {scan.get(k)}" for k in ("pickle", "virus") if scan.get(k))
         + (f" ({scan['scanned_at']})" if scan.get("scanned_at") else "")),
    ]
    if asset.newer_version:
        newer = asset.newer_version
        fields.append(("newer version", f"{newer.get('version_name')} ({newer.get('version_id')})"
                       + (" in early access" if newer.get("early_access") else "")))
    for example in record.get("example_prompts") or []:
        settings = ", ".join(f"{k} {example[k]}" for k in ("sampler", "cfgScale", "steps", "seed") if k in example)
        fields.append(("example prompt", f"{example.get('prompt')}"
                       + (f"  | negative: {example['negativePrompt']}" if example.get("negativePrompt") else "")
                       + (f"  | {settings}" if settings else "")))
    return fields


@app.command("show")
def show_command(
    ref: str = typer.Argument(..., help="An id, path, name (or its start) or any hash (or its start)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show everything known about one asset, including where each copy lives.

    Example: sdhub show 925997e9
    """
    with _catalog() as catalog:
        details = catalog.show(ref)
    if json_output:
        print_json(details)
    else:
        print_fields(_detail_fields(details))


@app.command("dupes")
def dupes_command(
    link: Optional[str] = typer.Option(None, "--link", metavar="hard",
                                       help="Replace extra copies with hard links (same filesystem)."),
    delete: bool = typer.Option(False, "--delete", help="Delete every copy but one."),
    json_output: bool = JSON_OPTION,
    table_format: Optional[str] = format_option(),
) -> None:
    """List files stored more than once and the space they waste; optionally free it.

    Example: sdhub dupes --link hard
    """
    if link is not None and link != "hard":
        raise UsageError("--link takes 'hard' (symbolic links are not offered: moving the target breaks them)")
    if link and delete:
        raise UsageError("choose one of --link hard and --delete")
    with _catalog() as catalog:
        if link or delete:
            result = catalog.link_duplicates() if link else catalog.delete_duplicates()
            if json_output:
                print_json(result)
                return
            for change in result.changed:
                info(f"{'linked' if link else 'deleted'} {change['path']} (kept {change['kept']})")
            for skipped in result.skipped:
                info(f"skipped {skipped['path']}: {skipped['reason']}")
            print_fields([("changed", len(result.changed)), ("freed", human_size(result.bytes_freed))])
            return
        report = catalog.duplicates()
    fmt = output_format(table_format, json_output)
    if fmt == "json":
        print_json(report)
        return
    rows = [[g.asset.id, g.asset.name, human_size(g.asset.size), len(g.asset.present_files),
             human_size(g.wasted_bytes), "\n".join(f.path for f in g.asset.present_files)] for g in report.groups]
    if fmt != "table":  # one record per line: a line per path
        rows = [[*row[:5], path] for row in rows for path in row[5].split("\n")]
    print_table(rows, ["id", "name", "size", "copies", "wasted", "paths" if fmt == "table" else "path"], fmt=fmt)
    info(f"{len(report.groups)} duplicated assets waste {human_size(report.wasted_bytes)}")


@app.command("rm")
def rm_command(
    ref: str = typer.Argument(..., help="The asset to forget (id, path, name or hash)."),
    files: bool = typer.Option(False, "--files", help="Also delete its files from disk (asks first)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --files: delete without asking (for scripts)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Remove an asset from the catalog (and with --files, from disk, after asking).

    Example: sdhub rm 12 --files
    """
    with _catalog() as catalog:
        if files and not yes:
            _confirm_deletion(catalog.find(ref))
        report = catalog.remove(ref, files=files)
    if json_output:
        print_json(report)
        return
    info(f"removed {report.asset.name} (id {report.asset.id}) from the catalog")
    for path in report.files_deleted:
        info(f"deleted {path}")


def _confirm_deletion(asset: "Asset") -> None:
    """Ask before ``rm --files`` deletes anything; without a terminal to ask on, refuse (--yes skips this)."""
    import sys

    paths = [record.path for record in asset.present_files]
    if not paths:
        return
    what = (f"{len(paths)} file{'s' if len(paths) > 1 else ''} of {asset.name} "
            f"({human_size(asset.size)}{' each' if len(paths) > 1 else ''})")
    if not sys.stdin.isatty():
        raise UsageError(f"rm --files would delete {what} from disk; add --yes to confirm "
                         "(there is no terminal to ask on)")
    for path in paths:
        info(f"  {escape(path)}")
    typer.echo(f"Delete {what} from disk? [y/N] ", err=True, nl=False)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        info("nothing removed")
        raise typer.Exit(1)


@app.command("tag")
def tag_command(
    ref: str = typer.Argument(..., help="The asset to tag (id, path, name or hash)."),
    tags: List[str] = typer.Argument(..., help="Tags to add; -TAG removes TAG."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Add (or with -TAG remove) tags on an asset.

    Example: sdhub tag 12 favourite anime -old
    """
    with _catalog() as catalog:
        asset = catalog.tag(ref, tags)
    if json_output:
        print_json(asset)
    else:
        print_fields([("name", asset.name), ("tags", ", ".join(asset.tags))])


@app.command("roots")
def roots_command(
    action: Optional[str] = typer.Argument(None, metavar="[add|remove]", help="add or remove a folder."),
    path: Optional[str] = typer.Argument(None, help="The folder to add or remove."),
    kind: Optional[str] = typer.Option(None, "--kind", help="With add: the kind of files in this folder."),
    json_output: bool = JSON_OPTION,
    table_format: Optional[str] = format_option(),
) -> None:
    """List the folders a scan walks, or add/remove an extra one.

    Example: sdhub roots add ~/Downloads/models
    """
    with _catalog(create=action == "add") as catalog:
        if action is None:
            roots = catalog.roots()
        elif action in ("add", "remove"):
            if path is None:
                raise UsageError(f"roots {action} needs a folder")
            root = catalog.add_root(path, kind) if action == "add" else catalog.remove_root(path)
            if json_output:
                print_json(root)
            else:
                info(f"{'added' if action == 'add' else 'removed'} root {root.path}")
            return
        else:
            raise UsageError(f"unknown roots action {action!r}; use add or remove")
    fmt = output_format(table_format, json_output)
    if fmt == "json":
        print_json(roots)
    else:
        print_table([[r.path, r.kind or "", r.source, "yes" if r.exists else "no"] for r in roots],
                    ["path", "kind", "from", "exists"], fmt=fmt)


@app.command("export-sidecars")
def export_sidecars_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Write nothing; print what each file would become as a diff."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write A1111 .json, Civitai Helper .civitai.info, StabilityMatrix .cm-info.json and preview sidecars.

    Values a sidecar already holds are kept (empty keys are filled); unchanged files are not rewritten.

    Example: sdhub export-sidecars --dry-run
    """
    import sys

    from sdhub.text import printable

    with _catalog() as catalog, RichProgress() as progress:
        report = catalog.export_sidecars(progress, dry_run=dry_run)
    if json_output:
        print_json(report)
        return
    if dry_run:
        for change in report.changes:
            # The diff is data: to stdout, each line with the control characters of the files escaped.
            sys.stdout.write("".join(printable(line) + "\n" for line in change["diff"].splitlines()))
        sys.stdout.flush()
        info(f"{len(report.changes)} sidecars would change; nothing written (--dry-run)")
        return
    for path in report.written:
        info(f"wrote {path}")
    print_fields([("model files", report.models), ("sidecars written", len(report.written))])
