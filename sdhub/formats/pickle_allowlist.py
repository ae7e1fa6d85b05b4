"""The exact ``(module, name)`` pairs a weights pickle may mention, and what each one is.

Nothing here is ever imported: the unpickler compares the two strings from the pickle with
these tables and builds inert values itself. A name that is not listed verbatim is refused;
there is no prefix matching and no attribute walking on dotted names.
"""

from __future__ import annotations

#: Python 2 module names that protocol-2 pickles written by Python 3 still use.
PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

#: Legacy typed storage classes -> safetensors dtype of their elements.
_STORAGE_DTYPES = {
    "DoubleStorage": "F64", "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
}
#: Storage classes whose elements .safetensors cannot hold: known, so the message can say so.
_UNSUPPORTED_STORAGES = ("ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage",
                         "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage")

STORAGE_TYPES: dict[tuple[str, str], str] = {}
for _module in ("torch", "torch.cuda"):
    for _name, _dtype in _STORAGE_DTYPES.items():
        STORAGE_TYPES[(_module, _name)] = _dtype
    for _name in _UNSUPPORTED_STORAGES:
        STORAGE_TYPES[(_module, _name)] = "unsupported:" + _name
#: Byte storages: numel in the persistent id counts bytes; the tensor's dtype comes from v3 rebuild.
UNTYPED_STORAGES = {("torch", "UntypedStorage"), ("torch.storage", "UntypedStorage")}

#: ``torch.<dtype>`` globals (values, e.g. the dtype argument of ``_rebuild_tensor_v3``).
TORCH_DTYPE_NAMES = frozenset({
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int64", "int32",
    "int16", "int8", "uint64", "uint32", "uint16", "uint8", "bool", "complex64", "complex128",
    "double", "float", "half", "long", "int", "short", "cfloat", "cdouble",
})

#: Functions the unpickler evaluates itself (see ``safe_unpickler._CALLS``).
CALLABLES = frozenset({
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    ("torch", "device"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("_codecs", "encode"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("copyreg", "_reconstructor"),
})

#: Training-time objects found beside the weights: kept as inert placeholders, reported, dropped.
PLACEHOLDERS = frozenset({
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
    ("pytorch_lightning.callbacks.early_stopping", "EarlyStopping"),
    ("pytorch_lightning.callbacks.lr_monitor", "LearningRateMonitor"),
    ("pytorch_lightning.callbacks.progress", "TQDMProgressBar"),
    ("pytorch_lightning.callbacks.progress.tqdm_progress", "TQDMProgressBar"),
    ("lightning.pytorch.callbacks.model_checkpoint", "ModelCheckpoint"),
    ("lightning.pytorch.callbacks.early_stopping", "EarlyStopping"),
    ("lightning.pytorch.callbacks.lr_monitor", "LearningRateMonitor"),
    ("argparse", "Namespace"),
    ("omegaconf.dictconfig", "DictConfig"),
    ("omegaconf.listconfig", "ListConfig"),
    ("omegaconf.base", "ContainerMetadata"),
    ("omegaconf.base", "Metadata"),
    ("omegaconf.nodes", "AnyNode"),
    ("omegaconf.nodes", "StringNode"),
    ("omegaconf.nodes", "IntegerNode"),
    ("omegaconf.nodes", "FloatNode"),
    ("omegaconf.nodes", "BooleanNode"),
    ("torch.nn.modules.container", "ParameterDict"),
    ("numpy", "ndarray"),
})

#: Globals that may appear as plain values (type annotations inside omegaconf metadata,
#: ``torch.Tensor`` as a rebuild target) but are never called.
VALUES = frozenset({
    ("builtins", "object"), ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
    ("builtins", "int"), ("builtins", "float"), ("builtins", "str"), ("builtins", "bool"),
    ("typing", "Any"), ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"),
})


def normalise_module(module: str) -> str:
    """Apply the Python 2 -> 3 module renames pickle itself applies (exact names only)."""
    return PY2_MODULES.get(module, module)


def verdict(module: str, name: str) -> str:
    """``allowed``, ``placeholder`` or ``refused`` for one global, after module renaming."""
    key = (normalise_module(module), name)
    if key in PLACEHOLDERS:
        return "placeholder"
    if (key in CALLABLES or key in VALUES or key in STORAGE_TYPES or key in UNTYPED_STORAGES
            or (key[0] == "torch" and name in TORCH_DTYPE_NAMES)):
        return "allowed"
    return "refused"
