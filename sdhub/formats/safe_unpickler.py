"""A restricted pickle interpreter that turns a torch pickle into plain data and tensor descriptors.

It is a stack machine of its own, not a ``pickle.Unpickler``: it never imports a module,
never calls anything from the file, and resolves each global by comparing the exact
``(module, name)`` strings against ``pickle_allowlist``. Tensors become ``TensorRef``
descriptors (storage key, dtype, offset, shape, stride); storages come from the
container's ``persistent_load``. Every structural problem rejects the whole pickle.
"""

from __future__ import annotations

import codecs
import math
import struct
from dataclasses import dataclass
from typing import Any, Callable

from sdhub.errors import BadInputError, UnsafeFileError
from sdhub.formats import pickle_allowlist as allow
from sdhub.formats.dtypes import DTYPES, dtype_name
from sdhub.formats.pickle_values import (
    Global, Inert, NumpyDType, PickleReport, StorageRef, TensorRef, TorchDType,
)


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile pickle from exhausting memory or time."""

    max_pickle_bytes: int = 256 * 1024 * 1024
    max_mark_depth: int = 1000
    max_stack: int = 1_000_000
    max_memo: int = 1_000_000
    max_objects: int = 5_000_000
    max_string_bytes: int = 64 * 1024 * 1024
    max_long_bytes: int = 64
    max_ndim: int = 64
    max_tensors: int = 500_000
    max_depth: int = 200
    #: Bytes the reading may build beyond what the file holds (copies made by allowed callables such
    #: as ``_codecs.encode`` or ``bytearray``, new containers, container elements): the larger of a
    #: floor no real checkpoint comes near and a multiple of the pickle's size.
    build_floor: int = 32 * 1024 * 1024
    build_factor: int = 16
    #: Elements hashed for tuple dict keys and set items (tuples do not cache their hash).
    hash_floor: int = 4_000_000
    hash_factor: int = 4
    #: Weights walk: dict/list entries visited while naming tensors.
    walk_floor: int = 250_000
    #: Tensors may describe more bytes than the file stores (shared storages, stride-0 or
    #: overlapping views) only up to these bounds unless ``allow_expansion`` is set.
    expansion_factor: int = 4
    expansion_floor: int = 16 * 1024 * 1024
    view_floor: int = 1024 * 1024
    allow_expansion: bool = False


DEFAULT_LIMITS = Limits()

PersistentLoad = Callable[[tuple], StorageRef]

# Opcode bytes, named as in the pickle specification.
_NAMES = {
    b"(": "MARK", b".": "STOP", b"0": "POP", b"1": "POP_MARK", b"2": "DUP", b"F": "FLOAT", b"I": "INT",
    b"J": "BININT", b"K": "BININT1", b"L": "LONG", b"M": "BININT2", b"N": "NONE", b"P": "PERSID",
    b"Q": "BINPERSID", b"R": "REDUCE", b"S": "STRING", b"T": "BINSTRING", b"U": "SHORT_BINSTRING",
    b"V": "UNICODE", b"X": "BINUNICODE", b"a": "APPEND", b"b": "BUILD", b"c": "GLOBAL", b"d": "DICT",
    b"}": "EMPTY_DICT", b"e": "APPENDS", b"g": "GET", b"h": "BINGET", b"i": "INST", b"j": "LONG_BINGET",
    b"l": "LIST", b"]": "EMPTY_LIST", b"o": "OBJ", b"p": "PUT", b"q": "BINPUT", b"r": "LONG_BINPUT",
    b"s": "SETITEM", b"t": "TUPLE", b")": "EMPTY_TUPLE", b"u": "SETITEMS", b"G": "BINFLOAT",
    b"\x80": "PROTO", b"\x81": "NEWOBJ", b"\x82": "EXT1", b"\x83": "EXT2", b"\x84": "EXT4",
    b"\x85": "TUPLE1", b"\x86": "TUPLE2", b"\x87": "TUPLE3", b"\x88": "NEWTRUE", b"\x89": "NEWFALSE",
    b"\x8a": "LONG1", b"\x8b": "LONG4", b"B": "BINBYTES", b"C": "SHORT_BINBYTES",
    b"\x8c": "SHORT_BINUNICODE", b"\x8d": "BINUNICODE8", b"\x8e": "BINBYTES8", b"\x8f": "EMPTY_SET",
    b"\x90": "ADDITEMS", b"\x91": "FROZENSET", b"\x92": "NEWOBJ_EX", b"\x93": "STACK_GLOBAL",
    b"\x94": "MEMOIZE", b"\x95": "FRAME", b"\x96": "BYTEARRAY8", b"\x97": "NEXT_BUFFER",
    b"\x98": "READONLY_BUFFER",
}
OPCODE_NAMES = {code[0]: name for code, name in _NAMES.items()}

#: Opcodes torch files never need and whose only use is to reach code or outside data.
_FORBIDDEN_OPCODES = {"INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID", "NEXT_BUFFER", "READONLY_BUFFER"}


class _Reject(Exception):
    """Internal: the pickle is refused; ``unsafe`` says which error class the caller raises."""

    def __init__(self, message: str, unsafe: bool) -> None:
        super().__init__(message)
        self.unsafe = unsafe


def _unsafe(message: str) -> _Reject:
    return _Reject(message, True)


def _corrupt(message: str) -> _Reject:
    return _Reject(message, False)


class SafeUnpickler:
    """Interpret one pickle from ``data[start:]`` without executing anything.

    ``persistent_load`` turns a storage persistent id (a tuple) into a ``StorageRef``. With
    ``strict=False`` (``scan-pickle``) refused globals and opcodes are recorded in the report
    and replaced by placeholders instead of stopping, so the whole listing can be shown.
    """

    def __init__(self, data: Any, source: str, persistent_load: PersistentLoad | None,
                 *, limits: Limits = DEFAULT_LIMITS, strict: bool = True) -> None:
        self.data = data
        self.source = source
        self.persistent_load = persistent_load
        self.limits = limits
        self.strict = strict
        self.report = PickleReport()
        self.tensors = 0
        self._built = 0
        self._build_budget = limits.build_floor
        self._hashed = 0
        self._hash_budget = limits.hash_floor
        self._pickle_bytes = 0
        self._key_costs: dict[int, tuple[Any, int]] = {}  # id -> (key, elements); each key is checked once

    # -- entry point -------------------------------------------------------------------

    def load(self, start: int = 0, end: int | None = None) -> tuple[Any, int]:
        """Run the pickle that starts at ``start``; return its value and the offset after STOP."""
        end = len(self.data) if end is None else end
        clipped = end - start > self.limits.max_pickle_bytes
        if clipped:
            end = start + self.limits.max_pickle_bytes
        self._pickle_bytes = max(0, end - start)
        self._build_budget = max(self.limits.build_floor, self.limits.build_factor * self._pickle_bytes)
        self._hash_budget = max(self.limits.hash_floor, self.limits.hash_factor * self._pickle_bytes)
        try:
            return self._run(start, end)
        except _Reject as error:
            if clipped and "truncated" in str(error):
                raise BadInputError(f"{self.source}: the pickle is larger than "
                                    f"{self.limits.max_pickle_bytes} bytes; refusing it") from None
            cls = UnsafeFileError if error.unsafe else BadInputError
            raise cls(f"{self.source}: {error}") from None
        except RecursionError:
            raise BadInputError(f"{self.source}: the pickle nests too deeply; refusing it") from None
        except (IndexError, ValueError, TypeError, struct.error, UnicodeDecodeError, OverflowError) as error:
            raise BadInputError(f"{self.source}: corrupt pickle ({type(error).__name__}: {error}); refusing it") from None

    # -- budgets -------------------------------------------------------------------------

    def _spend(self, nbytes: int) -> None:
        """Count bytes the reading builds beyond the file's own; refuse past the budget."""
        self._built += nbytes
        if self._built > self._build_budget:
            raise _corrupt(
                f"building its values takes more than {_amount(self._build_budget)} (the limit is "
                f"{self.limits.build_factor} x its {self._pickle_bytes}-byte pickle, at least "
                f"{_amount(self.limits.build_floor)}; a value copied over and over?); refusing it")

    def _check_key(self, value: Any) -> None:
        """Check a dict key or set item once per object and count the hashing it costs each use."""
        if isinstance(value, _HASHABLE_SCALARS):
            return
        entry = self._key_costs.get(id(value))
        if entry is None or entry[0] is not value:
            entry = (value, _hash_cost(value))
            self._key_costs[id(value)] = entry
        self._hashed += entry[1]
        if self._hashed > self._hash_budget:
            raise _corrupt(
                f"hashing its dict keys takes more than {self._hash_budget} element hashes (the limit is "
                f"{self.limits.hash_factor} x its {self._pickle_bytes}-byte pickle, at least "
                f"{self.limits.hash_floor}; a large tuple key used over and over?); refusing it")

    # -- the machine -------------------------------------------------------------------

    def _run(self, pos: int, end: int) -> tuple[Any, int]:
        data = self.data
        limits = self.limits
        stack: list[Any] = []
        metastack: list[list[Any]] = []
        memo: dict[int, Any] = {}
        opcodes = self.report.opcodes
        objects = 0
        spend = self._spend

        def take(n: int) -> bytes:
            nonlocal pos
            if n < 0 or pos + n > end:
                raise _corrupt("the pickle is truncated")
            chunk = bytes(data[pos:pos + n])
            pos += n
            return chunk

        def readline() -> bytes:
            nonlocal pos
            stop = data.find(b"\n", pos, end)
            if stop < 0:
                raise _corrupt("the pickle is truncated")
            line = bytes(data[pos:stop])
            pos = stop + 1
            return line

        def string_length(n: int) -> int:
            if n > limits.max_string_bytes:
                raise _corrupt(f"a string of {n} bytes is larger than the limit")
            if pos + n > end:
                raise _corrupt("the pickle is truncated")
            return n

        def pop_mark() -> list[Any]:
            nonlocal stack
            if not metastack:
                raise _corrupt("unbalanced MARK")
            items = stack
            stack = metastack.pop()
            return items

        def pop() -> Any:
            if not stack:
                raise _corrupt("stack underflow")
            return stack.pop()

        def push(value: Any) -> None:
            nonlocal objects
            objects += 1
            if objects > limits.max_objects or len(stack) >= limits.max_stack:
                raise _corrupt("the pickle builds too many objects")
            stack.append(value)

        def memo_put(index: int) -> None:
            if not stack:
                raise _corrupt("memo store from an empty stack")
            if index not in memo:
                if len(memo) >= limits.max_memo:
                    raise _corrupt("the pickle memo is too large")
                spend(_MEMO_ENTRY)
            memo[index] = stack[-1]

        def memo_get(index: int) -> None:
            if index not in memo:
                raise _corrupt(f"memo index {index} is missing")
            push(memo[index])

        while True:
            if pos >= end:
                raise _corrupt("the pickle is truncated (no STOP)")
            code = data[pos]
            pos += 1
            name = OPCODE_NAMES.get(code)
            if name is None:
                raise _corrupt(f"unknown pickle opcode 0x{code:02x} at byte {pos - 1}")
            opcodes[name] = opcodes.get(name, 0) + 1

            if name == "PROTO":
                proto = take(1)[0]
                if proto > 5:
                    raise _corrupt(f"unsupported pickle protocol {proto}")
                self.report.protocol = max(self.report.protocol, proto)
            elif name == "FRAME":
                (length,) = struct.unpack("<Q", take(8))
                if pos + length > end:
                    raise _corrupt("the pickle is truncated (frame)")
            elif name == "STOP":
                if metastack:
                    raise _corrupt("STOP inside an open MARK")
                if len(stack) != 1:
                    raise _corrupt("STOP with an unbalanced stack")
                self.report.objects += objects
                return stack[0], pos
            elif name == "MARK":
                if len(metastack) >= limits.max_mark_depth:
                    raise _corrupt("the pickle nests too deeply; refusing it")
                metastack.append(stack)
                stack = []
            elif name == "POP":
                if stack:
                    stack.pop()
                else:
                    pop_mark()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                if not stack:
                    raise _corrupt("stack underflow")
                push(stack[-1])
            # -- plain values
            elif name == "NONE":
                push(None)
            elif name == "NEWTRUE":
                push(True)
            elif name == "NEWFALSE":
                push(False)
            elif name == "BININT":
                push(struct.unpack("<i", take(4))[0])
            elif name == "BININT1":
                push(take(1)[0])
            elif name == "BININT2":
                push(struct.unpack("<H", take(2))[0])
            elif name == "LONG1":
                length = take(1)[0]
                push(self._long(take(length)))
            elif name == "LONG4":
                (length,) = struct.unpack("<i", take(4))
                if length < 0 or length > limits.max_long_bytes:
                    raise _corrupt("an integer in the pickle is too large")
                push(self._long(take(length)))
            elif name == "INT":
                line = readline()
                if line == b"00":
                    push(False)
                elif line == b"01":
                    push(True)
                else:
                    push(self._text_int(line))
            elif name == "LONG":
                line = readline()
                push(self._text_int(line[:-1] if line.endswith(b"L") else line))
            elif name == "BINFLOAT":
                push(struct.unpack(">d", take(8))[0])
            elif name == "FLOAT":
                push(float(readline().decode("ascii")))
            elif name == "BINUNICODE":
                (length,) = struct.unpack("<I", take(4))
                push(take(string_length(length)).decode("utf-8", "surrogatepass"))
            elif name == "SHORT_BINUNICODE":
                push(take(take(1)[0]).decode("utf-8", "surrogatepass"))
            elif name == "BINUNICODE8":
                (length,) = struct.unpack("<Q", take(8))
                push(take(string_length(length)).decode("utf-8", "surrogatepass"))
            elif name == "UNICODE":
                push(readline().decode("raw-unicode-escape"))
            elif name == "BINSTRING":
                (length,) = struct.unpack("<i", take(4))
                push(self._py2_string(take(string_length(length))))
            elif name == "SHORT_BINSTRING":
                push(self._py2_string(take(take(1)[0])))
            elif name == "STRING":
                line = readline()
                if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
                    raise _corrupt("malformed STRING in the pickle")
                push(self._py2_string(codecs.escape_decode(line[1:-1])[0]))
            elif name == "BINBYTES":
                (length,) = struct.unpack("<I", take(4))
                push(take(string_length(length)))
            elif name == "SHORT_BINBYTES":
                push(take(take(1)[0]))
            elif name == "BINBYTES8":
                (length,) = struct.unpack("<Q", take(8))
                push(take(string_length(length)))
            elif name == "BYTEARRAY8":
                (length,) = struct.unpack("<Q", take(8))
                spend(length)
                push(bytearray(take(string_length(length))))
            # -- containers
            elif name == "EMPTY_LIST":
                spend(_CONTAINER)
                push([])
            elif name == "EMPTY_DICT":
                spend(_CONTAINER)
                push({})
            elif name == "EMPTY_TUPLE":
                push(())
            elif name == "EMPTY_SET":
                spend(_CONTAINER)
                push(set())
            elif name == "TUPLE":
                items = pop_mark()
                spend(_CONTAINER + _ELEMENT * len(items))
                push(tuple(items))
            elif name == "TUPLE1":
                spend(_CONTAINER)
                push((pop(),))
            elif name == "TUPLE2":
                spend(_CONTAINER)
                b = pop()
                a = pop()
                push((a, b))
            elif name == "TUPLE3":
                spend(_CONTAINER)
                c = pop()
                b = pop()
                a = pop()
                push((a, b, c))
            elif name == "LIST":
                items = pop_mark()
                spend(_CONTAINER + _ELEMENT * len(items))
                push(items)
            elif name == "DICT":
                items = pop_mark()
                spend(_CONTAINER + _ELEMENT * len(items))
                push(self._dict_from(items))
            elif name == "FROZENSET":
                items = pop_mark()
                spend(_CONTAINER + _SET_ELEMENT * len(items))
                push(frozenset(self._hashable_items(items)))
            elif name == "APPEND":
                spend(_ELEMENT)
                value = pop()
                self._append(stack, [value])
            elif name == "APPENDS":
                values = pop_mark()
                spend(_ELEMENT * len(values))
                self._append(stack, values)
            elif name == "SETITEM":
                spend(2 * _ELEMENT)
                value = pop()
                key = pop()
                self._setitems(stack, [key, value])
            elif name == "SETITEMS":
                items = pop_mark()
                spend(_ELEMENT * len(items))
                self._setitems(stack, items)
            elif name == "ADDITEMS":
                items = pop_mark()
                if not stack or not isinstance(stack[-1], set):
                    raise _corrupt("ADDITEMS on something that is not a set")
                spend(_SET_ELEMENT * len(items))
                stack[-1].update(self._hashable_items(items))
            # -- memo
            elif name == "BINPUT":
                memo_put(take(1)[0])
            elif name == "LONG_BINPUT":
                memo_put(struct.unpack("<I", take(4))[0])
            elif name == "PUT":
                memo_put(self._text_int(readline()))
            elif name == "MEMOIZE":
                memo_put(len(memo))
            elif name == "BINGET":
                memo_get(take(1)[0])
            elif name == "LONG_BINGET":
                memo_get(struct.unpack("<I", take(4))[0])
            elif name == "GET":
                memo_get(self._text_int(readline()))
            # -- the opcodes that reach names and calls
            elif name == "GLOBAL":
                module = readline().decode("utf-8")
                qualname = readline().decode("utf-8")
                push(self._global(module, qualname))
            elif name == "STACK_GLOBAL":
                qualname = pop()
                module = pop()
                if not isinstance(module, str) or not isinstance(qualname, str):
                    raise _unsafe("STACK_GLOBAL with a name that is not a string")
                push(self._global(module, qualname))
            elif name == "REDUCE":
                args = pop()
                func = pop()
                push(self._call(func, args))
            elif name == "NEWOBJ":
                args = pop()
                cls = pop()
                push(self._new(cls, args, {}))
            elif name == "NEWOBJ_EX":
                kwargs = pop()
                args = pop()
                cls = pop()
                push(self._new(cls, args, kwargs))
            elif name == "BUILD":
                state = pop()
                if not stack:
                    raise _corrupt("stack underflow")
                self._build(stack[-1], state)
            elif name == "BINPERSID":
                pid = pop()
                push(self._persistent(pid))
            elif name in _FORBIDDEN_OPCODES:
                self._forbidden_opcode(name, stack, pop_mark, readline, take)
                if not self.strict:
                    push(Inert(Global("opcode", name)))
            else:  # pragma: no cover - every name in _NAMES is handled above
                raise _corrupt(f"unhandled opcode {name}")

    # -- helpers for values --------------------------------------------------------------

    def _long(self, raw: bytes) -> int:
        if len(raw) > self.limits.max_long_bytes:
            raise _corrupt("an integer in the pickle is too large")
        return int.from_bytes(raw, "little", signed=True)

    def _text_int(self, line: bytes) -> int:
        if len(line) > 2 * self.limits.max_long_bytes + 2:
            raise _corrupt("an integer in the pickle is too large")
        return int(line.decode("ascii"))

    @staticmethod
    def _py2_string(raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def _hashable_items(self, items: list[Any]) -> list[Any]:
        for item in items:
            self._check_key(item)
        return items

    def _dict_from(self, items: list[Any]) -> dict:
        if len(items) % 2:
            raise _corrupt("odd number of items for a dict")
        result: dict = {}
        self._setitems([result], items)
        return result

    def _append(self, stack: list[Any], values: list[Any]) -> None:
        if not stack:
            raise _corrupt("stack underflow")
        target = stack[-1]
        if isinstance(target, list):
            target.extend(values)
        elif isinstance(target, Inert):
            target.items.extend(values)
        else:
            raise _corrupt(f"APPEND to a {type(target).__name__}")

    def _setitems(self, stack: list[Any], items: list[Any]) -> None:
        if not stack:
            raise _corrupt("stack underflow")
        if len(items) % 2:
            raise _corrupt("odd number of items for SETITEMS")
        target = stack[-1]
        if isinstance(target, Inert):
            target.items.extend(zip(items[::2], items[1::2]))
            return
        if not isinstance(target, dict):
            raise _corrupt(f"SETITEM on a {type(target).__name__}")
        check = self._check_key
        for key, value in zip(items[::2], items[1::2]):
            check(key)
            target[key] = value

    def _forbidden_opcode(self, name: str, stack: list[Any], pop_mark: Callable, readline: Callable,
                          take: Callable) -> None:
        detail = ""
        if name == "INST":
            module, qualname = readline().decode("utf-8", "replace"), readline().decode("utf-8", "replace")
            detail = f" {module}.{qualname}"
            self.report.globals.setdefault(f"{module}.{qualname}", "refused")
        elif name in ("EXT1", "EXT2", "EXT4"):
            size = {"EXT1": 1, "EXT2": 2, "EXT4": 4}[name]
            detail = f" (extension code {int.from_bytes(take(size), 'little')})"
        elif name == "PERSID":
            readline()
        message = (f"uses the pickle opcode {name}{detail}, which torch weights never use and which "
                   "can run code; refusing to read it")
        if self.strict:
            raise _unsafe(message)
        self.report.problems.append(message)
        if name in ("OBJ", "INST"):
            pop_mark()

    # -- globals, calls, objects ------------------------------------------------------

    def _global(self, module: str, qualname: str) -> Any:
        module = allow.normalise_module(module)
        verdict = allow.verdict(module, qualname)
        self.report.globals.setdefault(f"{module}.{qualname}", verdict)
        if verdict == "refused":
            message = (f"refers to {module}.{qualname}, which a weights file never needs "
                       "(loading it could run code); refusing to read it")
            if self.strict:
                raise _unsafe(message)
            self.report.problems.append(message)
            return Inert(Global(module, qualname))
        if module == "torch" and qualname in allow.TORCH_DTYPE_NAMES:
            return TorchDType(qualname)
        return Global(module, qualname)

    def _refuse_call(self, what: Any, how: str) -> Any:
        label = what.dotted if isinstance(what, Global) else type(what).__name__
        if isinstance(what, Inert):
            label = what.cls.dotted
        message = f"{how} {label}, which the safe reader does not allow; refusing to read it"
        if self.strict:
            raise _unsafe(message)
        self.report.problems.append(message)
        return Inert(Global("refused", label))

    def _call(self, func: Any, args: Any) -> Any:
        if not isinstance(args, tuple):
            raise _corrupt("REDUCE with arguments that are not a tuple")
        self._spend(_CONTAINER)  # every call makes at least one new object
        if isinstance(func, Global):
            key = (func.module, func.name)
            if key in allow.PLACEHOLDERS:
                return Inert(func, args)
            handler = _CALLS.get(key)
            if handler is not None:
                return handler(self, args)
        return self._refuse_call(func, "calls")

    def _new(self, cls: Any, args: Any, kwargs: Any) -> Any:
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise _corrupt("NEWOBJ with malformed arguments")
        self._spend(_CONTAINER)
        if isinstance(cls, Global):
            key = (cls.module, cls.name)
            if key in allow.PLACEHOLDERS:
                return Inert(cls, args)
            if key == ("collections", "OrderedDict") and not args and not kwargs:
                return {}
        return self._refuse_call(cls, "constructs")

    def _build(self, target: Any, state: Any) -> None:
        if isinstance(target, Inert):
            target.state = state
        elif isinstance(target, dict) and (state is None or isinstance(state, dict)):
            pass  # OrderedDict attributes (state_dict ``_metadata``): not weights
        elif isinstance(target, NumpyDType):
            pass  # numpy dtype flags; the type code was already taken
        else:
            self._refuse_call(target, "sets the state of")

    def _persistent(self, pid: Any) -> Any:
        if self.persistent_load is None:
            raise _unsafe("uses a persistent id where none is allowed")
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            if self.strict:
                raise _unsafe("uses a persistent id that is not a torch storage")
            self.report.problems.append("non-storage persistent id")
            return Inert(Global("persistent", "id"))
        storage_type = pid[1] if len(pid) > 1 else None
        if isinstance(storage_type, Global):
            key = (storage_type.module, storage_type.name)
            dtype = allow.STORAGE_TYPES.get(key)
            if dtype is not None and dtype.startswith("unsupported:"):
                raise _corrupt(f"has a {storage_type.name}, which .safetensors cannot store")
        try:
            return self.persistent_load(pid)
        except _Reject:
            raise
        except (BadInputError, UnsafeFileError) as error:
            raise _Reject(error.message, isinstance(error, UnsafeFileError)) from None

    # -- tensors --------------------------------------------------------------------------

    def _tensor(self, storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None = None,
                metadata: Any = None) -> TensorRef:
        if not isinstance(storage, StorageRef):
            raise _corrupt("a tensor whose storage is not a storage reference")
        if type(offset) is not int:
            raise _corrupt("a tensor with a non-integer storage offset")
        if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
            raise _corrupt("a tensor with malformed size/stride")
        if len(size) > self.limits.max_ndim:
            raise _corrupt(f"a tensor with {len(size)} dimensions")
        if any(type(v) is not int for v in size + stride):
            raise _corrupt("a tensor with non-integer sizes or strides")
        if offset < 0 or any(v < 0 for v in size) or any(v < 0 for v in stride):
            raise _unsafe("has a tensor with a negative size, stride or offset")
        if metadata and any(bool(v) for v in (metadata.values() if isinstance(metadata, dict) else [metadata])):
            raise _corrupt("has a tensor with lazy conjugate/negative flags, which cannot be stored as is")
        dtype = dtype or storage.dtype
        element = DTYPES[dtype].itemsize
        capacity = storage.nbytes // element  # elements of this dtype the storage holds
        if storage.untyped and storage.nbytes % element:
            raise _corrupt("a byte storage whose size is not a whole number of elements")
        numel = math.prod(size)
        if numel:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= capacity:
                raise _unsafe(f"has a tensor that reaches element {last} of a storage of {capacity} elements "
                              "(outside its storage)")
        elif offset > capacity:
            raise _unsafe("has an empty tensor whose offset lies outside its storage")
        self.tensors += 1
        if self.tensors > self.limits.max_tensors:
            raise _corrupt("the pickle describes too many tensors")
        return TensorRef(storage, dtype, offset, size, stride)


_HASHABLE_SCALARS = (str, int, float, complex, bytes, type(None), Global, Inert, TorchDType, NumpyDType)
_MAX_KEY_DEPTH = 8
_MAX_KEY_ITEMS = 10_000
#: What the build budget counts for a new container, for each element put in one, and for a set item.
_CONTAINER = 64
_ELEMENT = 8
_SET_ELEMENT = 32
_PAIR = 64
_MEMO_ENTRY = 32


def _amount(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f} MiB" if nbytes >= 2**20 else f"{nbytes} bytes"


def _hash_cost(value: Any) -> int:
    """The elements hashing ``value`` visits; refuse keys that are unhashable, or deep or large
    enough to crash the interpreter (C recursion on nested tuples) or run for ever (shared subtuples)."""
    if isinstance(value, _HASHABLE_SCALARS):
        return 1
    budget = _MAX_KEY_ITEMS
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _HASHABLE_SCALARS):
            continue
        if isinstance(item, (TensorRef, StorageRef)):  # hashed field by field, shape and stride included
            budget -= 8 + 2 * len(getattr(item, "shape", ()))
            continue
        if not isinstance(item, (tuple, frozenset)):
            raise _corrupt(f"a dict key or set item is a {type(item).__name__}, which cannot be hashed")
        budget -= len(item) + 1
        if depth >= _MAX_KEY_DEPTH or budget < 0:
            raise _corrupt("a dict key or set item is nested too deeply or too large")
        stack.extend((element, depth + 1) for element in item)
    return _MAX_KEY_ITEMS - budget


