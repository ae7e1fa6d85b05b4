"""Reading and writing model files: safetensors, GGUF, torch zip and legacy torch pickles, safely.

``open_model(path)`` opens any of them without executing anything from the file;
``write_safetensors`` streams tensors into a new ``.safetensors`` file one at a time.
"""

from sdhub.formats.model_file import ModelFile, Quantisation, ReadReport, TensorInfo, TensorSource, open_model
from sdhub.formats.safetensors_writer import DeferredValue, RawSource, TensorSpec, write_safetensors

__all__ = [
    "DeferredValue", "ModelFile", "Quantisation", "RawSource", "ReadReport", "TensorInfo", "TensorSource", "TensorSpec",
    "open_model", "write_safetensors",
]
