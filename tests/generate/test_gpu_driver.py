"""doctor's GPU driver and backend findings: the facts behind "generation got 10-50x slower" (NVIDIA's
Windows system-memory fallback after driver 531) and "my AMD GPU is not used" (no ROCm build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdhub.generate.gpu_driver import amd_gpu_present, backend_finding, nvidia_finding, parse_driver_version

PROC_VERSION = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n"
                "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")


@pytest.mark.parametrize(("text", "version"), [
    (PROC_VERSION, (535, 129)), ("531.79\n", (531, 79)), ("546.33", (546, 33)), ("560.94\n560.94\n", (560, 94)),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", None), ("", None),
])
def test_driver_versions_are_read_from_what_the_driver_prints(text: str, version: tuple[int, int] | None) -> None:
    assert parse_driver_version(text) == version


def test_windows_drivers_after_531_warn_of_the_slow_fallback_with_the_setting_that_stops_it() -> None:
    assert nvidia_finding((531, 79), "win32").status == "ok"
    recent = nvidia_finding((546, 33), "win32")
    assert recent.status == "warn" and "10-50x slower" in recent.detail
    assert "Sysmem Fallback Policy: Prefer No Sysmem Fallback" in recent.fix
    early = nvidia_finding((532, 3), "win32")  # before the setting existed: update first
    assert early.status == "warn" and early.fix.startswith("update the driver to 536.40")


def test_linux_drivers_have_no_fallback_to_warn_of() -> None:
    finding = nvidia_finding((550, 54), "linux")
    assert finding.status == "ok" and "550.54" in finding.detail and finding.fix is None


def test_the_amd_backend_is_named_or_its_absence_explained() -> None:
    assert "ROCm (HIP 6.2.41133" in backend_finding("6.2.41133", None, amd_present=True).detail
    unused = backend_finding(None, None, amd_present=True)
    assert unused.status == "warn" and "CPU-only build" in unused.detail and "ROCm" in unused.fix
    assert "CUDA 12.8 build" in backend_finding(None, "12.8", amd_present=True).detail
    assert backend_finding(None, "12.8", amd_present=False) is None


def test_an_amd_card_is_found_by_its_pci_vendor(tmp_path: Path) -> None:
    drm = tmp_path / "drm"
    (drm / "card0" / "device").mkdir(parents=True)
    (drm / "card0" / "device" / "vendor").write_text("0x10de\n")  # NVIDIA
    assert not amd_gpu_present(drm)
    (drm / "card1" / "device").mkdir(parents=True)
    (drm / "card1" / "device" / "vendor").write_text("0x1002\n")
    assert amd_gpu_present(drm)
    assert not amd_gpu_present(tmp_path / "no-such-folder")
