"""``sdhub clean``: remove what interrupted converts, prunes and downloads left in the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape

from sdhub.cli.app import app
from sdhub.cli.render import human_size, info, print_json, print_table
from sdhub.cli.state import STATE
from sdhub.errors import UsageError
from sdhub.text import printable


def leftovers_note(leftovers: list[dict[str, Any]]) -> str | None:
    """The line scan prints about leftovers (None when there are none): what, how big, and the fix."""
    from sdhub.ops.leftovers import RESUMABLE, STALE, Leftover, summarize

    if not leftovers:
        return None
    items = [Leftover(**item) for item in leftovers]
    fixes = []
    if any(item.state == STALE for item in items):
        fixes.append("`sdhub clean` removes the stale ones")
    if any(item.state == RESUMABLE for item in items):
        fixes.append("the same `sdhub get` resumes a download (`sdhub clean --partials` drops it)")
    return f"leftovers: {summarize(items, human_size)}" + (f"; {'; '.join(fixes)}" if fixes else "")


@app.command("clean")
def clean_command(
    folders: Optional[List[Path]] = typer.Argument(
        None, help="Folders to clean instead of the home's (each searched with its subfolders)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only list what would be removed."),
    partials: bool = typer.Option(False, "--partials",
                                  help="Also remove stopped downloads' .part files (they could be resumed)."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Remove temporary files left by interrupted converts, prunes and downloads (never a live one's).

    Only sdhub's own names (.sdhub-tmp-NAME.part, .sdhub-KEY.part) are touched, never a file in use.

    Example: sdhub clean --dry-run
    """
    from sdhub.ops.leftovers import clean_leftovers

    if folders:
        missing = [str(folder) for folder in folders if not folder.is_dir()]
        if missing:
            raise UsageError(f"not a folder: {', '.join(missing)}")
        report = clean_leftovers(folders, dry_run=dry_run, partials=partials)
    else:
        report = _clean_home(dry_run=dry_run, partials=partials)
    if json_output:
        print_json(report)
    else:
        _show(report)
    if report.failed:
        raise typer.Exit(1)


def _clean_home(*, dry_run: bool, partials: bool) -> Any:
    from sdhub.catalog import Catalog
    from sdhub.ops.leftovers import clean_leftovers

    home = STATE.open_home()
    if home.database_path.is_file():  # the catalog knows the extra folders a scan walks
        with Catalog(home) as catalog:
            return catalog.clean(dry_run=dry_run, partials=partials)
    return clean_leftovers([*home.folders.values(), home.downloads_dir, home.catalog_dir, home.outputs_dir],
                           dry_run=dry_run, partials=partials)


def _show(report: Any) -> None:
    from sdhub.ops.leftovers import IN_USE, RECENT, RESUMABLE, UNLOCKED_GRACE_SECONDS

    items = report.leftovers
    if not items:
        where = ", ".join(report.folders) if len(report.folders) <= 3 else f"{len(report.folders)} folders"
        info(escape(printable(f"no leftovers in {where}")))
        return
    print_table([[printable(item.path), human_size(item.size), item.kind, item.state, item.action] for item in items],
                ["path", "size", "kind", "state", "action"])
    done = [item for item in items if item.removed or item.action == "would remove"]
    verb = "would remove" if report.dry_run else "removed"
    info(f"{verb} {len(done)} of {len(items)} ({human_size(report.freed_bytes)})")
    resumable = [item for item in items if item.state == RESUMABLE and item.action == "kept"]
    if resumable:
        info(f"kept {len(resumable)} stopped download(s) ({human_size(sum(i.size for i in resumable))}): "
             "run the same `sdhub get` to resume, or `sdhub clean --partials` to remove them")
    busy = [item for item in items if item.state in (IN_USE, RECENT)]
    if busy:
        minutes = UNLOCKED_GRACE_SECONDS // 60
        info(f"left {len(busy)} alone: being written now (or changed in the last {minutes} minutes)")
    for item in report.failed:
        info(escape(printable(f"could not remove {item.path}: {item.action}")))
