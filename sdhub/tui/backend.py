"""The library entry points the TUI calls, found lazily by name.

The TUI has no logic of its own: every action ends in one of these functions, the same ones the
CLI calls. Looking them up by name here keeps the app importable (and the action visibly
disabled, with a reason) when a part of the library is missing from an installation.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Callable

from sdhub.errors import MissingDependencyError, SdhubError

#: feature -> "module:attribute" of the library function (or class) behind it.
FEATURES: dict[str, str] = {
    "catalog": "sdhub.catalog:Catalog",
    "get": "sdhub.library:get",
    "civitai": "sdhub.sources.civitai:CivitaiClient",
    "civitai_browse": "sdhub.sources.civitai_browse:browse",
    "prune": "sdhub.ops.prune:prune",
    "prune_options": "sdhub.ops.prune:PruneOptions",
    "prune_output": "sdhub.ops.prune:default_output",
    "convert": "sdhub.ops.convert:convert",
    "convert_output": "sdhub.ops.convert:default_output",
    "hash": "sdhub.ops.hashing:hash_model",
    "inspect": "sdhub.ops.inspect:inspect_file",
    "smoke_test": "sdhub.generate.reference_tests:run_smoke",
    "asuka_test": "sdhub.generate.reference_tests:run_asuka",
    "demo": "sdhub.demo:run_demo",
    "remote_state": "sdhub.remote.listing:held_by_remotes",
}


class Unavailable(MissingDependencyError):
    """A feature whose library code is not present in this installation."""


def feature(name: str) -> Callable[..., Any]:
    """The library callable behind ``name``, or ``Unavailable`` saying what is missing."""
    module_name, _, attribute = FEATURES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise Unavailable(f"{name} is not available in this installation ({module_name}: {error})") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise Unavailable(f"{name} is not available in this installation "
                          f"({module_name} has no {attribute})") from None


def error_message(error: BaseException) -> str:
    """The one line a notification shows: the library's message, or a bug named as one."""
    if isinstance(error, SdhubError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"


def unavailable_reason(name: str) -> str | None:
    """None when ``name`` looks usable, else a one-line reason for a notification.

    Cheap enough for the UI thread: a module not imported yet is only looked for, not run (the
    ops modules import torch); ``feature`` itself, called in a worker, is the final word.
    """
    module_name, _, attribute = FEATURES[name].partition(":")
    module = sys.modules.get(module_name)
    if module is not None:
        return None if hasattr(module, attribute) else (
            f"{name} is not available in this installation ({module_name} has no {attribute})")
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{name} is not available in this installation (no {module_name})"
