"""``sdhub doctor``: can this machine and home generate images, and if not, the one-line fix.

Checks torch and the device (CUDA, Apple MPS, CPU; VRAM; fp16/bf16 support), the versions of the
libraries generation uses, the shipped configs and the CLIP tokenizers (the local Hugging Face
cache, or open_clip's vocabulary), and the home (catalog, folders, free disk). ``fetch_tokenizers`` downloads the tokenizer
files with ``huggingface_hub`` so later generation works offline.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import shutil
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from sdhub.config import Home, missing_home_message
from sdhub.errors import MissingDependencyError, SdhubError
from sdhub.generate import model_configs
from sdhub.progress import NULL_PROGRESS, Progress

#: Oldest versions generation is known to work with.
MINIMUM_VERSIONS = {"torch": "2.4", "diffusers": "0.32", "transformers": "4.45", "safetensors": "0.4",
                    "huggingface_hub": "0.30", "torchsde": "0.2.6"}
LOW_DISK_BYTES = 10 * 1024 ** 3


@dataclass
class Check:
    """One finding: ``ok``, ``warn`` or ``fail``, what was seen, and the fix when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class DoctorReport:
    """All checks; ``ok`` is False when any failed."""

    checks: list[Check] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.to_dict() for check in self.checks], "fetched": self.fetched}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_versions() -> list[Check]:
    """Each library generation needs: installed, and not older than known to work."""
    checks = []
    for package, minimum in MINIMUM_VERSIONS.items():
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(package, "fail", "not installed", f"pip install '{package}>={minimum}'"))
            continue
        if _version_tuple(version) < _version_tuple(minimum):
            checks.append(Check(package, "fail", f"{version} is older than {minimum}",
                                f"pip install -U '{package}>={minimum}'"))
        else:
            checks.append(Check(package, "ok", version))
    return checks


def _half_precision_works(device: str, dtype: Any) -> bool:
    """Run a convolution and a group norm in ``dtype`` on ``device``; False if torch lacks the kernels."""
    import torch

    try:
        x = torch.randn(1, 8, 8, 8, device=device, dtype=dtype)
        weight = torch.randn(8, 8, 3, 3, device=device, dtype=dtype)
        out = torch.nn.functional.group_norm(torch.nn.functional.conv2d(x, weight, padding=1), 4)
        return bool(torch.isfinite(out.float()).all())
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def check_device() -> list[Check]:
    """The device generation will use, its memory, and which half precisions work on it."""
    import torch

    from sdhub.generate.loading import select_device

    checks = []  # torch's own version is in check_versions
    device = select_device(None)
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        vram = properties.total_memory / 1024 ** 3
        status = "ok" if vram >= 4 else "warn"
        checks.append(Check("device", status, f"CUDA {torch.version.cuda}: {properties.name}, {vram:.1f} GiB VRAM",
                            None if status == "ok" else "under 4 GiB: use --dtype fp16 and small sizes"))
        checks.append(Check("fp16", "ok" if _half_precision_works("cuda", torch.float16) else "fail",
                            "half precision on the GPU", None))
        bf16 = torch.cuda.is_bf16_supported()
        checks.append(Check("bf16", "ok" if bf16 else "warn", "supported" if bf16 else "not supported by this GPU",
                            None if bf16 else "use --dtype fp16 (the default on GPUs)"))
    elif device.type == "mps":
        checks.append(Check("device", "ok", "Apple MPS (unified memory)"))
        checks.append(Check("fp16", "ok" if _half_precision_works("mps", torch.float16) else "warn",
                            "half precision on MPS", None))
    else:
        cuda_hint = ("torch has no CUDA support; install a CUDA build of torch to use an NVIDIA GPU"
                     if torch.version.cuda is None else "torch sees no GPU; check the driver (nvidia-smi)")
        checks.append(Check("device", "warn", f"CPU only ({os.cpu_count()} cores): generation is slow, "
                            "images use fp32 and the NV generator for GPU-identical noise", cuda_hint))
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            works = _half_precision_works("cpu", dtype)
            checks.append(Check(name, "ok" if works else "warn",
                                f"{name} kernels on the CPU {'work' if works else 'are missing'} "
                                "(used to reproduce fp16 VAE problems)", None if works else "upgrade torch"))
    from sdhub.generate.gpu_driver import driver_checks  # (that module builds on this one's Check)

    return checks + driver_checks()


