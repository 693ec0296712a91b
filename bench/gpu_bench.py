"""GPU telemetry cost: one cycle of each probe and the node's CPU share at 10 Hz, beside anchors.

Anchors, measured in the same run: for Vulkan, what a naive poller does (create the instance and
enumerate every cycle); for DRM, reading each file with pathlib's read_text (what Python GPU
monitors do); for NVML, where an NVIDIA driver answers, nvidia-smi-style polling (init, query the
same fields, shutdown, per sample; or `nvidia-smi --query-gpu` when the tool exists). The node's
CPU share is beside a plain rclpy node with the same 10 Hz timer publishing empty GpuTelemetry
messages, the floor any Python node pays. `--quick` finishes in well under 20 s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter

from bench.common import emit, time_ms
from bench.node_cpu import cpu_percent, ensure_init
from bench.sysfs_tree import drm_card
from krystal.gpu.drm_probe import DrmProbe
from krystal.gpu.nvml_probe import NvmlProbe
from krystal.gpu.vulkan_probe import VulkanProbe

_DRM_FILES = ("gpu_busy_percent", "mem_busy_percent", "mem_info_vram_used", "mem_info_vram_total")
_HWMON_FILES = ("temp1_input", "power1_average", "power1_cap", "freq1_input", "freq2_input")
_SMI_FIELDS = (
    "utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu,power.draw,"
    "power.limit,clocks.gr,clocks.mem,clocks_throttle_reasons.active"
)


def vulkan_every_cycle() -> int:
    probe = VulkanProbe()
    n = len(probe.sample())
    probe.close()
    return n


def drm_read_text(root: Path) -> list[dict[str, str]]:
    out = []
    for card in sorted(root.glob("card[0-9]*")):
        if "-" in card.name:
            continue
        values: dict[str, str] = {}
        for name in _DRM_FILES:
            p = card / "device" / name
            if p.exists():
                values[name] = p.read_text().strip()
        for hw in (card / "device" / "hwmon").glob("hwmon*"):
            for name in _HWMON_FILES:
                p = hw / name
                if p.exists():
                    values[name] = p.read_text().strip()
        out.append(values)
    return out


def nvml_smi_style() -> Any:
    import pynvml as nv

    nv.nvmlInit()
    try:
        rows = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            row: list[Any] = [nv.nvmlDeviceGetUtilizationRates(h), nv.nvmlDeviceGetMemoryInfo(h)]
            row.append(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            row += [nv.nvmlDeviceGetPowerUsage(h), nv.nvmlDeviceGetEnforcedPowerLimit(h)]
            row += [
                nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_GRAPHICS),
                nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            ]
            row.append(nv.nvmlDeviceGetCurrentClocksThrottleReasons(h))
            rows.append(row)
        return rows
    finally:
        nv.nvmlShutdown()


def nvidia_smi() -> str:
    cmd = ["nvidia-smi", f"--query-gpu={_SMI_FIELDS}", "--format=csv,noheader"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout


class FloorNode(Node):
    """The anchor for CPU share: a 10 Hz timer publishing `per_cycle` empty GpuTelemetry."""

    def __init__(self, per_cycle: int) -> None:
        from krystal.msg import GpuTelemetry

        super().__init__("gpu_floor")
        self._msg, self._n = GpuTelemetry, per_cycle
        self._pub = self.create_publisher(GpuTelemetry, "gpu/telemetry", 4)
        self.create_timer(0.1, self._tick)

    def _tick(self) -> None:
        for _ in range(self._n):
            self._pub.publish(self._msg())


def compare(case: str, ours: Any, anchor: Any, anchor_name: str, *, repeat: int, anchor_repeat: int) -> None:
    ours_min, ours_med = time_ms(ours, repeat=repeat)
    anchor_min, anchor_med = time_ms(anchor, repeat=anchor_repeat, warmup=1)
    emit("gpu", case, ours_med, anchor_med, "ms", ours_min=round(ours_min, 4),
         anchor_min=round(anchor_min, 4), anchor_name=anchor_name)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GPU telemetry cost against naive pollers")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 2 s CPU windows")
    args = parser.parse_args(argv)
    repeat = 30 if args.quick else 300
    seconds = 2.0 if args.quick else 10.0
    vulkan = VulkanProbe()
    if vulkan.available:
        n = len(vulkan.sample())
        compare(f"vulkan sample ({n} devices)", vulkan.sample, vulkan_every_cycle,
                "vkCreateInstance + enumerate per cycle", repeat=repeat,
                anchor_repeat=5 if args.quick else 20)  # fmt: skip
    else:
        print(f"vulkan: {vulkan.absent_reason}; skipped", file=sys.stderr)
    vulkan.close()
    nvml = NvmlProbe()
    if nvml.available and nvml.sample():
        if shutil.which("nvidia-smi"):
            compare("nvml sample", nvml.sample, nvidia_smi, "nvidia-smi --query-gpu per sample",
                    repeat=repeat, anchor_repeat=5)  # fmt: skip
        compare("nvml sample (library)", nvml.sample, nvml_smi_style, "pynvml init+query+shutdown per sample",
                repeat=repeat, anchor_repeat=10 if args.quick else 50)  # fmt: skip
    else:
        print(f"nvml: {nvml.absent_reason or nvml.failure}; skipped", file=sys.stderr)
    nvml.close()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        drm_card(root, 0, "0000:03:00.0")
        drm_card(root, 1, "0000:04:00.0")
        drm = DrmProbe(str(root))
        drm.sample()
        compare("drm sample (2 cards)", drm.sample, lambda: drm_read_text(root), "pathlib read_text per file",
                repeat=repeat, anchor_repeat=repeat)  # fmt: skip
        ensure_init()
        ours = cpu_percent(lambda: _our_node(root), seconds)
        floor = cpu_percent(lambda: FloorNode(3), seconds)
    emit("gpu", "node CPU at 10 Hz (llvmpipe + 2 DRM cards)", ours, floor, "% of one core",
         anchor_name="rclpy floor: 10 Hz timer publishing 3 empty GpuTelemetry", goal=2.0)  # fmt: skip


def _our_node(root: Path) -> Node:
    from krystal.gpu.node import GpuTelemetryNode

    return GpuTelemetryNode(
        parameter_overrides=[Parameter("drm_root", value=str(root)), Parameter("rate_hz", value=10.0)]
    )


if __name__ == "__main__":
    main()