def _as_tensor(value: Any) -> TensorRef:
    if not isinstance(value, TensorRef):
        raise _corrupt("a parameter that does not wrap a tensor")
    return value


def _rebuild_tensor_v2(self: SafeUnpickler, args: tuple) -> TensorRef:
    if len(args) not in (6, 7):
        raise _corrupt("_rebuild_tensor_v2 with the wrong number of arguments")
    return self._tensor(args[0], args[1], args[2], args[3], metadata=args[6] if len(args) == 7 else None)


def _rebuild_tensor(self: SafeUnpickler, args: tuple) -> TensorRef:
    if len(args) != 4:
        raise _corrupt("_rebuild_tensor with the wrong number of arguments")
    return self._tensor(*args)


def _rebuild_tensor_v3(self: SafeUnpickler, args: tuple) -> TensorRef:
    if len(args) not in (7, 8):
        raise _corrupt("_rebuild_tensor_v3 with the wrong number of arguments")
    dtype = args[6]
    if not isinstance(dtype, TorchDType):
        raise _corrupt("_rebuild_tensor_v3 without a dtype")
    try:
        name = dtype_name(dtype.torch_name)
    except Exception:
        raise _corrupt(f"has a torch.{dtype.torch_name} tensor, which .safetensors cannot store") from None
    return self._tensor(args[0], args[1], args[2], args[3], dtype=name, metadata=args[7] if len(args) == 8 else None)


