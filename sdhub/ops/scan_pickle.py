"""``scan_pickle``: list what a pickle model file would import and do, and whether sdhub accepts it.

The listing comes from running the safe unpickler in recording mode (refused globals become
placeholders so the whole file is listed); the verdict from opening the file exactly as
``convert`` would. Nothing from the file is executed either way.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdhub.errors import (BadInputError, NotAModelError, SdhubError, UnsafeFileError, UnsupportedStructureError,
                          UsageError)
from sdhub.formats import open_model
from sdhub.formats.pickle_values import PickleReport, StorageRef
from sdhub.formats.regular_file import open_regular_file
from sdhub.formats.safe_unpickler import DEFAULT_LIMITS, SafeUnpickler
from sdhub.formats.torch_legacy import looks_like_legacy
from sdhub.formats.torch_zip import ZIP_MAGIC, read_data_pickle, read_zip


@dataclass
class ScanReport:
    """Globals (with sdhub's verdict on each), opcode counts, and the file's overall verdict."""

    path: str
    format: str
    verdict: str                                   # safe | refused | corrupt | not-a-model | unsupported
    reason: str = ""
    globals: dict[str, str] = field(default_factory=dict)
    opcodes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    tensors: int = 0
    placeholders: list[str] = field(default_factory=list)
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "verdict": self.verdict, "reason": self.reason,
                "globals": self.globals, "opcodes": dict(sorted(self.opcodes.items())),
                "problems": self.problems, "tensors": self.tensors, "placeholders": self.placeholders}


def _lenient_storage(pid: tuple) -> StorageRef:
    key = pid[2] if len(pid) > 2 and isinstance(pid[2], str) else "?"
    numel = pid[4] if len(pid) > 4 and type(pid[4]) is int and pid[4] >= 0 else 0
    return StorageRef(key, "U8", numel, untyped=True)


def _record(data: Any, start: int, end: int, source: str, merged: PickleReport, count: int) -> None:
    pos = start
    for _ in range(count):
        unpickler = SafeUnpickler(data, source, _lenient_storage, limits=DEFAULT_LIMITS, strict=False)
        try:
            _, pos = unpickler.load(pos, end)
        except SdhubError as error:
            merged.problems.append(error.message)
            pos = end
        finally:
            for name, verdict in unpickler.report.globals.items():
                merged.globals.setdefault(name, verdict)
            for name, n in unpickler.report.opcodes.items():
                merged.opcodes[name] = merged.opcodes.get(name, 0) + n
            merged.problems.extend(p for p in unpickler.report.problems if p not in merged.problems)
        if pos >= end:
            break


def scan_pickle(path: str | os.PathLike[str]) -> ScanReport:
    """List the globals and opcodes of ``path``'s pickle(s) and give sdhub's verdict on the file."""
    source = Path(path)
    listing = PickleReport()
    with open_regular_file(source) as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        head = os.pread(fd, 16, 0)
        if head[:4] == ZIP_MAGIC:
            fmt = "torch-zip"
            try:
                container = read_zip(fd, size, source.name)
                data = read_data_pickle(fd, container, DEFAULT_LIMITS.max_pickle_bytes)
                _record(data, 0, len(data), source.name, listing, 1)
            except SdhubError as error:
                listing.problems.append(error.message)
        elif looks_like_legacy(head) or head[:1] == b"\x80":
            fmt = "torch-legacy" if looks_like_legacy(head) else "pickle"
            if size:
                with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
                    _record(mapped, 0, size, source.name, listing, 5 if fmt == "torch-legacy" else 1)
        else:
            fmt = "other"

    report = ScanReport(str(source), fmt, "safe", globals=listing.globals, opcodes=listing.opcodes,
                        problems=listing.problems)
    try:
        with open_model(source) as model:
            report.format = model.format
            report.tensors = len(model.tensors)
            report.placeholders = model.report.placeholders
    except (UnsafeFileError, BadInputError, UsageError) as error:
        report.verdict = ("refused" if isinstance(error, UnsafeFileError) else "not-a-model"
                          if isinstance(error, NotAModelError) else "unsupported"
                          if isinstance(error, UnsupportedStructureError) else "corrupt")
        report.reason = error.message
        report.exit_code = error.exit_code
    return report
