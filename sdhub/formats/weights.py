"""Finding the weights inside an unpickled checkpoint: wrappers, nesting, embeddings.

Lightning/SD ``.ckpt`` files keep tensors under ``state_dict``; others under ``model`` or
``module``, or as a bare dict. Nested dicts, lists and tuples are flattened with dotted names
by path (``layers.0.weight``, int keys as their number: an A1111 hypernetwork's
``768.0.linear.0.weight``; an IP-Adapter ``.bin``'s ``{"image_proj": {...}, "ip_adapter": {...}}``
gives ``image_proj.proj.weight`` and ``ip_adapter.1.to_k_ip.weight``). An A1111 textual-inversion
``.pt`` (its only tensors under ``string_to_param``/``string_to_token``) becomes the A1111
``.safetensors`` layout (``emb_params``). Everything that is not a tensor is listed as dropped;
plain top-level scalars are kept as extras for the report.

A pickle that is a list or tuple of tensors names them by position: ``"0"``, ``"1"``, ... (a
list inside it: ``"2.0"``). cloneofsimo's ``lora_diffusion`` ``.pt`` files are exactly this: the
LoRA up and down weights of each patched layer in turn, ``"0"`` up, ``"1"`` down, ``"2"`` up...
(its detector relies on these names). A single bare tensor is named ``"tensor"``.

What cannot be named sensibly (tensors in a set, under tuple or float keys, inside an object
that is not a container) raises ``UnsupportedStructureError`` ("an unsupported structure");
a pickle without tensors (an empty dict) raises ``NotAModelError``: neither is "corrupt".

The walk is bounded: every container's "holds tensors" answer is computed once (a shared
sub-dict is not re-walked per path), walk steps are counted against a budget, and the
tensors together may not describe much more than the file stores (see ``check_expansion``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdhub.errors import BadInputError, NotAModelError, UnsupportedStructureError
from sdhub.formats.dtypes import DTYPES
from sdhub.formats.pickle_values import Global, Inert, NumpyDType, TensorRef, TorchDType
from sdhub.formats.safe_unpickler import DEFAULT_LIMITS, Limits

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "params")
MAX_DEPTH = 64
MAX_TENSORS = 500_000
#: Keys beside ``string_to_param`` an A1111 / textual-inversion embedding may hold tensors under.
_EMBEDDING_TENSOR_KEYS = ("string_to_param", "string_to_token")


@dataclass
class FoundWeights:
    tensors: dict[str, TensorRef]
    dropped: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    embedding_layout: bool = False


def describe(value: Any) -> str:
    """A short type label for a dropped value."""
    if isinstance(value, Inert):
        return value.cls.dotted
    if isinstance(value, Global):
        return value.dotted
    if isinstance(value, TorchDType):
        return "torch dtype"
    if isinstance(value, NumpyDType):
        return "numpy dtype"
    return type(value).__name__


_PARAMETER_DICT = Global("torch.nn.modules.container", "ParameterDict")


def _mapping(value: Any) -> Any:
    """A dict for a pickled ``nn.ParameterDict`` (old A1111 embeddings hold one); else ``value``."""
    if isinstance(value, Inert) and value.cls == _PARAMETER_DICT and isinstance(value.state, dict):
        parameters = value.state.get("_parameters")
        if isinstance(parameters, dict):
            return parameters
    return value


def _entries(node: Any) -> Any:
    """(key, value) pairs of a container the walk enters, or None for anything else."""
    if isinstance(node, dict):
        return node.items()
    if isinstance(node, (list, tuple)):
        return enumerate(node)
    return None


class _Walker:
    """Counts walk steps against the budget and remembers which containers hold tensors."""

    def __init__(self, source: str, budget: int) -> None:
        self.source = source
        self.budget = budget
        self.steps = 0
        self._holds: dict[int, tuple[Any, bool]] = {}  # id -> (container, holds a tensor)

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > self.budget:
            raise BadInputError(f"{self.source}: naming its tensors takes more than {self.budget} steps "
                                "(sub-dicts shared many times over?); refusing it")

    def label(self, value: Any) -> str:
        """``describe(value)``, saying so when tensors sit inside it (left out, but not silently)."""
        inside = (value.args, value.state, value.items) if isinstance(value, Inert) else value
        return describe(value) + (" holding tensors" if self.holds_tensors(inside) else "")

    def holds_tensors(self, value: Any) -> bool:
        """Whether a tensor is reachable from ``value``; each container is looked into once."""
        value = _mapping(value)
        if isinstance(value, TensorRef):
            return True
        if _entries(value) is None:
            return False
        known = self._holds.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        # Depth-first, post-order; a container met again while still open (a cycle) counts as empty.
        self._holds[id(value)] = (value, False)
        self.step(len(value))
        stack: list[tuple[Any, Any, bool]] = [(value, iter(_entries(value)), False)]
        while stack:
            node, children, found = stack[-1]
            advanced = False
            for _, child in children:
                child = _mapping(child)
                if isinstance(child, TensorRef):
                    found = True
                    continue
                if _entries(child) is None:
                    continue
                known = self._holds.get(id(child))
                if known is not None and known[0] is child:
                    found = found or known[1]
                    continue
                if len(stack) >= MAX_DEPTH:
                    raise BadInputError(f"{self.source}: nests containers more than {MAX_DEPTH} deep; refusing it")
                self._holds[id(child)] = (child, False)
                self.step(len(child))
                stack[-1] = (node, children, found)
                stack.append((child, iter(_entries(child)), False))
                advanced = True
                break
            if advanced:
                continue
            stack.pop()
            self._holds[id(node)] = (node, found)
            if found and stack:
                parent, parent_children, _ = stack[-1]
                stack[-1] = (parent, parent_children, True)
        return self._holds[id(value)][1]


def find_weights(value: Any, source: str, *, file_size: int | None = None, limits: Limits = DEFAULT_LIMITS,
                 objects: int = 0) -> FoundWeights:
    """The named tensors in ``value`` (an unpickled checkpoint) plus what was left out.

    ``objects`` (values the pickle built) scales the walk budget; with ``file_size`` the
    tensors' described size is checked against the file (``check_expansion``).
    """
    walker = _Walker(source, max(limits.walk_floor, 2 * objects))
    found = _find(value, source, walker)
    if not found.tensors:
        raise NotAModelError(f"{source}: holds no tensors ({_holding(value)}); it is not a model")
    if file_size is not None:
        check_expansion(found.tensors, file_size, source, limits)
    return found


def _find(value: Any, source: str, walker: _Walker) -> FoundWeights:
    if isinstance(value, TensorRef):
        return FoundWeights({"tensor": value})
    if isinstance(value, (list, tuple)):
        found = FoundWeights({})
        _flatten(value, "", found, walker)
        return found
    if not isinstance(value, dict):
        inside = (value.args, value.state, value.items) if isinstance(value, Inert) else value
        if _unnameable(value) or walker.holds_tensors(inside):
            raise UnsupportedStructureError(f"{source}: holds its tensors in an unsupported structure "
                                            f"({_holding(value)}); sdhub cannot name them, refusing it")
        return FoundWeights({})
    if _is_embedding(value, walker):
        return _embedding(value, source)

    root, prefix_path = value, []
    while True:
        wrappers = [k for k in WRAPPER_KEYS if isinstance(root.get(k), dict) and walker.holds_tensors(root[k])]
        loose_tensors = any(isinstance(_mapping(v), TensorRef) for v in root.values())
        if len(wrappers) != 1 or loose_tensors:
            break
        prefix_path.append(wrappers[0])
        root = root[wrappers[0]]

    found = FoundWeights({})
    if prefix_path:
        _report_outside(value, prefix_path, found)
    _flatten(root, "", found, walker)
    return found


def _unnameable(value: Any) -> bool:
    """Whether tensors sit directly in a set (no order, no keys: nothing to name them by)."""
    return isinstance(value, (set, frozenset)) and any(isinstance(item, TensorRef) for item in value)


def _holding(value: Any) -> str:
    """What a pickle's value is, in words: "an empty dict", "a list of 3 items", "a set of 2 tensors"."""
    if isinstance(value, dict):
        if not value:
            return "an empty dict"
        keys = ", ".join(repr(key)[:40] for key in list(value)[:3]) + (", ..." if len(value) > 3 else "")
        return f"a dict of {len(value)} entries: {keys}"
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = type(value).__name__
        article = "an" if kind[0] in "aeiou" else "a"
        if not value:
            return f"an empty {kind}"
        tensors = sum(isinstance(item, TensorRef) for item in value)
        return f"{article} {kind} of {len(value)} items" + (f", {tensors} of them tensors" if tensors else "")
    name = describe(value)
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _is_embedding(value: dict, walker: _Walker) -> bool:
    """An A1111 / textual-inversion embedding: a ``string_to_param`` table and no tensors elsewhere
    (a checkpoint that happens to hold a ``string_to_param`` entry is still a checkpoint)."""
    if not isinstance(_mapping(value.get("string_to_param")), dict):
        return False
    return not any(walker.holds_tensors(item) for key, item in value.items() if key not in _EMBEDDING_TENSOR_KEYS)