def check_configs() -> list[Check]:
    """The shipped diffusers configs are present and readable."""
    checks = []
    folder = resources.files("sdhub.generate.configs")
    for arch in model_configs.SHIPPED_ARCHITECTURES:
        try:
            components = json.loads(folder.joinpath(f"{arch}.json").read_text(encoding="utf-8"))
            missing = [name for name in ("model_index", "unet", "vae", "scheduler") if name not in components]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            checks.append(Check(f"config {arch}", "ok", "shipped with sdhub"))
        except (OSError, ValueError) as error:
            checks.append(Check(f"config {arch}", "fail", f"unreadable: {error}", "reinstall sdhub"))
    return checks


def check_tokenizers() -> list[Check]:
    """The CLIP tokenizers are at hand offline: in the Hugging Face cache or built from open_clip's vocabulary."""
    from sdhub.generate.clip_vocabulary import packaged_tokenizer_dir, vocabulary_source

    checks = []
    for name, repos in model_configs.TOKENIZER_REPOS.items():
        label = "CLIP tokenizer" if name == "tokenizer" else "OpenCLIP bigG tokenizer (SDXL)"
        try:
            folder = model_configs.resolve_tokenizer_dir(name)
        except MissingDependencyError:
            checks.append(Check(label, "fail", f"{repos[0]} is not in the Hugging Face cache "
                                f"{model_configs.hub_cache_dir()} and {model_configs.VOCABULARY_PACKAGE} is not "
                                "installed", f"{model_configs.INSTALL_HINT.strip('`')}, or sdhub doctor "
                                "--fetch-tokenizers (needs network once)"))
            continue
        where = vocabulary_source() if folder == packaged_tokenizer_dir() else f"in the Hugging Face cache: {folder}"
        checks.append(Check(label, "ok", where))
    return checks


def check_catalog(home: Home) -> Check:
    """The catalog opens, and every file it lists is one sdhub can read as a model (not broken or unsafe)."""
    from sdhub.catalog import Catalog

    try:
        with Catalog(home) as catalog:
            assets = catalog.list_assets()
    except SdhubError as error:
        return Check("catalog", "fail", f"unreadable: {error}", f"move {home.database_path} away, then sdhub scan")
    unusable = [asset for asset in assets if asset.defect and asset.present_files]
    if not unusable:
        return Check("catalog", "ok", f"{home.database_path} ({len(assets)} assets)")
    names = ", ".join(asset.present_files[0].path for asset in unusable[:3]) + (" ..." if len(unusable) > 3 else "")
    kinds = ", ".join(f"{sum(a.defect == d for a in unusable)} {d}" for d in sorted({a.defect for a in unusable}))
    return Check("catalog", "warn", f"{len(unusable)} of {len(assets)} catalogued files cannot be used as models "
                 f"({kinds}): {names}", "sdhub ls --problems says why; delete them or get them again")


