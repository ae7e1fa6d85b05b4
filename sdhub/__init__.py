"""sdhub: keep a Stable Diffusion model library in order and prove it works.

The Python API (docs/python-api.md): ``sdhub.convert``, ``prune``, ``inspect``, ``hash``, ``scan``,
``get``, ``generate``, ``smoke_test``, the ``Catalog``, the home (``open_home``, ``init_home``),
the result types and the errors, all ``SdhubError`` subclasses. Names are imported on first use
(PEP 562), so ``import sdhub`` stays cheap for the CLI: torch and the rest load only when needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> "module:attribute" it comes from ("module" alone: the module itself).
_EXPORTS: dict[str, str] = {
    # model files: path in, report out
    "convert": "sdhub.ops.convert:convert",
    "prune": "sdhub.library:prune",
    "inspect": "sdhub.ops.inspect:inspect_file",
    "hash": "sdhub.ops.hashing:hash_model",
    "scan_pickle": "sdhub.ops.scan_pickle:scan_pickle",
    # a home and its catalog
    "Home": "sdhub.config:Home",
    "HomeLike": "sdhub.library:HomeLike",
    "open_home": "sdhub.library:open_home",
    "init_home": "sdhub.config:init_home",
    "Catalog": "sdhub.catalog:Catalog",
    "scan": "sdhub.library:scan",
    "get": "sdhub.library:get",
    "get_from_images": "sdhub.library:get_from_images",
    "get_from_listing": "sdhub.library:get_from_listing",
    "civitai_browse": "sdhub.sources.civitai_browse:browse",
    "file_candidates": "sdhub.sources.get_list:file_candidates",
    "civitai_sync": "sdhub.library:civitai_sync",
    "outdated": "sdhub.library:outdated",
    "update": "sdhub.library:update",
    "move": "sdhub.library:move",
    # the library in object storage (docs/remote.md)
    "remote": "sdhub.remote",
    "add_remote": "sdhub.remote:add_remote",
    "remotes": "sdhub.remote:remotes",
    "remove_remote": "sdhub.remote:remove_remote",
    "push": "sdhub.remote:push",
    "pull": "sdhub.remote:pull",
    "remote_assets": "sdhub.remote:remote_assets",
    "PushReport": "sdhub.remote.pushing:PushReport",
    "PullReport": "sdhub.remote.pulling:PullReport",
    # sdhub.generate is also the generation package; calling that package calls the function.
    "generate": "sdhub.generate",
    "generate_with_defaults": "sdhub.generate.model_defaults:generate_with_defaults",
    "set_model_defaults": "sdhub.generate.model_defaults:set_model_defaults",
    "smoke_test": "sdhub.library:smoke_test",
    "sd_upscale": "sdhub.library:sd_upscale",
    "find_upscaler": "sdhub.generate.upscalers:find_upscaler",
    # result and option types
    "ConvertReport": "sdhub.ops.convert:ConvertReport",
    "PruneOptions": "sdhub.ops.prune:PruneOptions",
    "PruneReport": "sdhub.ops.prune:PruneReport",
    "InspectReport": "sdhub.ops.inspect:InspectReport",
    "ModelHashes": "sdhub.ops.hashing:ModelHashes",
    "FileHashes": "sdhub.ops.hashing:FileHashes",
    "ScanReport": "sdhub.catalog.records:ScanReport",
    "Asset": "sdhub.catalog.records:Asset",
    "AssetDetails": "sdhub.catalog.records:AssetDetails",
    "MoveReport": "sdhub.catalog.moving:MoveReport",
    "GetOptions": "sdhub.sources.get:GetOptions",
    "GetResult": "sdhub.sources.get:GetResult",
    "SyncResult": "sdhub.sources.get:SyncResult",
    "FromImageReport": "sdhub.sources.from_image:FromImageReport",
    "GenerationParams": "sdhub.generate.pipeline:GenerationParams",
    "GenerationResult": "sdhub.generate.generate:GenerationResult",
    "HiresParams": "sdhub.generate.hires:HiresParams",
    "Img2ImgParams": "sdhub.generate.img2img:Img2ImgParams",
    "ReferenceTestResult": "sdhub.generate.reference_tests:ReferenceTestResult",
    # progress reporting
    "Progress": "sdhub.progress:Progress",
    "RecordingProgress": "sdhub.progress:RecordingProgress",
    # errors
    "SdhubError": "sdhub.errors:SdhubError",
    "UsageError": "sdhub.errors:UsageError",
    "HomeError": "sdhub.errors:HomeError",
    "BadInputError": "sdhub.errors:BadInputError",
    "NotAModelError": "sdhub.errors:NotAModelError",
    "StandInFileError": "sdhub.errors:StandInFileError",
    "UnsupportedStructureError": "sdhub.errors:UnsupportedStructureError",
    "UnsafeFileError": "sdhub.errors:UnsafeFileError",
    "NotFoundError": "sdhub.errors:NotFoundError",
    "MissingFileError": "sdhub.errors:MissingFileError",
    "VerificationError": "sdhub.errors:VerificationError",
    "NetworkError": "sdhub.errors:NetworkError",
    "AuthError": "sdhub.errors:AuthError",
    "MissingDependencyError": "sdhub.errors:MissingDependencyError",
    "Interrupted": "sdhub.errors:Interrupted",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        target = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'sdhub' has no attribute {name!r}") from None
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ does the importing
    from sdhub.catalog import Catalog
    from sdhub.catalog.moving import MoveReport
    from sdhub.catalog.records import Asset, AssetDetails, ScanReport
    from sdhub.config import Home, init_home
    from sdhub.errors import (
        AuthError,
        BadInputError,
        HomeError,
        Interrupted,
        MissingDependencyError,
        MissingFileError,
        NetworkError,
        NotAModelError,
        NotFoundError,
        SdhubError,
        StandInFileError,
        UnsafeFileError,
        UnsupportedStructureError,
        UsageError,
        VerificationError,
    )
    from sdhub.generate.generate import GenerationResult
    from sdhub.generate.hires import HiresParams
    from sdhub.generate.img2img import Img2ImgParams
    from sdhub.generate.model_defaults import generate_with_defaults, set_model_defaults
    from sdhub.generate.pipeline import GenerationParams
    from sdhub.generate.reference_tests import ReferenceTestResult
    from sdhub.generate.upscalers import find_upscaler
    from sdhub.library import (
        HomeLike,
        civitai_sync,
        generate,
        get,
        move,
        open_home,
        prune,
        scan,
        sd_upscale,
        smoke_test,
    )
    from sdhub.ops.convert import ConvertReport, convert
    from sdhub.ops.hashing import FileHashes, ModelHashes
    from sdhub.ops.hashing import hash_model as hash
    from sdhub.ops.inspect import InspectReport
    from sdhub.ops.inspect import inspect_file as inspect
    from sdhub.ops.prune import PruneOptions, PruneReport
    from sdhub.ops.scan_pickle import scan_pickle
    from sdhub.progress import Progress, RecordingProgress
    from sdhub.library import get_from_images  # beside get: the models an image names
    from sdhub.library import get_from_listing  # beside get: a Civitai collection or search page
    from sdhub.sources.civitai_browse import browse as civitai_browse
    from sdhub.sources.get_list import file_candidates
    from sdhub.sources.from_image import FromImageReport
    from sdhub.sources.get import GetOptions, GetResult, SyncResult
    from sdhub.library import outdated, update  # beside get: Civitai's newer versions
    from sdhub import remote
    from sdhub.remote import add_remote, pull, push, remote_assets, remotes, remove_remote
    from sdhub.remote.pulling import PullReport
    from sdhub.remote.pushing import PushReport