def _rebuild_parameter(self: SafeUnpickler, args: tuple) -> TensorRef:
    if len(args) not in (3, 4):
        raise _corrupt("_rebuild_parameter with the wrong number of arguments")
    tensor = _as_tensor(args[0])
    return TensorRef(tensor.storage, tensor.dtype, tensor.offset, tensor.shape, tensor.stride, parameter=True)


def _parameter(self: SafeUnpickler, args: tuple) -> TensorRef:
    if len(args) not in (1, 2):
        raise _corrupt("Parameter with the wrong number of arguments")
    return _rebuild_parameter(self, (args[0], True, None))


def _rebuild_from_type_v2(self: SafeUnpickler, args: tuple) -> Any:
    if len(args) != 4:
        raise _corrupt("_rebuild_from_type_v2 with the wrong number of arguments")
    func, new_type, inner_args, _state = args
    if not isinstance(new_type, Global) or (new_type.module, new_type.name) not in {
            ("torch", "Tensor"), ("torch.nn.parameter", "Parameter")}:
        return self._refuse_call(new_type, "rebuilds a tensor as")
    if not isinstance(func, Global) or func.module != "torch._utils" or not func.name.startswith("_rebuild_"):
        return self._refuse_call(func, "rebuilds a tensor with")
    return self._call(func, inner_args)


