"""gpu_telemetry: Vulkan, NVML and sysfs DRM merged per physical device, GpuTelemetry per device.

Absent hardware or libraries are OK with a plain message; ERROR only for a device that was there
and went away, or a probe that was there and broke. The Vulkan instance is made once, here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from std_msgs.msg import Header

from krystal.gpu.drawcalls import DrawCallReader, LayerDrawCalls, NoDrawCalls
from krystal.gpu.drm_probe import DrmProbe
from krystal.gpu.model import GpuDevice
from krystal.gpu.nvml_probe import NvmlProbe
from krystal.gpu.telemetry import GpuTelemetry, Probe, Snapshot
from krystal.gpu.vkring import AppFrames, dominant_kind
from krystal.gpu.vulkan_probe import VulkanProbe
from krystal.msg import GpuTelemetry as GpuTelemetryMsg
from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import overridable, sensor_qos
from krystal.ros.shedding import Shedding, shed_param
from krystal.ros.streams import publish_stream

PARAMS = (
    Param("rate_hz", 2.0, "Sampling and publication rate (one GpuTelemetry per device per cycle)", 0.1, 50.0),
    Param("vulkan", True, "Enumerate Vulkan physical devices (heaps, budgets)", read_only=True),
    Param("nvml", True, "Poll NVIDIA GPUs through NVML", read_only=True),
    Param("drm", True, "Read AMD/Intel cards from sysfs DRM", read_only=True),
    Param("drm_root", "/sys/class/drm", "Folder shaped like /sys/class/drm", read_only=True),
    Param("frame_id", "gpu", "frame_id of the published GpuTelemetry"),
    Param(
        "vulkan_layer", True, "Read the Krystal Vulkan layer's per-process rings (draw calls)", read_only=True
    ),
    Param(
        "vulkan_ring_dir", "/dev/shm", "Folder of the layer's krystal-vk-<pid>-<app> rings", read_only=True
    ),
    shed_param("sampling and publication"),
)


def _fmt(value: float, scale: float = 1.0, digits: int = 1) -> str:
    return "nan" if math.isnan(value) else f"{value * scale:.{digits}f}"


def dominant_shader(apps: tuple[AppFrames, ...]) -> str:
    frames = [a.last for a in apps if a.last]
    return dominant_kind(
        sum(f.draw_calls for f in frames),
        sum(f.mesh_draws for f in frames),
        sum(f.dispatches for f in frames),
        sum(f.trace_rays for f in frames),
    )


def _apps_fields(apps: tuple[AppFrames, ...]) -> dict[str, Any]:
    last = [a.last for a in apps]

    def per_frame(name: str) -> list[int]:
        return [int(getattr(f, name)) if f else 0 for f in last]

    return {
        "vertex_count": sum(per_frame("vertices")),
        "shader": dominant_shader(apps),
        "app_names": [a.app for a in apps],
        "app_pids": [a.pid for a in apps],
        "app_frames": [a.frames for a in apps],
        "app_lost_frames": [a.lost for a in apps],
        "app_presenting": [a.presenting for a in apps],
        "app_draw_calls": per_frame("draw_calls"),
        "app_indirect_draw_calls": per_frame("indirect_draws"),
        "app_vertex_count": per_frame("vertices"),
        "app_index_count": per_frame("indices"),
        "app_instance_count": per_frame("instances"),
        "app_dispatches": per_frame("dispatches"),
        "app_workgroups": per_frame("workgroups"),
        "app_graphics_binds": per_frame("graphics_binds"),
        "app_compute_binds": per_frame("compute_binds"),
        "app_submits": per_frame("submits"),
        "app_shader": [f.shader if f else "" for f in last],
        "app_frame_time_ms": [f.frame_time_ms if f else math.nan for f in last],
    }


def to_msg(dev: GpuDevice, header: Header) -> GpuTelemetryMsg:
    return GpuTelemetryMsg(
        **_apps_fields(dev.apps),
        header=header,
        source=dev.source,
        device_name=dev.device_name,
        vendor=dev.vendor,
        vendor_id=dev.vendor_id,
        device_id=dev.device_id,
        device_type=dev.device_type,
        driver_version=dev.driver_version,
        api_version=dev.api_version,
        heap_size_bytes=list(dev.heap_size_bytes),
        heap_budget_bytes=list(dev.heap_budget_bytes),
        heap_usage_bytes=list(dev.heap_usage_bytes),
        heap_device_local=list(dev.heap_device_local),
        memory_total_bytes=dev.memory_total_bytes,
        memory_used_bytes=dev.memory_used_bytes,
        utilization_ratio=dev.utilization_ratio,
        memory_utilization_ratio=dev.memory_utilization_ratio,
        temperature_c=dev.temperature_c,
        power_w=dev.power_w,
        power_limit_w=dev.power_limit_w,
        clock_graphics_mhz=dev.clock_graphics_mhz,
        clock_memory_mhz=dev.clock_memory_mhz,
        draw_calls=dev.draw_calls,
    )


class GpuTelemetryNode(Node):
    def __init__(self, node_name: str = "gpu_telemetry", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, on_change=self._on_change)
        p = self.params
        probes: dict[str, Probe] = {}
        self._absent: dict[str, str] = {}  # source -> plain reason it is not there
        self._vulkan: VulkanProbe | None = None
        self._nvml: NvmlProbe | None = None
        if p["vulkan"]:
            self._vulkan = VulkanProbe()
            probes["vulkan"] = self._vulkan
        if p["nvml"]:
            self._nvml = NvmlProbe()
            probes["nvml"] = self._nvml
        if p["drm"]:
            self._drm: DrmProbe | None = DrmProbe(p["drm_root"])
            probes["drm"] = self._drm
        else:
            self._drm = None
        self._draws: DrawCallReader = (
            LayerDrawCalls(p["vulkan_ring_dir"], ignore_pid=os.getpid())
            if p["vulkan_layer"]
            else NoDrawCalls()
        )
        self.telemetry = GpuTelemetry(probes, self._draws)
        self._pub = publish_stream(
            self, GpuTelemetryMsg, "gpu/telemetry", sensor_qos(depth=4), qos_overriding_options=overridable()
        )
        self._last: Snapshot | None = None
        self._device_tasks: set[str] = set()
        self._shape: tuple[object, ...] = ()
        self._diagnostics = Diagnostics(self, hardware_id="gpu")
        self._diagnostics.add("summary", self._summary_health)
        self._shedding = Shedding(self, "sampling and publication")
        self._shedding.timer(lambda: 1.0 / self.params["rate_hz"], self._tick)
        self._tick()

    def _on_change(self, changed: set[str]) -> None:
        if changed & {"rate_hz", "shed_factor"}:
            self._shedding.retime()

    def _tick(self) -> None:
        try:
            snap = self.telemetry.cycle()
        except Exception as exc:  # the core catches per probe; this would be a bug, logged, not fatal
            self.get_logger().error(f"gpu cycle failed: {exc!r}", throttle_duration_sec=10.0)
            return
        log = self.get_logger()
        for i in snap.appeared:
            if self._last is not None:
                log.info(f"GPU {i} appeared")
        for i in snap.vanished:
            log.error(f"GPU {i} vanished")
        for name, err in snap.probe_errors.items():
            log.error(f"{name} probe failed: {err}", throttle_duration_sec=10.0)
        for dev in snap.devices:
            if dev.errors:
                log.warning(f"{dev.device_name}: {'; '.join(dev.errors)}", throttle_duration_sec=10.0)
        self._last = snap
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.params["frame_id"])
        for dev in snap.devices:
            self._pub.publish(to_msg(dev, header))
        if not snap.devices:  # applications may still draw (on a device no probe sees)
            self._pub.publish(
                GpuTelemetryMsg(
                    header=header,
                    source="none",
                    draw_calls=sum(a.last.draw_calls for a in snap.draws.apps if a.last),
                    **_apps_fields(snap.draws.apps),
                )
            )
        for name in snap.draws.dropped:
            log.info(f"Vulkan layer ring {name} dropped: its process exited or closed Vulkan")
        # levels can only move when this changes: skip building every Health each cycle
        shape = (
            snap.ids,
            tuple((a.pid, a.app) for a in snap.draws.apps),
            tuple(snap.draws.rejected.items()),
            tuple(self.telemetry.gone),
            tuple(snap.probe_errors),
            tuple(d.errors for d in snap.devices),
        )
        if shape == self._shape:
            return
        self._shape = shape
        for i in (*snap.ids, *self.telemetry.gone):
            if i not in self._device_tasks:
                self._device_tasks.add(i)
                self._diagnostics.add(i, self._device_task(i))
            self._diagnostics.level_changed(i, self._device_health(i).level)
        self._diagnostics.level_changed("summary", self._summary_health().level)

    def _sources(self) -> dict[str, str]:
        """Per source: what it has now, in words."""
        snap = self._last
        out: dict[str, str] = {}
        for name, probe in (("vulkan", self._vulkan), ("nvml", self._nvml), ("drm", self._drm)):
            if probe is None:
                out[name] = "disabled"
                continue
            if snap is not None and name in snap.probe_errors:
                out[name] = f"failed: {snap.probe_errors[name]}"
                continue
            n = sum(1 for d in (snap.devices if snap else ()) if name in d.source.split("+"))
            if isinstance(probe, NvmlProbe) and probe.failure:
                out[name] = probe.failure
            elif n:
                out[name] = f"{n} device(s)"
            elif isinstance(probe, DrmProbe):
                out[name] = (
                    f"drm_root {probe.root} does not exist"
                    if probe.root_missing
                    else f"no DRM cards under {probe.root}"
                )
            else:
                out[name] = probe.absent_reason or "no device"
        return out

    def _summary_health(self) -> Health:
        snap = self._last
        sources = self._sources()
        values = {f"{k}": v for k, v in sources.items()}
        if snap is None:
            return Health(WARN, "starting", values)
        values["devices"] = str(len(snap.devices))
        broken = [f"{k}: {v}" for k, v in sources.items() if v.startswith(("failed", "NVML "))]
        gone = list(self.telemetry.gone)
        wrong_paths = [
            v for v in (sources.get("drm", ""), self._ring_dir_missing()) if v.endswith("does not exist")
        ]
        names = ", ".join(d.device_name for d in snap.devices) or "no GPU"
        absent = [
            v for k, v in sources.items() if k != "drm" and not v.endswith("device(s)") and v != "disabled"
        ]
        text = names + (f"; {'; '.join(absent)}" if absent else "") + f"; {self._layer_text(snap, values)}"
        if gone:
            return Health(ERROR, f"vanished: {', '.join(gone)}; {text}", values)
        if broken:
            return Health(ERROR, f"{'; '.join(broken)}; {text}", values)
        if wrong_paths:  # a wrong path reads like a machine without GPUs: say so
            return Health(WARN, f"{'; '.join(wrong_paths)}; {text}", values)
        return Health(OK, text, values)

    def _ring_dir_missing(self) -> str:
        if isinstance(self._draws, LayerDrawCalls) and not os.path.isdir(self._draws.rings.root):
            return f"vulkan_ring_dir {self._draws.rings.root} does not exist"
        return ""

    def _layer_text(self, snap: Snapshot, values: dict[str, str]) -> str:
        """The Vulkan layer's applications in words; their per-frame counts in `values`."""
        if isinstance(self._draws, NoDrawCalls):
            values["vulkan_layer"] = "disabled"
            return "Vulkan layer reading disabled"
        apps = snap.draws.apps
        for a in apps:
            f = a.last
            values[f"app {a.app} ({a.pid})"] = (
                f"{f.draw_calls} draws ({f.indirect_draws} indirect, {f.mesh_draws} mesh), "
                f"{f.vertices} vertices, "
                f"{f.dispatches} dispatches, {f.trace_rays} trace-rays ({f.rays} rays) per frame; "
                f"{a.frames} frames, {a.lost} lost"
                if f
                else "no frame yet"
            )
        for name, why in snap.draws.rejected.items():
            values[f"ring {name}"] = f"not read: {why}"
        values["vulkan_layer"] = self._ring_dir_missing() or f"{len(apps)} application(s) attached"
        if not apps:
            return "no Vulkan application attached"
        return "Vulkan apps attached: " + ", ".join(f"{a.app} ({a.pid})" for a in apps)

    def _device_task(self, dev_id: str) -> Callable[[], Health]:
        return lambda: self._device_health(dev_id)

    def _device_health(self, dev_id: str) -> Health:
        snap = self._last
        if dev_id in self.telemetry.gone:
            dev = self.telemetry.gone[dev_id]
            return Health(ERROR, f"{dev.device_name} vanished", {"source": dev.source})
        if snap is None or dev_id not in snap.ids:
            return Health(OK, "not present")
        dev = snap.devices[snap.ids.index(dev_id)]
        local = [
            s for s, is_local in zip(dev.heap_size_bytes, dev.heap_device_local, strict=False) if is_local
        ]
        values = {
            "source": dev.source,
            "pci": dev.pci or "unknown",
            "vendor": dev.vendor,
            "type": dev.device_type,
            "driver": dev.driver_version,
            "api_version": dev.api_version,
            "heaps": str(len(dev.heap_size_bytes)),
            "device_local_heap_bytes": str(sum(local)),
            "memory_used_bytes": str(dev.memory_used_bytes),
            "memory_total_bytes": str(dev.memory_total_bytes),
            "utilization_percent": _fmt(dev.utilization_ratio, 100.0),
            "temperature_c": _fmt(dev.temperature_c),
            "power_w": _fmt(dev.power_w),
            "power_limit_w": _fmt(dev.power_limit_w),
            "clock_graphics_mhz": _fmt(dev.clock_graphics_mhz, digits=0),
            "throttle_reasons": ", ".join(dev.throttle_reasons) or "none",
            "draw_calls": str(dev.draw_calls),
            "vulkan_apps": ", ".join(f"{a.app} ({a.pid})" for a in dev.apps) or "none",
        }
        if dev.errors:
            values["errors"] = "; ".join(dev.errors)
            return Health(WARN, f"{dev.device_name}: {'; '.join(dev.errors)}", values)
        return Health(OK, f"{dev.device_name} ({dev.source})", values)

    def destroy_node(self) -> None:
        for probe in (self._vulkan, self._nvml):
            if probe is not None:
                probe.close()
        if isinstance(self._draws, LayerDrawCalls):
            self._draws.close()
        super().destroy_node()
