"""The TUI is a front-end beside the CLI: it formats sizes with the shared base module, and never
imports the CLI (front-ends do not import each other; see the layers in DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import sdhub.tui
from sdhub.units import human_size

TUI_ROOT = Path(sdhub.tui.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_tui_module_imports_the_cli() -> None:
    offenders = {str(path.relative_to(TUI_ROOT)): sorted(m for m in imported_modules(path) if m.startswith("sdhub.cli"))
                 for path in TUI_ROOT.rglob("*.py")}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_sizes_read_the_same_in_the_cli_and_the_tui() -> None:
    from sdhub.cli.render import human_size as cli_human_size

    assert cli_human_size is human_size
    assert [human_size(n) for n in (None, 7_020, 2_132_625_408, 999)] == ["-", "7.0 KB", "2.1 GB", "999 B"]
