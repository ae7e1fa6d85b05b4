"""Hostile files whose cost is not bounded by their size end quickly, in one line, for every command.

Each file is built here byte by byte: a copying callable applied over and over to one shared
value, tuple keys hashed over and over, containers shared exponentially, stride-0 views and
one storage under thousands of names. Every command that reads them (convert, scan-pickle,
inspect, hash, prune) must stop within 2 s of CPU and 256 MB over an idle process that has
already imported torch, with one line and exit code 2 (hash: the plain file hashes), and
leave no output behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torch_files import enc, glob, tensor_expr, torch_zip

MIB = 1024 * 1024
CPU_LIMIT_S = 2.0
MEMORY_LIMIT_MB = 256


def _zip_with_prelude(path: Path, prelude: bytes, storages: dict[str, bytes] | None = None,
                      body: bytes | None = None) -> Path:
    """A torch zip whose pickle runs ``prelude`` (values built and popped) before a one-tensor state dict."""
    state = body if body is not None else b"}(" + enc("weight") + tensor_expr().data + b"u"
    return torch_zip(path, b"\x80\x03" + prelude + state + b".", storages)


def _repeat_call(setup: bytes, call: bytes, times: int = 16_000) -> bytes:
    """``setup`` leaves memo 0 (the shared value) and memo 1 (the callable); ``call`` uses them."""
    return setup + (call + b"0") * times


def codecs_encode_bomb(path: Path) -> Path:
    setup = enc("a" * MIB) + b"q\x000" + glob("_codecs", "encode") + b"q\x010" + enc("latin1") + b"q\x020"
    return _zip_with_prelude(path, _repeat_call(setup, b"h\x01(h\x00h\x02tR"))


def bytearray_bomb(path: Path) -> Path:
    setup = enc(b"b" * MIB) + b"q\x000" + glob("__builtin__", "bytearray") + b"q\x010"
    return _zip_with_prelude(path, _repeat_call(setup, b"h\x01h\x00\x85R"))


def set_bomb(path: Path) -> Path:
    items = b"](" + b"".join(enc(i) for i in range(100_000)) + b"e"
    setup = items + b"q\x000" + glob("__builtin__", "set") + b"q\x010"
    return _zip_with_prelude(path, _repeat_call(setup, b"h\x01h\x00\x85R"))


def ordered_dict_bomb(path: Path) -> Path:
    pairs = enc(("k", 1)) + b"q\x03" + b"](" + b"h\x03" * 100_000 + b"e"
    setup = pairs + b"q\x000" + glob("collections", "OrderedDict") + b"q\x010"
    return _zip_with_prelude(path, b"N0" + _repeat_call(setup, b"h\x01h\x00\x85R"))


def size_bomb(path: Path) -> Path:
    setup = b"(" + b"".join(enc(i) for i in range(100_000)) + b"tq\x000" + glob("torch", "Size") + b"q\x010"
    return _zip_with_prelude(path, _repeat_call(setup, b"h\x01h\x00\x85R"))


def tuple_key_bomb(path: Path) -> Path:
    """One 9,000-int tuple as the key of 100,000 SETITEMs (tuples do not cache their hash)."""
    key = b"(" + b"".join(enc(i) for i in range(9_000)) + b"tq\x00"
    items = b"}(" + b"h\x00K\x01" * 100_000 + b"u0"
    return _zip_with_prelude(path, key + b"0" + items)


def shared_list_bomb(path: Path) -> Path:
    """Lists shared 40 levels deep, a tensor at the bottom: 2**40 paths to name."""
    body = b"](" + tensor_expr().data + b"eq\x000"
    for level in range(1, 41):
        body += b"](h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"eq" + bytes([level]) + b"0"
    return _zip_with_prelude(path, body, body=b"}(" + enc("layers") + b"h\x28u")


def wide_shared_dict_bomb(path: Path) -> Path:
    """One dict of 2,000 tensors named under 2,000 keys of one dict: 4 million names from a small file."""
    inner = b"}(" + b"".join(enc(f"w{i}") + b"h\x00" for i in range(2_000)) + b"uq\x01"
    outer = b"}(" + b"".join(enc(f"block{i}") + b"h\x01" for i in range(2_000)) + b"u"
    return _zip_with_prelude(path, tensor_expr().data + b"q\x000" + inner + b"0", body=outer)


def _one_view(path: Path, name: str, numel: int, size: tuple, stride: tuple,
              storage: tuple[str, str] = ("torch", "FloatStorage"), itemsize: int = 4) -> Path:
    tensor = tensor_expr("0", numel, size=size, stride=stride, storage=storage)
    return torch_zip(path, b"\x80\x02}(" + enc(name) + tensor.data + b"u.", {"0": b"\x01" * (numel * itemsize)})


def stride0_gib(path: Path) -> Path:
    return _one_view(path, "weight", 1, (2**28,), (0,))


def stride0_huge(path: Path) -> Path:
    return _one_view(path, "weight", 1, (2**40,), (0,))


def stride0_position_ids(path: Path) -> Path:
    return _one_view(path, "cond_stage_model.transformer.text_model.embeddings.position_ids", 77,
                     (1, 2**28), (0, 0), ("torch", "LongStorage"), 8)


def overlapping_view(path: Path) -> Path:
    """Strides that walk back over the same elements: 2**15 x 2**12 elements over 2**16 stored."""
    return _one_view(path, "weight", 2**16, (2**15, 2**12), (1, 1))


def shared_storage_2049(path: Path) -> Path:
    """One 1 MiB storage named by 2,049 keys: 2 GiB described by a 1.1 MB file."""
    first = tensor_expr("0", MIB // 4, size=(MIB // 4,), stride=(1,)).data
    items = enc("w0") + first + b"q\x00" + b"".join(enc(f"w{i}") + b"h\x00" for i in range(1, 2049))
    return torch_zip(path, b"\x80\x02}(" + items + b"u.", {"0": b"\x00" * MIB})


BOMBS = {
    "codecs_encode": (codecs_encode_bomb, "building its values"),
    "bytearray": (bytearray_bomb, "building its values"),
    "set": (set_bomb, "building its values"),
    "ordered_dict": (ordered_dict_bomb, "building its values"),
    "torch_size": (size_bomb, "building its values"),
    "tuple_key": (tuple_key_bomb, "hashing its dict keys"),
    "shared_lists": (shared_list_bomb, "naming its tensors"),
    "wide_shared_dict": (wide_shared_dict_bomb, "naming its tensors"),
    "stride0_gib": (stride0_gib, "repeats its storage's elements"),
    "stride0_2e40": (stride0_huge, "repeats its storage's elements"),
    "stride0_position_ids": (stride0_position_ids, "repeats its storage's elements"),
    "overlapping_view": (overlapping_view, "repeats its storage's elements"),
    "shared_storage_2049": (shared_storage_2049, "more than 4 x the file"),
}

COMMANDS = ("convert", "scan-pickle", "inspect", "hash", "prune")

# Runs every (file, command) pair in one process that has already imported what the commands
# import, measuring each with getrusage (CPU) and the kernel's peak-RSS mark, reset before each run.
_PROBE = textwrap.dedent("""
    import contextlib, io, json, resource, sys, time
    import numpy, torch, xxhash  # the idle process: what any command may import
    import sdhub.cli.app as cli
    import sdhub.ops.convert, sdhub.ops.hashing, sdhub.ops.inspect, sdhub.ops.prune, sdhub.ops.scan_pickle

    def cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    jobs = json.loads(sys.stdin.read())
    results = []
    for argv in jobs:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the peak-RSS mark
        idle, start, t0 = status("VmRSS"), cpu(), time.time()
        out, err, code = io.StringIO(), io.StringIO(), 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(argv)
            except SystemExit as stop:
                code = stop.code or 0
        results.append({"argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                        "cpu": cpu() - start, "wall": time.time() - t0, "memory_mb": status("VmHWM") - idle})
    print(json.dumps(results))
""")


def run_probe(jobs: list[list[str]], cwd: Path) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", _PROBE], input=json.dumps(jobs), capture_output=True, text=True,
                          cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("bombs")
    return {name: (build(folder / f"{name}.ckpt"), expected) for name, (build, expected) in BOMBS.items()}


def test_the_bombs_are_small_files(bombs: dict[str, tuple[Path, str]]) -> None:
    sizes = {name: path.stat().st_size for name, (path, _) in bombs.items()}
    assert max(sizes.values()) < 2 * MIB, sizes
    assert sizes["stride0_gib"] < 1000


def test_every_command_stops_each_bomb_quickly_in_one_line(bombs: dict[str, tuple[Path, str]],
                                                           tmp_path: Path) -> None:
    jobs = []
    for name, (path, _) in bombs.items():
        jobs += [["convert", str(path), "-o", str(tmp_path / f"{name}.safetensors")],
                 ["scan-pickle", str(path), "--json"], ["inspect", str(path)], ["hash", str(path)],
                 ["prune", str(path), "-o", str(tmp_path / f"{name}-pruned.safetensors")]]
    failures = []
    for result in run_probe(jobs, tmp_path):
        command, path = result["argv"][0], Path(result["argv"][1])
        name = path.stem
        expected = bombs[name][1]
        if command == "hash" and result["code"] == 0:
            # hash falls back to the plain file hashes when the tensors cannot be read, and says why in one line
            line = result["stderr"].strip()
            ok = ("sha256" in result["stdout"] and "component" not in result["stdout"].lower()
                  and "\n" not in line and "not read as a model" in line and expected in line)
        else:
            if command == "scan-pickle":
                report = json.loads(result["stdout"])
                line, ok = report["reason"], report["verdict"] != "safe"
            else:
                line = result["stderr"].strip()
                ok = line.startswith("sdhub: error: ") and "\n" not in line
            ok = ok and result["code"] == 2 and expected in line and path.name in line and "internal error" not in line
        if not ok or result["cpu"] > CPU_LIMIT_S or result["memory_mb"] > MEMORY_LIMIT_MB:
            failures.append((name, command, result["code"], round(result["cpu"], 2), round(result["memory_mb"]),
                             line[:200]))
    assert failures == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temporary file


def test_allow_expansion_converts_a_stride0_view_as_torch_reads_it(tmp_path: Path) -> None:
    import torch
    from torch_files import torch_load_trusted

    path = _one_view(tmp_path / "expanded.ckpt", "weight", 1, (2 * MIB // 4,), (0,))
    jobs = [["convert", str(path), "-o", str(tmp_path / "refused.safetensors")],
            ["convert", str(path), "-o", str(tmp_path / "out.safetensors"), "--allow-expansion", "--verify"]]
    refused, accepted = run_probe(jobs, tmp_path)
    assert refused["code"] == 2 and "--allow-expansion" in refused["stderr"]
    assert accepted["code"] == 0, accepted["stderr"]
    from safetensors.torch import load_file

    written = load_file(tmp_path / "out.safetensors")["weight"]
    assert torch.equal(written, torch_load_trusted(path)["weight"]) and written.numel() == 2 * MIB // 4


def test_real_sharing_and_small_expanded_buffers_still_open(tmp_path: Path) -> None:
    """Tied weights named twice and a buffer expanded from one column stay well inside the bounds."""
    import torch

    from sdhub.formats import open_model

    base = torch.arange(12, dtype=torch.float32)
    column = torch.ones(77, 1)
    torch.save({"embed.weight": base, "lm_head.weight": base, "mask": column.expand(77, 77),
                "position_ids": torch.arange(77).expand(1, -1)}, tmp_path / "tied.ckpt")
    with open_model(tmp_path / "tied.ckpt") as model:
        assert torch.equal(model.load("mask"), torch.ones(77, 77))
        assert torch.equal(model.load("position_ids"), torch.arange(77).view(1, 77))


def test_budgets_scale_with_the_pickle_but_floors_stay(tmp_path: Path) -> None:
    """A value copied a few times, as real files do, is fine; the same copy repeated is refused."""
    from sdhub.errors import BadInputError
    from sdhub.formats import open_model

    setup = enc("a" * 1000) + b"q\x000" + glob("_codecs", "encode") + b"q\x010" + enc("latin1") + b"q\x020"
    fine = _zip_with_prelude(tmp_path / "few.ckpt", _repeat_call(setup, b"h\x01(h\x00h\x02tR", times=50))
    with open_model(fine) as model:
        assert list(model.tensors) == ["weight"]
    many = _zip_with_prelude(tmp_path / "many.ckpt", _repeat_call(setup, b"h\x01(h\x00h\x02tR", times=40_000))
    with pytest.raises(BadInputError, match=r"building its values takes more than 32 MiB"):
        open_model(many)


def test_each_key_is_checked_once_and_its_hashing_counted_per_use() -> None:
    """A tuple or tensor key used again costs its hashing again; past the budget, one line."""
    from sdhub.errors import BadInputError
    from sdhub.formats.pickle_values import StorageRef
    from sdhub.formats.safe_unpickler import Limits, SafeUnpickler

    def storage(pid: tuple) -> StorageRef:
        return StorageRef(pid[2], "F32", pid[4])

    limits = Limits(hash_floor=10_000, hash_factor=0)
    tuple_key = b"(" + b"".join(enc(i) for i in range(99)) + b"tq\x00"
    tensor_key = tensor_expr("0", 4, size=(1,) * 40, stride=(1,) * 40).data + b"q\x00"
    for key in (tuple_key, tensor_key):
        few = b"\x80\x02" + key + b"0}(" + b"h\x00K\x01" * 50 + b"u."
        value, _ = SafeUnpickler(few, "few.pkl", storage, limits=limits).load()
        assert len(value) == 1
        many = b"\x80\x02" + key + b"0}(" + b"h\x00K\x01" * 200 + b"u."
        with pytest.raises(BadInputError, match="hashing its dict keys takes more than 10000 element hashes"):
            SafeUnpickler(many, "many.pkl", storage, limits=limits).load()


def test_a_long_chain_of_dicts_is_walked_once() -> None:
    """60 nested dicts, a tensor at each level: naming them costs one step per entry, not per level."""
    from sdhub.formats.weights import _Walker, find_weights
    from sdhub.formats.pickle_values import StorageRef, TensorRef

    tensor = TensorRef(StorageRef("0", "F32", 4), "F32", 0, (4,), (1,))
    root: dict = {"w": tensor}
    node = root
    for level in range(60):
        node["next"] = {"w": tensor}
        node = node["next"]
    found = find_weights(root, "chain.pt")
    assert len(found.tensors) == 61 and "next.next.w" in found.tensors
    walker = _Walker("chain.pt", 10_000)
    assert walker.holds_tensors(root) and walker.steps <= 2 * 61 + 2
