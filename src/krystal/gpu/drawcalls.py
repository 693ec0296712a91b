"""Where draw-call counts come from: the Krystal Vulkan layer's rings (vkring.py), or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from krystal.gpu.model import GpuDevice
from krystal.gpu.vkring import SHM_DIR, AppFrames, RingSet


@dataclass(frozen=True)
class DrawCalls:
    """What the attached applications drew, this cycle."""

    apps: tuple[AppFrames, ...] = ()
    dropped: tuple[str, ...] = ()  # rings of processes that exited, dropped this cycle
    rejected: dict[str, str] = field(default_factory=dict)  # ring file -> why it is not read


@runtime_checkable
class DrawCallReader(Protocol):
    """Polled once per cycle; `absent_reason` says in words why nothing can be counted ('' if it can)."""

    absent_reason: str

    def poll(self) -> DrawCalls: ...


class NoDrawCalls:
    """No layer to read: no application is ever attached."""

    absent_reason = "draw-call counting disabled"

    def poll(self) -> DrawCalls:
        return DrawCalls()


class LayerDrawCalls:
    """Every process running with VK_LAYER_KRYSTAL_draws, from its ring under `root` (/dev/shm)."""

    absent_reason = ""

    def __init__(self, root: str = SHM_DIR, proc: str = "/proc", ignore_pid: int = 0) -> None:
        self.rings = RingSet(root, proc)
        self.ignore_pid = ignore_pid  # gpu_telemetry's own process: its Vulkan probe draws nothing

    def poll(self) -> DrawCalls:
        p = self.rings.poll()
        apps = tuple(a for a in p.apps if a.pid != self.ignore_pid)
        return DrawCalls(apps, tuple(p.dropped), p.rejected)

    def close(self) -> None:
        self.rings.close()


def assign(apps: Sequence[AppFrames], devices: Sequence[GpuDevice]) -> list[list[AppFrames]]:
    """Each application to the device with its PCI vendor and device id; the first device when
    none matches (its device is not known yet, or no probe sees it)."""
    out: list[list[AppFrames]] = [[] for _ in devices]
    if not devices:
        return out
    for app in apps:
        match = next(
            (
                i
                for i, d in enumerate(devices)
                if app.vendor_id and (d.vendor_id, d.device_id) == (app.vendor_id, app.device_id)
            ),
            0,
        )
        out[match].append(app)
    return out