def _ordered_dict(self: SafeUnpickler, args: tuple) -> dict:
    if not args:
        return {}
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        pairs = args[0]
        self._spend(_CONTAINER + _PAIR * len(pairs))
        check = self._check_key
        for pair in pairs:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise _corrupt("OrderedDict with malformed items")
            check(pair[0])
        return dict(pairs)
    raise _corrupt("OrderedDict with unexpected arguments")


def _size(self: SafeUnpickler, args: tuple) -> tuple:
    if len(args) != 1 or not isinstance(args[0], (tuple, list)):
        raise _corrupt("torch.Size with unexpected arguments")
    self._spend(_CONTAINER + _ELEMENT * len(args[0]))
    if any(type(v) is not int for v in args[0]):
        raise _corrupt("torch.Size with unexpected arguments")
    return tuple(args[0])


def _device(self: SafeUnpickler, args: tuple) -> str:
    if not (1 <= len(args) <= 2) or not isinstance(args[0], str) or (len(args) == 2 and type(args[1]) is not int):
        raise _corrupt("torch.device with unexpected arguments")
    return args[0] if len(args) == 1 else f"{args[0]}:{args[1]}"


def _set(self: SafeUnpickler, args: tuple) -> set:
    if not args:
        return set()
    if len(args) != 1 or not isinstance(args[0], (list, tuple)):
        raise _corrupt("set with unexpected arguments")
    self._spend(_CONTAINER + _SET_ELEMENT * len(args[0]))
    return set(self._hashable_items(list(args[0])))


