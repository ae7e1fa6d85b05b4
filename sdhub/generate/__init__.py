"""Generation with A1111 semantics: prompts, conditioning, RNG, samplers, pipeline, reference tests.

``sdhub.generate`` is also the public API's function (``sdhub.generate(model, prompt, ...)``):
once any module of this package is imported, Python binds the package to that name on ``sdhub``,
so the package itself is made callable and hands the call to ``sdhub.library.generate``.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sdhub.library import generate

        return generate(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        from sdhub.library import generate

        return inspect.signature(generate)


sys.modules[__name__].__class__ = _CallablePackage
