"""The GPU driver and backend under torch, for ``sdhub doctor``: the facts that explain slow or failing
generation which torch itself does not report.

NVIDIA's Windows drivers from 532 on move allocations to system memory when VRAM runs out, so a
generation that does not fit becomes 10-50x slower instead of failing; 536.40 added the "CUDA -
Sysmem Fallback Policy" setting that turns it off. Linux drivers have no such fallback. On AMD
GPUs torch runs through ROCm (HIP) on Linux, or not at all without a ROCm build.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sdhub.generate.doctor import Check

#: The first Windows driver that falls back to system memory, and the first with the setting to stop it.
SYSMEM_FALLBACK_FROM = (532, 0)
SYSMEM_POLICY_FROM = (536, 40)
_NVIDIA_PROC_VERSION = Path("/proc/driver/nvidia/version")
_AMD_VENDOR_ID = "0x1002"


def parse_driver_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from ``nvidia-smi``'s driver_version or /proc/driver/nvidia/version text."""
    match = re.search(r"(?<![\d.])(\d{3})\.(\d{1,3})(?:\.\d+)?(?![\d.])", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def nvidia_driver_version() -> tuple[int, int] | None:
    """The NVIDIA driver's version on this machine, or None (no driver, or it cannot be asked)."""
    try:
        return parse_driver_version(_NVIDIA_PROC_VERSION.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        pass
    try:
        answer = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_driver_version(answer.stdout) if answer.returncode == 0 else None


def nvidia_finding(version: tuple[int, int], platform: str = sys.platform) -> Check:
    """What the NVIDIA driver means for generation on ``platform`` (``sys.platform`` values)."""
    text = f"NVIDIA driver {version[0]}.{version[1]:02d}"
    if not platform.startswith("win"):
        return Check("GPU driver", "ok", f"{text} (the system-memory fallback of Windows drivers "
                                                   "after 531 does not exist on this system)")
    if version < SYSMEM_FALLBACK_FROM:
        return Check("GPU driver", "ok", f"{text}: runs out of VRAM with an error, no slow fallback")
    fix = ("NVIDIA Control Panel > Manage 3D settings > CUDA - Sysmem Fallback Policy: Prefer No Sysmem Fallback"
           if version >= SYSMEM_POLICY_FROM else
           "update the driver to 536.40 or later and set NVIDIA Control Panel > Manage 3D settings > "
           "CUDA - Sysmem Fallback Policy to Prefer No Sysmem Fallback (or go back to 531.xx)")
    return Check("GPU driver", "warn", f"{text}: when VRAM runs out it moves work to system memory, "
                                               "10-50x slower until sdhub restarts, instead of failing", fix)


def amd_gpu_present(drm: Path = Path("/sys/class/drm")) -> bool:
    """Whether Linux lists an AMD graphics device (vendor 0x1002) under ``drm``."""
    try:
        vendors = list(drm.glob("card*/device/vendor"))
    except OSError:
        return False
    for vendor in vendors:
        try:
            if vendor.read_text(encoding="ascii", errors="replace").strip().lower() == _AMD_VENDOR_ID:
                return True
        except OSError:
            continue
    return False


def backend_finding(hip_version: str | None, cuda_version: str | None, amd_present: bool) -> Check | None:
    """Which backend torch drives an AMD GPU with; None when there is nothing AMD to say."""
    if hip_version:
        return Check("GPU backend", "ok", f"ROCm (HIP {hip_version}): torch drives the AMD GPU as 'cuda'")
    if amd_present:
        build = f"a CUDA {cuda_version} build" if cuda_version else "a CPU-only build"
        return Check("GPU backend", "warn", f"an AMD GPU is present but torch is {build}, so it is not used",
                             "install torch's ROCm build (https://pytorch.org/get-started/locally/, Compute Platform: "
                             "ROCm) on Linux")
    return None


def driver_checks() -> list[Check]:
    """Everything this machine's GPU drivers and torch build say, for doctor."""
    import torch

    findings = []
    version = nvidia_driver_version()
    if version is not None:
        findings.append(nvidia_finding(version))
    backend = backend_finding(getattr(torch.version, "hip", None), torch.version.cuda,
                              sys.platform.startswith("linux") and amd_gpu_present())
    if backend is not None:
        findings.append(backend)
    return findings
