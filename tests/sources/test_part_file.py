"""The .part file holds exactly what was written, wherever and however it was written."""

from __future__ import annotations

import random
from pathlib import Path

from sdhub.sources.part_file import DIRECT_ALIGNMENT, PartFile, new_buffer


def test_writes_at_any_offset_and_alignment_land_where_they_were_written(tmp_path: Path) -> None:
    data = random.Random(0).randbytes(5 * 1024 * 1024 + 1234)
    # Whole aligned blocks (direct where the file system allows), unaligned heads and tails,
    # pieces from ordinary bytes objects (memory direct I/O refuses), written out of order.
    cuts = [0, 3, DIRECT_ALIGNMENT, 3 * DIRECT_ALIGNMENT + 5, 1 << 20, (1 << 20) + 700, 3 << 20, len(data)]
    pieces = list(zip(cuts, cuts[1:]))
    random.Random(1).shuffle(pieces)
    part = PartFile(tmp_path / "file.part")
    for number, (start, end) in enumerate(pieces):
        if number % 2:
            part.write(memoryview(data[start:end]), start)
        else:
            buffer = new_buffer(end - start)
            buffer[:] = data[start:end]
            part.write(memoryview(buffer), start)
    part.sync()
    part.close()
    assert (tmp_path / "file.part").read_bytes() == data


def test_truncating_forgets_everything_written(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "file.part")
    buffer = new_buffer(2 * DIRECT_ALIGNMENT)
    buffer[:] = b"x" * len(buffer)
    part.write(memoryview(buffer), 0)
    part.truncate()
    part.write(memoryview(b"fresh"), 0)
    part.close()
    assert (tmp_path / "file.part").read_bytes() == b"fresh"