def _frozenset(self: SafeUnpickler, args: tuple) -> frozenset:
    return frozenset(_set(self, args))


def _bytearray(self: SafeUnpickler, args: tuple) -> bytearray:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], bytes):
        self._spend(len(args[0]))
        return bytearray(args[0])
    raise _corrupt("bytearray with unexpected arguments")


def _complex(self: SafeUnpickler, args: tuple) -> complex:
    if len(args) in (1, 2) and all(type(v) in (int, float) for v in args):
        return complex(*args)
    raise _corrupt("complex with unexpected arguments")


def _codecs_encode(self: SafeUnpickler, args: tuple) -> bytes:
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        self._spend(len(args[0]))
        return args[0].encode("latin-1")
    raise _corrupt("_codecs.encode with unexpected arguments")


_NUMPY_CODE = {"f8": "<d", "f4": "<f", "f2": "<e", "i8": "<q", "i4": "<i", "i2": "<h", "i1": "<b",
               "u8": "<Q", "u4": "<I", "u2": "<H", "u1": "<B", "b1": "<?"}


def _numpy_dtype(self: SafeUnpickler, args: tuple) -> NumpyDType:
    if not args or not isinstance(args[0], str) or len(args[0]) > 16:
        raise _corrupt("numpy.dtype with unexpected arguments")
    return NumpyDType(args[0])


