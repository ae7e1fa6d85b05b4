"""``sdhub demo``: the whole workflow on a tiny model, in a fresh home."""

from __future__ import annotations

import typer

from sdhub.cli.app import app
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import info, print_json, stdout
from sdhub.cli.state import STATE
from sdhub.demo import DemoStep, run_demo


@app.command("demo")
def demo_command(
    json_output: bool = typer.Option(False, "--json", help="Print every step's data as JSON at the end."),
) -> None:
    """Build a tiny model and run the whole workflow on it: convert, inspect, prune, hash, catalog, generate.

    Runs offline in a fresh temporary home (or in --home). Example: sdhub demo
    """
    counter = {"n": 0}

    def show(step: DemoStep) -> None:
        counter["n"] += 1
        if json_output:
            info(f"[{counter['n']}] {step.title} ({step.seconds:.1f} s)")
            return
        stdout.print(f"\n[bold cyan]{counter['n']}. {step.title}[/bold cyan]  [dim]$ {step.command}[/dim]",
                     highlight=False)
        for line in step.lines:
            stdout.print(f"   {line}", highlight=False, markup=False)

    with RichProgress() as progress:
        result = run_demo(STATE.home, progress=progress, on_step=show)
    if json_output:
        print_json(result)
        return
    root = result.home.root
    stdout.print(f"\n[bold green]Done.[/bold green] The demo home is {root}", highlight=False)
    stdout.print("It keeps, for you to go on with:", highlight=False)
    for item in result.left_in_home:
        stdout.print(f"   {root / item}", highlight=False)
    stdout.print(f"Try: sdhub --home {root} ls", highlight=False)
