"""gpu_telemetry's core: the probes sampled, merged per physical device, changes named. ROS-free.

Devices from different probes are the same physical device when their PCI address or UUID match,
or, failing both, when each probe has exactly one device with the same PCI vendor and device id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from krystal.gpu.drawcalls import DrawCallReader, DrawCalls, NoDrawCalls, assign
from krystal.gpu.model import GpuDevice

PRIORITY = ("nvml", "drm", "vulkan")  # whose measured numbers win when two probes have one


class Probe(Protocol):
    absent_reason: str

    def sample(self) -> list[GpuDevice]: ...


def _same(a: GpuDevice, b: GpuDevice) -> bool:
    return bool((a.pci and a.pci == b.pci) or (a.uuid and a.uuid == b.uuid))


def merge(groups: Sequence[Sequence[GpuDevice]]) -> list[GpuDevice]:
    """One device per physical GPU; `groups` in PRIORITY order (the first group's values win)."""
    merged: list[GpuDevice] = []
    for group in groups:
        for dev in group:
            match = next((i for i, m in enumerate(merged) if _same(m, dev)), None)
            if match is None:
                same_ids = [
                    i
                    for i, m in enumerate(merged)
                    if dev.vendor_id and (m.vendor_id, m.device_id) == (dev.vendor_id, dev.device_id)
                ]
                twins = [d for d in group if (d.vendor_id, d.device_id) == (dev.vendor_id, dev.device_id)]
                if len(same_ids) == 1 and len(twins) == 1 and not (merged[same_ids[0]].pci and dev.pci):
                    match = same_ids[0]
            if match is None:
                merged.append(dev)
            else:
                merged[match] = merged[match].fill_from(dev)
    return merged


def device_id(dev: GpuDevice) -> str:
    """A stable name for a physical device across cycles: its PCI address, UUID or probe key."""
    if dev.pci:
        return f"pci:{dev.pci}"
    if dev.uuid:
        return f"uuid:{dev.uuid}"
    return dev.key


@dataclass(frozen=True)
class Snapshot:
    devices: tuple[GpuDevice, ...]
    ids: tuple[str, ...]  # device_id of each
    appeared: tuple[str, ...]
    vanished: tuple[str, ...]
    probe_errors: dict[str, str]  # probe name -> why its sample raised this cycle
    draws: DrawCalls = field(default_factory=DrawCalls)  # every attached application, any device


class GpuTelemetry:
    def __init__(
        self,
        probes: dict[str, Probe],
        draw_calls: DrawCallReader | None = None,
    ) -> None:
        self.probes = probes
        self.draw_calls: DrawCallReader = draw_calls or NoDrawCalls()
        self._known: dict[str, GpuDevice] = {}
        self.gone: dict[str, GpuDevice] = {}  # devices seen once and missing now

    def cycle(self) -> Snapshot:
        groups: list[list[GpuDevice]] = []
        errors: dict[str, str] = {}
        for name in sorted(self.probes, key=lambda n: PRIORITY.index(n) if n in PRIORITY else 99):
            try:
                groups.append(self.probes[name].sample())
            except Exception as exc:  # a probe that raises must not silence the others
                errors[name] = f"{type(exc).__name__}: {exc}"
                groups.append([])
        found = merge(groups)
        try:
            draws = self.draw_calls.poll()
        except Exception as exc:  # a reader that raises leaves the devices without applications
            errors["draw_calls"] = f"{type(exc).__name__}: {exc}"
            draws = DrawCalls()
        devices = [
            replace(dev, apps=tuple(apps), draw_calls=sum(a.last.draw_calls for a in apps if a.last))
            for dev, apps in zip(found, assign(draws.apps, found), strict=True)
        ]
        ids = tuple(device_id(d) for d in devices)
        now = dict(zip(ids, devices, strict=True))
        appeared = tuple(i for i in ids if i not in self._known)
        vanished = tuple(i for i in self._known if i not in now)
        for i in vanished:
            self.gone[i] = self._known[i]
        for i in ids:
            self.gone.pop(i, None)
        self._known = now
        return Snapshot(tuple(devices), ids, appeared, vanished, errors, draws)