def _report_outside(value: dict, path: list[str], found: FoundWeights) -> None:
    """List what sits beside the weights (optimizer state, callbacks, counters)."""
    node: dict = value
    prefix = ""
    for part in path:
        for key, item in node.items():
            if key == part:
                continue
            name = f"{prefix}{key}"
            if isinstance(key, str) and isinstance(item, (int, float, str, bool)):
                found.extras[str(name)] = item
            else:
                found.dropped.append(f"{name} ({describe(item)})")
        node = node[part]
        prefix += f"{part}."


def _key_name(key: Any) -> str | None:
    """The path component for a container key: strings as they are, ints (list indexes, int dict
    keys) as their number; None for keys that cannot name a tensor."""
    if isinstance(key, str):
        return key
    if type(key) is int:
        return str(key)
    return None


def _flatten(root: Any, prefix: str, found: FoundWeights, walker: _Walker) -> None:
    source = walker.source
    stack = [(root, prefix, 0)]
    while stack:
        node, prefix, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadInputError(f"{source}: nests containers more than {MAX_DEPTH} deep; refusing it")
        walker.step(len(node))
        for key, item in _entries(node):
            part = _key_name(key)
            item = _mapping(item)
            if part is None:
                if walker.holds_tensors(item):
                    raise UnsupportedStructureError(
                        f"{source}: holds its tensors in an unsupported structure (tensors under a "
                        f"{type(key).__name__} key, {repr(prefix)[1:-1]}{repr(key)[:60]}); sdhub cannot name them, "
                        "refusing it")
                found.dropped.append(f"{prefix}{repr(key)[:80]} ({describe(item)})")
                continue
            name = prefix + part
            if isinstance(item, TensorRef):
                if name in found.tensors:
                    raise BadInputError(f"{source}: two tensors flatten to the same name {name!r}")
                if len(found.tensors) >= MAX_TENSORS:
                    raise BadInputError(f"{source}: holds more than {MAX_TENSORS} tensors; refusing it")
                found.tensors[name] = item
            elif _entries(item) is not None and walker.holds_tensors(item):
                stack.append((item, name + ".", depth + 1))
            elif depth == 0 and isinstance(item, (int, float, str, bool)) and isinstance(node, dict):
                found.extras[name] = item
            elif _unnameable(item):
                raise UnsupportedStructureError(f"{source}: holds its tensors in an unsupported structure "
                                                f"({_holding(item)} at {name[:80]}); sdhub cannot name them, "
                                                "refusing it")
            else:
                found.dropped.append(f"{name} ({walker.label(item)})")


