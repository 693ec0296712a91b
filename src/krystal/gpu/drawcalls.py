"""Where draw-call counts come from: a small protocol a later Krystal Vulkan layer implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from krystal.gpu.model import GpuDevice


@runtime_checkable
class DrawCallReader(Protocol):
    """Draw calls counted since start for one device; 0 when nothing counts them."""

    def draw_calls(self, device: GpuDevice) -> int: ...


class NoDrawCalls:
    """Until the layer exists: every device has 0 draw calls."""

    def draw_calls(self, device: GpuDevice) -> int:
        return 0
