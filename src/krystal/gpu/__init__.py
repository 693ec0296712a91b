"""gpu_telemetry's room: Vulkan probe, NVML, sysfs DRM, merged per physical device."""
