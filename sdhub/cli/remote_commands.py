"""Remote libraries: ``sdhub remote add/ls/rm``, ``sdhub push`` and ``sdhub pull``."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.markup import escape

from sdhub.cli.app import app
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import human_size, info, output_format, plain_text, print_json, print_table
from sdhub.cli.state import STATE

remote_app = typer.Typer(help="Name S3-compatible buckets that hold a shared library (credentials: AWS's usual).",
                         no_args_is_help=True)
app.add_typer(remote_app, name="remote")
JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON.")


@remote_app.command("add")
def remote_add_command(
    name: str = typer.Argument(..., help="A short name for the remote."),
    url: str = typer.Argument(..., help="s3://BUCKET/PREFIX"),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="The store's URL (R2, B2, MinIO...); AWS without."),
    profile: Optional[str] = typer.Option(None, "--profile", help="An AWS profile of ~/.aws/credentials."),
) -> None:
    """Remember a bucket as a remote of this home (no credentials are stored).

    Example: sdhub remote add studio s3://models/sdhub --endpoint https://minio.lan:9000
    """
    from sdhub.remote import add_remote

    remote = add_remote(STATE.open_home(must_exist=False), name, url, endpoint=endpoint, profile=profile)
    info(escape(plain_text(f"added remote {remote.name}: {remote.url}")))


@remote_app.command("ls")
def remote_ls_command(json_output: bool = JSON_OPTION) -> None:
    """List this home's remotes.

    Example: sdhub remote ls
    """
    from sdhub.remote import remotes

    found = remotes(STATE.open_home())
    if json_output:
        print_json(found)
        return
    print_table([[r.name, r.url, r.endpoint or "AWS", r.profile or ""] for r in found],
                ["name", "url", "endpoint", "profile"], fmt=output_format(None, False))


@remote_app.command("rm")
def remote_rm_command(name: str = typer.Argument(..., help="The remote to forget.")) -> None:
    """Forget a remote (the bucket is not touched).

    Example: sdhub remote rm studio
    """
    from sdhub.remote import remove_remote

    remote = remove_remote(STATE.open_home(), name)
    info(escape(plain_text(f"removed remote {remote.name} ({remote.url})")))


@app.command("push")
def push_command(
    refs: Optional[List[str]] = typer.Argument(None, help="Assets: names, files or hashes."),
    to: Optional[str] = typer.Option(None, "--remote", "--to", "-r", help="The remote (default: the home's only one)."),
    all_assets: bool = typer.Option(False, "--all", help="Every asset of the catalog."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Every asset of this kind."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Send assets to a remote: only blobs it lacks, resumable, with manifests and the index.

    Example: sdhub push --remote studio --kind lora
    """
    from sdhub.remote import push
    from sdhub.remote.settings import choose_remote

    home = STATE.open_home()
    with RichProgress() as progress:
        report = push(choose_remote(home, to), refs or [], home, all_assets=all_assets, kind=kind, progress=progress)
    if json_output:
        print_json(report)
        return
    for item in report.assets:
        what = "already there" if item["already_there"] else f"sent {human_size(item['bytes_sent'])}"
        info(escape(plain_text(f"{item['name']}: {what}")))
    for item in report.skipped:
        info(escape(plain_text(f"skipped {item['name']}: {item['reason']}")))
    info(f"pushed {len(report.assets)} asset(s), {human_size(report.bytes_sent)} sent in {report.seconds} s")


@app.command("pull")
def pull_command(
    refs: Optional[List[str]] = typer.Argument(None, help="Assets on the remote: names, file names or hashes."),
    source: Optional[str] = typer.Option(None, "--remote", "--from", "-r",
                                         help="The remote (default: the home's only one)."),
    all_assets: bool = typer.Option(False, "--all", help="Everything the remote holds."),
    list_file: Optional[str] = typer.Option(None, "--list", help="A file of references, one a line."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Bring assets from a remote into this home's folders, verified, catalogued with their metadata.

    Example: sdhub pull --remote studio tinymix_v1 ink-style
    """
    from sdhub.remote import pull
    from sdhub.remote.settings import choose_remote

    home = STATE.open_home()
    with RichProgress() as progress:
        report = pull(choose_remote(home, source), refs or [], home, all_assets=all_assets,
                      list_file=list_file, progress=progress)
    if json_output:
        print_json(report)
        return
    for item in report.assets:
        what = f"-> {item['path']}" if item["fetched"] else "present; metadata " + (
            ", ".join(item["fields_updated"]) or "up to date")
        info(escape(plain_text(f"{item['name']}: {what}")))
    info(f"pulled {len(report.assets)} asset(s), {human_size(report.bytes_received)} received in {report.seconds} s")
