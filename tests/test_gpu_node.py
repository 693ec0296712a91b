"""gpu_telemetry on real DDS: llvmpipe through Vulkan, NVML absent, DRM cards from a folder, one removed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import rclpy
from bench.sysfs_tree import drm_card
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from krystal.msg import GpuTelemetry
from rclpy.parameter import Parameter

from krystal.gpu.node import GpuTelemetryNode
from krystal.ros.qos import reliable_qos, sensor_qos
from tests.conftest import executable, spin_until


class Listener:
    def __init__(self, name: str = "gpu_probe") -> None:
        self.node = rclpy.create_node(name)
        self.msgs: list[tuple[float, GpuTelemetry]] = []
        self.status: dict[str, DiagnosticStatus] = {}
        self.levels_seen: set[tuple[str, bytes]] = set()
        self.node.create_subscription(GpuTelemetry, "gpu/telemetry", self._msg, sensor_qos(20))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, reliable_qos())

    def _msg(self, m: GpuTelemetry) -> None:
        self.msgs.append((time.monotonic(), m))

    def _diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            self.status[s.name] = s
            self.levels_seen.add((s.name, s.level))

    def since(self, t: float) -> dict[str, GpuTelemetry]:
        """Latest message per (source, device_name) received after t."""
        return {f"{m.source}|{m.device_name}": m for ts, m in self.msgs if ts > t}


def test_llvmpipe_nvml_absent_two_drm_cards_one_removed(ros, tmp_path: Path) -> None:
    drm_card(tmp_path, 0, "0000:03:00.0")
    drm_card(tmp_path, 1, "0000:04:00.0", busy_percent=80, temp_mc=66000)
    (tmp_path / "no-rings").mkdir()
    node = GpuTelemetryNode(
        parameter_overrides=[
            Parameter("drm_root", value=str(tmp_path)),
            Parameter("rate_hz", value=10.0),
            Parameter("vulkan_ring_dir", value=str(tmp_path / "no-rings")),  # no application attached
        ]
    )
    probe = Listener()
    try:
        assert spin_until(
            [node, probe.node],
            lambda: len(probe.since(0)) >= 3 and "gpu_telemetry: summary" in probe.status,
            20.0,
        )
        seen = probe.since(0)
        llvmpipe = next(m for k, m in seen.items() if "llvmpipe" in k)
        assert llvmpipe.source == "vulkan" and llvmpipe.device_type == "cpu" and llvmpipe.vendor == "mesa"
        assert len(llvmpipe.heap_size_bytes) >= 1 and all(s > 0 for s in llvmpipe.heap_size_bytes)
        assert len(llvmpipe.heap_budget_bytes) == len(llvmpipe.heap_size_bytes)
        assert llvmpipe.api_version.startswith("1.") and llvmpipe.draw_calls == 0
        assert list(llvmpipe.app_pids) == [] and llvmpipe.shader == "" and llvmpipe.vertex_count == 0
        cards = sorted((m for m in seen.values() if m.source == "drm"), key=lambda m: m.device_name)
        assert [c.device_name for c in cards] == ["amdgpu 0000:03:00.0", "amdgpu 0000:04:00.0"]
        assert [round(c.utilization_ratio, 2) for c in cards] == [0.37, 0.8]
        assert [c.temperature_c for c in cards] == [51.0, 66.0]
        assert cards[0].memory_total_bytes == 8 << 30 and cards[0].power_w == 45.0
        summary = probe.status["gpu_telemetry: summary"]
        assert summary.level == DiagnosticStatus.OK and "no NVIDIA driver" in summary.message
        assert "no Vulkan application attached" in summary.message
        assert not [n for n, lvl in probe.levels_seen if lvl == DiagnosticStatus.ERROR]
        # the second card goes away mid-run: ERROR for it, the others go on
        shutil.rmtree(tmp_path / "card1")
        removed_at = time.monotonic()
        assert spin_until(
            [node, probe.node],
            lambda: (
                getattr(probe.status.get("gpu_telemetry: pci:0000:04:00.0"), "level", None)
                == DiagnosticStatus.ERROR
                and len(probe.since(removed_at + 0.3)) == 2
            ),
            20.0,
        )
        after = probe.since(removed_at + 0.3)
        assert "drm|amdgpu 0000:04:00.0" not in after and "drm|amdgpu 0000:03:00.0" in after
        assert "vanished" in probe.status["gpu_telemetry: pci:0000:04:00.0"].message
        assert probe.status["gpu_telemetry: summary"].level == DiagnosticStatus.ERROR
    finally:
        probe.node.destroy_node()
        node.destroy_node()


def test_installed_executable_publishes_llvmpipe(ros, procs, tmp_path: Path) -> None:
    proc = procs(
        [executable("gpu_telemetry"), "--ros-args", "-p", f"drm_root:={tmp_path}", "-p", "rate_hz:=5.0"]
    )
    probe = Listener("gpu_exe_probe")
    try:
        assert spin_until(
            [probe.node],
            lambda: (
                any("llvmpipe" in m.device_name and m.heap_size_bytes for _, m in probe.msgs)
                and "gpu_telemetry: summary" in probe.status
            ),
            30.0,
        ), proc.stderr
        summary = probe.status["gpu_telemetry: summary"]
        assert summary.level == DiagnosticStatus.OK and "no NVIDIA driver" in summary.message
    finally:
        probe.node.destroy_node()
    code, _ = proc.interrupt(10.0)
    assert code == 0, proc.stderr


def test_wrong_paths_warn_and_drm_garbage_names_the_file(ros, tmp_path: Path) -> None:
    """drm_root and vulkan_ring_dir that do not exist are WARN naming the paths (not OK "no GPU");
    garbage in a DRM file is WARN for that card with the file and the value."""
    drm_card(tmp_path / "drm", 0, "0000:03:00.0")
    busy = tmp_path / "drm/card0/device/gpu_busy_percent"
    busy.write_text("xx\n")
    wrong = GpuTelemetryNode(
        "gpu_wrong",
        parameter_overrides=[
            Parameter("drm_root", value=str(tmp_path / "nodrm")),
            Parameter("vulkan_ring_dir", value=str(tmp_path / "norings")),
            Parameter("vulkan", value=False),
        ],
    )
    garbage = GpuTelemetryNode(
        "gpu_garbage",
        parameter_overrides=[
            Parameter("drm_root", value=str(tmp_path / "drm")),
            Parameter("vulkan_ring_dir", value=str(tmp_path)),
            Parameter("vulkan", value=False),
        ],
    )
    probe = Listener()
    card = "gpu_garbage: pci:0000:03:00.0"
    try:
        nodes = [wrong, garbage, probe.node]
        assert spin_until(nodes, lambda: "gpu_wrong: summary" in probe.status and card in probe.status, 20.0)
        summary = probe.status["gpu_wrong: summary"]
        assert summary.level == DiagnosticStatus.WARN, summary
        assert f"drm_root {tmp_path / 'nodrm'} does not exist" in summary.message
        assert f"vulkan_ring_dir {tmp_path / 'norings'} does not exist" in summary.message
        status = probe.status[card]
        assert (
            status.level == DiagnosticStatus.WARN and str(busy) in status.message and "xx" in status.message
        )
        assert probe.status["gpu_garbage: summary"].level == DiagnosticStatus.OK
    finally:
        probe.node.destroy_node()
        garbage.destroy_node()
        wrong.destroy_node()
