# ruff: noqa: N802  (FakeNvml keeps NVML's function names)
"""gpu core: llvmpipe through the real Vulkan loader, NVML absent, DRM folders, merging. No DDS."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.sysfs_tree import drm_card
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krystal.gpu.drawcalls import DrawCallReader, DrawCalls, NoDrawCalls
from krystal.gpu.drm_probe import DrmProbe
from krystal.gpu.model import GpuDevice, pci_address, uuid_text
from krystal.gpu.nvml_probe import NvmlProbe, throttle_reason_names
from krystal.gpu.telemetry import GpuTelemetry, merge
from krystal.gpu.vkring import AppFrames, Frame
from krystal.gpu.vulkan_probe import VulkanProbe


def test_vulkan_enumerates_llvmpipe_with_heaps_once() -> None:
    probe = VulkanProbe()
    try:
        assert probe.available, probe.absent_reason
        first, second = probe.sample(), probe.sample()  # budgets refresh, the instance stays
        llvmpipe = next(d for d in first if "llvmpipe" in d.device_name)
        assert llvmpipe.device_type == "cpu" and llvmpipe.vendor == "mesa"
        assert llvmpipe.vendor_id == 0x10005 and llvmpipe.api_version.startswith("1.")
        assert "Mesa" in llvmpipe.driver_version
        assert llvmpipe.heap_size_bytes and all(s > 0 for s in llvmpipe.heap_size_bytes)
        n = len(llvmpipe.heap_size_bytes)
        assert (
            len(llvmpipe.heap_budget_bytes)
            == len(llvmpipe.heap_usage_bytes)
            == len(llvmpipe.heap_device_local)
            == n
        )
        assert [d.key for d in first] == [d.key for d in second]
    finally:
        probe.close()


def _run_probe(code: str, env: dict[str, str] | None = None) -> str:
    import os

    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_no_vulkan_loader_is_absent_not_an_error() -> None:
    out = _run_probe(
        "import sys; sys.modules['vulkan'] = None\n"
        "from krystal.gpu.vulkan_probe import VulkanProbe\n"
        "p = VulkanProbe(); print(p.available, p.absent_reason, p.sample())"
    )
    assert out.startswith("False no Vulkan loader") and out.endswith("[]")


def test_no_vulkan_driver_is_absent_not_an_error() -> None:
    out = _run_probe(
        "from krystal.gpu.vulkan_probe import VulkanProbe\n"
        "p = VulkanProbe(); print(p.absent_reason, p.sample())",
        env={"VK_DRIVER_FILES": "/nonexistent.json", "VK_ICD_FILENAMES": "/nonexistent.json"},
    )
    assert out.startswith(("no Vulkan driver", "no Vulkan device")) and out.endswith("[]")


def test_nvml_absent_here_says_no_nvidia_driver() -> None:
    probe = NvmlProbe()
    assert not probe.available and probe.absent_reason == "no NVIDIA driver" and not probe.failure
    assert probe.sample() == []
    probe.close()


class FakeNvmlError(Exception):
    pass


class NotSupported(Exception):
    pass


NotSupported.__name__ = "NVMLError_NotSupported"


class FakeNvml:
    """Stands in for the NVIDIA driver (absent here); its queries start raising on demand."""

    NVML_TEMPERATURE_GPU, NVML_CLOCK_GRAPHICS, NVML_CLOCK_MEM = 0, 0, 2

    def __init__(self) -> None:
        self.broken: set[str] = set()

    def _q(self, what: str, value: Any) -> Any:
        if what in self.broken:
            raise FakeNvmlError(f"{what}: Unknown Error")
        return value

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.14"

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return SimpleNamespace(
            busId=f"00000000:{0x17 + h:02X}:00.0".encode(), pciDeviceId=(0x2335 << 16) | 0x10DE
        )

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h:08x}-1111-2222-3333-444455556666"

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return self._q(f"util{h}", SimpleNamespace(gpu=40, memory=10))

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return self._q(f"mem{h}", SimpleNamespace(total=141 << 30, used=1 << 30))

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return self._q(f"temp{h}", 33)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._q(f"power{h}", 75_000)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        if clock == self.NVML_CLOCK_MEM:
            raise NotSupported()
        return 1980

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: int) -> int:
        return 0x1 | 0x40


def test_nvml_values_and_a_query_raising_mid_run() -> None:
    fake = FakeNvml()
    probe = NvmlProbe(fake)
    first = probe.sample()
    assert [d.pci for d in first] == ["0000:17:00.0", "0000:18:00.0"]
    d = first[0]
    assert (d.utilization_ratio, d.memory_utilization_ratio, d.temperature_c) == (0.4, 0.1, 33.0)
    assert (d.power_w, d.power_limit_w, d.clock_graphics_mhz) == (75.0, 700.0, 1980.0)
    assert math.isnan(d.clock_memory_mhz) and not d.errors  # not supported: NaN, not a failure
    assert d.throttle_reasons == ("gpu_idle", "hw_thermal_slowdown") and d.uuid.startswith("00000000-1111")
    fake.broken |= {"temp0", "power0"}
    later = probe.sample()
    assert math.isnan(later[0].temperature_c) and math.isnan(later[0].power_w)
    assert later[0].utilization_ratio == 0.4 and len(later[0].errors) == 2
    assert later[1].temperature_c == 33.0 and not later[1].errors


def test_drm_two_cards_and_one_removed(tmp_path: Path) -> None:
    drm_card(tmp_path, 0, "0000:03:00.0")
    drm_card(
        tmp_path,
        1,
        "0000:04:00.0",
        vendor_id=0x8086,
        device_id=0x56A0,
        driver="i915",
        busy_percent=None,
        vram_used=None,
        vram_total=None,
        temp_mc=None,
        power_uw=None,
        power_cap_uw=None,
    )
    (tmp_path / "card1" / "gt_act_freq_mhz").write_text("1450\n")
    probe = DrmProbe(str(tmp_path))
    amd, intel = probe.sample()
    assert (amd.pci, amd.vendor, amd.device_id, amd.device_type) == (
        "0000:03:00.0",
        "amd",
        0x73BF,
        "discrete",
    )
    assert (amd.utilization_ratio, amd.temperature_c, amd.power_w, amd.power_limit_w) == (
        0.37,
        51.0,
        45.0,
        200.0,
    )
    assert (amd.memory_used_bytes, amd.memory_total_bytes) == (1 << 30, 8 << 30)
    assert (
        intel.vendor == "intel" and intel.clock_graphics_mhz == 1450.0 and math.isnan(intel.utilization_ratio)
    )
    assert intel.memory_total_bytes == 0
    shutil.rmtree(tmp_path / "card1")
    assert [d.pci for d in probe.sample()] == ["0000:03:00.0"]


def test_merge_by_pci_and_uuid_and_sources_named() -> None:
    nvml = GpuDevice(
        source="nvml",
        key="nvml:0",
        pci="0000:17:00.0",
        uuid="u",
        device_name="NVIDIA H200",
        temperature_c=40.0,
        memory_total_bytes=5,
    )
    drm = GpuDevice(source="drm", key="drm:card0", pci="0000:03:00.0", temperature_c=50.0)
    vk_nv = GpuDevice(
        source="vulkan",
        key="vulkan:0",
        uuid="u",
        device_name="NVIDIA H200 (vk)",
        device_type="discrete",
        heap_size_bytes=(1, 2),
        temperature_c=math.nan,
    )
    vk_amd = GpuDevice(
        source="vulkan", key="vulkan:1", pci="0000:03:00.0", device_name="AMD", heap_size_bytes=(3,)
    )
    vk_cpu = GpuDevice(source="vulkan", key="vulkan:2", device_name="llvmpipe", vendor_id=0x10005)
    merged = merge([[nvml], [drm], [vk_nv, vk_amd, vk_cpu]])
    assert [d.source for d in merged] == ["nvml+vulkan", "drm+vulkan", "vulkan"]
    nv, amd, cpu = merged
    assert nv.device_name == "NVIDIA H200" and nv.device_type == "discrete" and nv.heap_size_bytes == (1, 2)
    assert nv.temperature_c == 40.0 and amd.heap_size_bytes == (3,) and amd.device_name == "AMD"
    assert cpu.device_name == "llvmpipe"


def test_ids_match_when_pci_is_unknown_to_one_probe() -> None:
    a = GpuDevice(source="drm", key="drm:card0", pci="0000:03:00.0", vendor_id=0x1002, device_id=0x73BF)
    b = GpuDevice(source="vulkan", key="vulkan:0", vendor_id=0x1002, device_id=0x73BF, heap_size_bytes=(1,))
    assert [d.source for d in merge([[a], [b]])] == ["drm+vulkan"]
    twins = [b, GpuDevice(source="vulkan", key="vulkan:1", vendor_id=0x1002, device_id=0x73BF)]
    assert len(merge([[a], twins])) == 3  # two identical cards: cannot tell which is which


def test_addresses_and_uuids_normalised() -> None:
    assert pci_address("00000000:17:00.0") == pci_address("0000:17:00.0") == "0000:17:00.0"
    assert pci_address("garbage") == "" and pci_address("zz:17:00.0") == ""
    assert uuid_text("GPU-0a1b2c3d-1111-2222-3333-444455556666") == uuid_text(
        "0a1b2c3d111122223333444455556666"
    )
    assert throttle_reason_names(0) == ()


class Counting:
    """Two applications: one on card1 (its PCI ids), one whose device is not known yet (card0)."""

    absent_reason = ""

    def __init__(self) -> None:
        self.n = 0

    def poll(self) -> DrawCalls:
        self.n += 10
        frame = Frame(0, 0, 0, self.n, 0, 3 * self.n, 0, 1, 0, 0, 0, 1, 0, 1)
        on_card1 = AppFrames("game", 7, 0x1002, 0x1234, True, 1, 0, (frame,), frame)
        unknown = AppFrames("tool", 8, 0, 0, False, 1, 0, (frame,), replace(frame, draw_calls=1))
        return DrawCalls((on_card1, unknown))


class Broken:
    absent_reason = ""

    def sample(self) -> list[GpuDevice]:
        raise RuntimeError("driver went away")


def test_telemetry_keeps_going_and_names_changes(tmp_path: Path) -> None:
    drm_card(tmp_path, 0, "0000:03:00.0")
    drm_card(tmp_path, 1, "0000:04:00.0", device_id=0x1234)
    assert isinstance(NoDrawCalls(), DrawCallReader) and isinstance(Counting(), DrawCallReader)
    core = GpuTelemetry({"drm": DrmProbe(str(tmp_path)), "nvml": Broken()}, draw_calls=Counting())
    snap = core.cycle()
    assert snap.ids == ("pci:0000:03:00.0", "pci:0000:04:00.0") and snap.appeared == snap.ids
    assert "driver went away" in snap.probe_errors["nvml"]
    assert [d.draw_calls for d in snap.devices] == [1, 10]
    assert [[a.app for a in d.apps] for d in snap.devices] == [["tool"], ["game"]]
    shutil.rmtree(tmp_path / "card1")
    snap = core.cycle()
    assert snap.vanished == ("pci:0000:04:00.0",) and snap.ids == ("pci:0000:03:00.0",)
    assert "pci:0000:04:00.0" in core.gone


_CONTENT = st.one_of(st.binary(max_size=48), st.integers(-(10**15), 10**15).map(lambda i: str(i).encode()))
_DRM_FILES = ("uevent", "vendor", "device", "gpu_busy_percent", "mem_info_vram_used", "mem_info_vram_total")
_HWMON_FILES = ("temp1_input", "power1_average", "power1_cap", "freq1_input")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.fixed_dictionaries({k: _CONTENT for k in _DRM_FILES + _HWMON_FILES}))
def test_fuzz_drm_files_never_crash(tmp_path: Path, files: dict[str, bytes]) -> None:
    root = tmp_path / "drm"
    shutil.rmtree(root, ignore_errors=True)
    dev = drm_card(root, 0, "0000:03:00.0")
    for name in _DRM_FILES:
        (dev / name).write_bytes(files[name])
    for name in _HWMON_FILES:
        (dev / "hwmon" / "hwmon0" / name).write_bytes(files[name])
    (card,) = DrmProbe(str(root)).sample()
    assert math.isnan(card.utilization_ratio) or 0.0 <= card.utilization_ratio <= 1.0
    assert card.memory_used_bytes >= 0 and card.memory_total_bytes >= 0
    assert math.isnan(card.power_w) or card.power_w >= 0
    assert card.vendor_id >= 0 and card.device_type in ("discrete", "other")


def test_drm_garbage_and_impossible_values_name_the_file(tmp_path: Path) -> None:
    drm_card(tmp_path, 0, "0000:03:00.0", busy_percent=250)
    (tmp_path / "card0/device/mem_info_vram_used").write_text("lots\n")
    probe = DrmProbe(str(tmp_path))
    (card,) = probe.sample()
    assert math.isnan(card.utilization_ratio) and card.memory_used_bytes == 0
    busy, used = (str(tmp_path / "card0/device" / f) for f in ("gpu_busy_percent", "mem_info_vram_used"))
    assert card.errors == (f"{busy}: 250 outside 0..100", f"{used}: garbage b'lots\\n'")
    assert card.temperature_c == 51.0  # the good files are read as before
    assert not probe.root_missing and DrmProbe(str(tmp_path / "missing")).root_missing
