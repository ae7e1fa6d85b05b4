"""Quantised element types: GGML's block types (GGUF files) and bitsandbytes' 4-bit types.

Tensors of these types are read, hashed, inspected and catalogued as stored. sdhub never
dequantises or rewrites them, and every command that would says so in the same line.
"""

from __future__ import annotations

#: The quantised types sdhub knows by name (GGML's, as the gguf library names them, and NF4/FP4).
QUANTISED = frozenset({
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
    "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "IQ1_M", "TQ1_0", "TQ2_0",
    "MXFP4", "NVFP4", "Q1_0", "NF4", "FP4",
})


def not_rewritten(what: str, them: str = "them") -> str:
    """The one-line reason sdhub will not rewrite quantised ``what`` (``them``: how the line refers back to it)."""
    return (f"{what}; sdhub reads, hashes and catalogues {them} but does not dequantise or rewrite {them} "
            "(prune, cast and convert need an unquantised copy of the model)")


def quantised_refusal(type_name: str) -> str:
    """Why a tensor of a quantised type cannot be cast or written (one line, for any command)."""
    return not_rewritten(f"{type_name} tensors are quantised")
