"""Vulkan physical devices through PyPI `vulkan`: enumerated once, heap budgets refreshed per cycle.

The instance is created once (tens of ms, the loader may print to stderr) and kept; each cycle
only calls vkGetPhysicalDeviceMemoryProperties2 with VK_EXT_memory_budget where a device has it.
No loader (the import or vkCreateInstance fails) is "absent", not an error. ROS-free.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from krystal.gpu.model import GpuDevice, uuid_text, vendor_name

_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}
_HEAP_DEVICE_LOCAL = 0x1
_BUDGET_EXT = "VK_EXT_memory_budget"
_PCI_EXT = "VK_EXT_pci_bus_info"


def load_vulkan() -> tuple[Any, str]:
    """(the vulkan module, '') or (None, why it is absent)."""
    try:
        import vulkan
    except Exception as exc:  # OSError without libvulkan, cffi errors, ImportError
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"no Vulkan loader ({type(exc).__name__}: {first_line})"
    return vulkan, ""


def _version(v: int) -> str:
    return f"{v >> 22}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


def _driver_version(vendor_id: int, v: int) -> str:
    if vendor_id == 0x10DE:  # NVIDIA packs 10.8.8.6 bits
        return f"{v >> 22}.{(v >> 14) & 0xFF}.{(v >> 6) & 0xFF}.{v & 0x3F}"
    return _version(v)


@dataclass(frozen=True)
class _Physical:
    handle: Any
    static: GpuDevice
    has_budget: bool


class VulkanProbe:
    """Owns one VkInstance for the node's lifetime."""

    def __init__(self, vulkan_module: Any = None, absent_reason: str = "") -> None:
        self.absent_reason = absent_reason
        self._vk = vulkan_module
        self._instance: Any = None
        self._devices: list[_Physical] = []
        if self._vk is None and not absent_reason:
            self._vk, self.absent_reason = load_vulkan()
        if self._vk is not None:
            self._open()

    @property
    def available(self) -> bool:
        return self._instance is not None

    def _open(self) -> None:
        vk = self._vk
        try:
            app = vk.VkApplicationInfo(
                pApplicationName="krystal gpu_telemetry",
                applicationVersion=1,
                pEngineName="krystal",
                engineVersion=1,
                apiVersion=vk.VK_MAKE_VERSION(1, 1, 0),
            )
            self._instance = vk.vkCreateInstance(vk.VkInstanceCreateInfo(pApplicationInfo=app), None)
            handles = vk.vkEnumeratePhysicalDevices(self._instance)
        except Exception as exc:  # VK_ERROR_INCOMPATIBLE_DRIVER when no ICD is installed
            self.close()
            self.absent_reason = f"no Vulkan driver ({type(exc).__name__})"
            return
        for index, handle in enumerate(handles):
            try:
                self._devices.append(self._describe(index, handle))
            except Exception as exc:  # one odd device must not hide the others
                self.absent_reason = f"vulkan device {index} not described: {exc!r}"
        if not self._devices and not self.absent_reason:
            self.absent_reason = "no Vulkan device"

    def _describe(self, index: int, handle: Any) -> _Physical:
        vk = self._vk
        exts = {e.extensionName for e in vk.vkEnumerateDeviceExtensionProperties(handle, None)}
        ids = vk.VkPhysicalDeviceIDProperties()
        drv = vk.VkPhysicalDeviceDriverProperties(pNext=ids)
        pci = None
        head: Any = drv
        if _PCI_EXT in exts:
            pci = vk.VkPhysicalDevicePCIBusInfoPropertiesEXT(pNext=drv)
            head = pci
        props2 = vk.VkPhysicalDeviceProperties2(pNext=head)
        vk.vkGetPhysicalDeviceProperties2(handle, props2)
        p = props2.properties
        name = vk.ffi.string(p.deviceName).decode("utf-8", "replace")
        driver_info = vk.ffi.string(drv.driverInfo).decode("utf-8", "replace")
        driver_name = vk.ffi.string(drv.driverName).decode("utf-8", "replace")
        driver = f"{driver_name} {driver_info}".strip() or _driver_version(p.vendorID, p.driverVersion)
        pci_text = (
            f"{pci.pciDomain:04x}:{pci.pciBus:02x}:{pci.pciDevice:02x}.{pci.pciFunction}" if pci else ""
        )
        static = GpuDevice(
            source="vulkan",
            key=f"vulkan:{index}",
            pci=pci_text,
            uuid=uuid_text(bytes(vk.ffi.buffer(ids.deviceUUID)).hex()) if p.vendorID == 0x10DE else "",
            device_name=name,
            vendor=vendor_name(p.vendorID),
            vendor_id=int(p.vendorID),
            device_id=int(p.deviceID),
            device_type=_TYPES.get(int(p.deviceType), "other"),
            driver_version=driver,
            api_version=_version(int(p.apiVersion)),
        )
        return _Physical(handle, static, _BUDGET_EXT in exts)

    def sample(self) -> list[GpuDevice]:
        """Every device with its heaps now; budgets and usage 0 where VK_EXT_memory_budget is absent."""
        vk = self._vk
        out = []
        for dev in self._devices:
            try:
                budget = vk.VkPhysicalDeviceMemoryBudgetPropertiesEXT() if dev.has_budget else None
                mem2 = (
                    vk.VkPhysicalDeviceMemoryProperties2(pNext=budget)
                    if budget
                    else (vk.VkPhysicalDeviceMemoryProperties2())
                )
                vk.vkGetPhysicalDeviceMemoryProperties2(dev.handle, mem2)
                mem = mem2.memoryProperties
                n = int(mem.memoryHeapCount)
                heaps = [mem.memoryHeaps[i] for i in range(n)]
                sizes = tuple(int(h.size) for h in heaps)
                local = tuple(bool(h.flags & _HEAP_DEVICE_LOCAL) for h in heaps)
                budgets = tuple(int(budget.heapBudget[i]) for i in range(n)) if budget else (0,) * n
                usage = tuple(int(budget.heapUsage[i]) for i in range(n)) if budget else (0,) * n
            except Exception as exc:
                out.append(replace(dev.static, errors=(f"vulkan memory properties: {exc!r}",)))
                continue
            out.append(
                replace(
                    dev.static,
                    heap_size_bytes=sizes,
                    heap_budget_bytes=budgets,
                    heap_usage_bytes=usage,
                    heap_device_local=local,
                )
            )
        return out

    def close(self) -> None:
        if self._instance is not None:
            with contextlib.suppress(Exception):
                self._vk.vkDestroyInstance(self._instance, None)
        self._instance = None
        self._devices = []