def _numpy_scalar(self: SafeUnpickler, args: tuple) -> Any:
    if len(args) != 2 or not isinstance(args[0], NumpyDType) or not isinstance(args[1], bytes):
        raise _corrupt("a numpy scalar with unexpected arguments")
    code = _NUMPY_CODE.get(args[0].code)
    if code is None or struct.calcsize(code) != len(args[1]):
        return Inert(Global("numpy", "scalar"), args)
    return struct.unpack(code, args[1])[0]


def _numpy_reconstruct(self: SafeUnpickler, args: tuple) -> Inert:
    if not args or args[0] != Global("numpy", "ndarray"):
        return self._refuse_call(args[0] if args else None, "reconstructs an array of")
    return Inert(Global("numpy", "ndarray"), args)


def _copyreg_reconstructor(self: SafeUnpickler, args: tuple) -> Any:
    if (len(args) == 3 and isinstance(args[0], Global) and (args[0].module, args[0].name) in allow.PLACEHOLDERS
            and args[1] == Global("builtins", "object")):
        return Inert(args[0], ())
    return self._refuse_call(args[0] if args else None, "reconstructs")


_CALLS: dict[tuple[str, str], Callable[[SafeUnpickler, tuple], Any]] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch", "Size"): _size,
    ("torch", "device"): _device,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "complex"): _complex,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
}
assert set(_CALLS) == allow.CALLABLES  # the two tables must name the same functions