def _embedding(value: dict, source: str) -> FoundWeights:
    params = _mapping(value["string_to_param"])
    tensors = [t for t in params.values() if isinstance(t, TensorRef)]
    if len(tensors) != 1 or len(params) != 1:
        raise BadInputError(f"{source}: an embedding with {len(params)} vectors tables; expected exactly one")
    found = FoundWeights({"emb_params": tensors[0]}, embedding_layout=True)
    for key, item in value.items():
        if key == "string_to_param":
            continue
        if isinstance(item, (int, float, str, bool)) or item is None:
            found.extras[str(key)] = item
        else:
            found.dropped.append(f"{key} ({describe(item)})")
    return found


def _human(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def check_expansion(tensors: dict[str, TensorRef], file_size: int, source: str,
                    limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse tensors that describe far more bytes than the file stores, before anything is read.

    A stride-0 or overlapping view may repeat its storage's elements, and one storage may be
    named by many keys: reading, hashing or writing such a file costs its described size, not
    its size on disk. A view may describe at most its storage's bytes (or ``view_floor``); all
    tensors together at most ``expansion_factor`` x the file (or ``expansion_floor``). With
    ``limits.allow_expansion`` both are accepted (``--allow-expansion``).
    """
    if limits.allow_expansion:
        return
    hint = "; refusing it (--allow-expansion accepts it)"
    total = 0
    for name, ref in tensors.items():
        described = ref.nbytes
        total += described
        if described > max(ref.storage.nbytes, limits.view_floor) and ref.overlaps():
            raise BadInputError(
                f"{source}: tensor {name!r} is a view that repeats its storage's elements (stride "
                f"{ref.stride}): {_human(described)} described over {_human(ref.storage.nbytes)} stored{hint}")
    allowed = max(limits.expansion_factor * file_size, limits.expansion_floor)
    if total > allowed:
        raise BadInputError(
            f"{source}: its {len(tensors)} tensors describe {_human(total)} from a {_human(file_size)} file "
            f"(storages named many times over), more than {limits.expansion_factor} x the file{hint}")


def byte_swapped(name: str, ref: TensorRef, big_endian: bool, source: str) -> bool:
    """Whether tensor ``name`` of a big-endian archive is byte-swapped when read, as torch does it.

    torch swaps each storage by the storage's element size, never a byte storage (the
    ``UntypedStorage`` behind ``_rebuild_tensor_v3`` dtypes such as fp8 or uint16), whatever
    dtype the tensor views it as. A tensor viewing a typed storage as a dtype of another size
    would be swapped in units that split its elements: refused.
    """
    if not big_endian or ref.swap_itemsize == 1:
        return False
    if ref.swap_itemsize != DTYPES[ref.dtype].itemsize:
        raise BadInputError(f"{source}: tensor {name!r} reads a {ref.storage.dtype} storage of a big-endian "
                            f"archive as {ref.dtype}; torch would swap its bytes in {ref.swap_itemsize}-byte "
                            "units, refusing it")
    return True