def check_home(home: Home) -> list[Check]:
    """The home's catalog, folders and free disk space."""
    if not home.root.is_dir():
        return [Check("home", "fail", missing_home_message(home.root, home.source),
                      f"sdhub init --create {shlex.quote(str(home.root))}")]
    checks = []
    if home.database_path.is_file():
        checks.append(check_catalog(home))
    elif home.is_set_up:
        checks.append(Check("catalog", "ok", f"set up, nothing catalogued yet ({home.database_path} is made "
                                             "by the first scan)", None))
    else:
        checks.append(Check("catalog", "fail", f"no catalog at {home.database_path}",
                            f"sdhub init {shlex.quote(str(home.root))} && sdhub scan"))
    missing = [f"{kind}: {path}" for kind, path in home.folders.items() if not path.is_dir()]
    if missing:
        checks.append(Check("folders", "warn", "missing " + "; ".join(missing), f"sdhub init {home.root}"))
    else:
        checks.append(Check("folders", "ok", f"{len(home.folders)} folders ({home.layout} layout)"))
    probe = home.root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    checks.append(Check("disk", "ok" if free >= LOW_DISK_BYTES else "warn", f"{free / 1024 ** 3:.1f} GiB free",
                        None if free >= LOW_DISK_BYTES else "free some space: a checkpoint is 2-7 GB"))
    writable = os.access(probe, os.W_OK)
    checks.append(Check("outputs", "ok" if writable else "fail", f"images go to {home.outputs_dir}",
                        None if writable else "choose a writable home with --home"))
    return checks


def check_leftovers(home: Home) -> list[Check]:
    """Temporary files of interrupted converts and prunes, and stopped downloads, with their sizes."""
    from sdhub.ops.leftovers import IN_USE, RECENT, RESUMABLE, STALE, find_leftovers, summarize

    if not home.root.is_dir():
        return []
    items = None
    if home.database_path.is_file():  # the catalog knows the extra folders a scan walks
        from sdhub.catalog import Catalog

        try:
            with Catalog(home) as catalog:
                items = catalog.leftovers()
        except SdhubError:  # an unreadable catalog is check_catalog's finding; look in the home's folders
            items = None
    if items is None:
        items = find_leftovers([*home.folders.values(), home.downloads_dir, home.catalog_dir, home.outputs_dir])
    if not items:
        return [Check("leftovers", "ok", "no temporary or partial files")]
    detail = summarize(items, lambda size: f"{size / 1024 ** 3:.1f} GiB" if size >= 1024 ** 3
                       else f"{size / 1024 ** 2:.1f} MiB")
    shown = [item.path for item in items if item.state not in (IN_USE, RECENT)][:3]
    if shown:
        detail += ": " + ", ".join(shown) + (" ..." if len(items) > len(shown) else "")
    if any(item.state == STALE for item in items):
        return [Check("leftovers", "warn", detail, "sdhub clean (sdhub clean --dry-run lists them first)")]
    if any(item.state == RESUMABLE for item in items):
        return [Check("leftovers", "warn", detail, "run the same sdhub get to resume, or sdhub clean --partials")]
    return [Check("leftovers", "ok", detail)]


def fetch_tokenizers(progress: Progress = NULL_PROGRESS) -> list[str]:
    """Download the tokenizer files of every tokenizer repo into the Hugging Face cache."""
    from sdhub.sources.huggingface import fetch
    from sdhub.sources.refs import HubRef

    fetched = []
    for repos in model_configs.TOKENIZER_REPOS.values():
        repo = repos[0]
        if repo in fetched:
            continue
        fetch(HubRef(repo), allow_patterns=model_configs.TOKENIZER_FILES, progress=progress)
        fetched.append(repo)
    return fetched


def run_doctor(home: Home, *, fetch: bool = False, progress: Progress = NULL_PROGRESS) -> DoctorReport:
    """Every check, after fetching the tokenizers first when ``fetch`` is set."""
    report = DoctorReport()
    if fetch:
        try:
            report.fetched = fetch_tokenizers(progress)
        except SdhubError as error:
            report.checks.append(Check("fetch tokenizers", "fail", str(error),
                                       "connect to the internet (or set HF_ENDPOINT to a mirror) and retry"))
    report.checks.extend(check_versions())
    report.checks.extend(check_device())
    report.checks.extend(check_configs())
    report.checks.extend(check_tokenizers())
    report.checks.extend(check_home(home))
    report.checks.extend(check_leftovers(home))
    return report
