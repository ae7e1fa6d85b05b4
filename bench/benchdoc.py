"""Shared by the bench scripts: the "met" cell of a results table, and rewriting a script's own
section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(name: str, text: str, doc: Path = DOC) -> None:
    """Replace the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (appended if absent)."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    current = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in current and end in current:
        before, rest = current.split(begin, 1)
        _, after = rest.split(end, 1)
        updated = before + block + after
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    temp = doc.with_name(f".{doc.name}.{os.getpid()}.tmp")
    temp.write_text(updated, encoding="utf-8")
    os.replace(temp, doc)


def cpu_model() -> str:
    """The processor's model name as the kernel reports it (figures differ between CPU makers)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One phrase naming the machine a benchmark ran on: CPU model, core count, Python."""
    return f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"


def file_system(path: Path) -> str:
    """The type of the file system holding ``path`` (ext4, xfs, overlay...), from /proc/mounts."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and str(path.resolve()).startswith(fields[1]) and len(fields[1]) > len(best):
                    best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def met(ok: bool) -> str:
    """The "met" cell of a results table: whether the target was reached (a miss stands out in bold)."""
    return "yes" if ok else "**no**"
