"""Finding the weights inside an unpickled checkpoint: wrappers, nesting, embeddings.

Lightning/SD ``.ckpt`` files keep tensors under ``state_dict``; others under ``model`` or
``module``, or as a bare dict. Nested dicts are flattened with dotted names. An A1111
textual-inversion ``.pt`` becomes the A1111 ``.safetensors`` layout (``emb_params``).
Everything that is not a tensor is listed as dropped; plain top-level scalars are kept as
extras for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdhub.errors import BadInputError
from sdhub.formats.pickle_values import Global, Inert, NumpyDType, TensorRef, TorchDType

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "params")
MAX_DEPTH = 64
MAX_TENSORS = 500_000


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


def _has_tensors(value: Any, source: str) -> bool:
    stack = [(value, 0)]
    seen: set[int] = set()  # shared sub-dicts are walked once (a hostile file can share them exponentially)
    while stack:
        item, depth = stack.pop()
        if isinstance(item, TensorRef):
            return True
        item = _mapping(item)
        if isinstance(item, dict) and id(item) not in seen:
            seen.add(id(item))
            if depth >= MAX_DEPTH:
                raise BadInputError(f"{source}: nests dicts more than {MAX_DEPTH} deep; refusing it")
            stack.extend((v, depth + 1) for v in item.values())
    return False


def find_weights(value: Any, source: str) -> FoundWeights:
    """The named tensors in ``value`` (an unpickled checkpoint) plus what was left out."""
    if isinstance(value, TensorRef):
        return FoundWeights({"tensor": value})
    if not isinstance(value, dict):
        raise BadInputError(f"{source}: holds a {describe(value)}, not a dict of tensors; nothing to convert")
    if isinstance(_mapping(value.get("string_to_param")), dict):
        return _embedding(value, source)

    root, prefix_path = value, []
    while True:
        wrappers = [k for k in WRAPPER_KEYS if isinstance(root.get(k), dict) and _has_tensors(root[k], source)]
        loose_tensors = any(isinstance(v, TensorRef) for v in root.values())
        if len(wrappers) != 1 or loose_tensors:
            break
        prefix_path.append(wrappers[0])
        root = root[wrappers[0]]

    found = FoundWeights({})
    if prefix_path:
        _report_outside(value, prefix_path, found)
    _flatten(root, "", found, source)
    if not found.tensors:
        raise BadInputError(f"{source}: contains no tensors; nothing to convert")
    return found


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


def _flatten(root: dict, prefix: str, found: FoundWeights, source: str) -> None:
    stack = [(root, prefix, 0)]
    while stack:
        node, prefix, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadInputError(f"{source}: nests dicts more than {MAX_DEPTH} deep; refusing it")
        for key, item in node.items():
            if not isinstance(key, str):
                found.dropped.append(f"{prefix}{repr(key)[:80]} ({describe(item)})")
                continue
            name = prefix + key
            item = _mapping(item)
            if isinstance(item, TensorRef):
                if name in found.tensors:
                    raise BadInputError(f"{source}: two tensors flatten to the same name {name!r}")
                if len(found.tensors) >= MAX_TENSORS:
                    raise BadInputError(f"{source}: holds more than {MAX_TENSORS} tensors; refusing it")
                found.tensors[name] = item
            elif isinstance(item, dict) and _has_tensors(item, source):
                stack.append((item, name + ".", depth + 1))
            elif depth == 0 and isinstance(item, (int, float, str, bool)):
                found.extras[name] = item
            else:
                found.dropped.append(f"{name} ({describe(item)})")


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
