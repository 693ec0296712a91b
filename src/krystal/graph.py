"""The node list: read by CMake (executables), the launch file and `krystal run` (composition).

ROS-free on purpose: CMake imports it at configure time, and tests check it without DDS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

PACKAGE = "krystal"


@dataclass(frozen=True)
class NodeEntry:
    """One node of the graph."""

    name: str  # node name, also its section in config/krystal.yaml
    executable: str  # lib/krystal/<executable>
    node_class: str  # "module:Class", imported only when the node is started
    description: str
    sensor: bool = False  # respawned by the launch file when it dies
    # composed (`krystal run`): spun on its own executor and thread, with its own executor.* settings,
    # so its callbacks never wait behind the others' (the controller and the work it controls)
    own_thread: bool = False
    remappings: tuple[tuple[str, str], ...] = field(default_factory=tuple)


GRAPH: tuple[NodeEntry, ...] = (
    NodeEntry(
        name="video_source",
        executable="video_source",
        node_class="krystal.video.node:VideoSourceNode",
        description="Camera, video file, stream or test pattern to sensor_msgs/Image",
        sensor=True,
    ),
    NodeEntry(
        name="ascii_renderer",
        executable="ascii_renderer",
        node_class="krystal.ascii.node:AsciiRendererNode",
        description="sensor_msgs/Image to AsciiFrame (text art)",
    ),
    NodeEntry(
        name="gateway",
        executable="gateway",
        node_class="krystal.gateway.node:GatewayNode",
        description="HTTP API, live page, Prometheus metrics and Foxglove bridge for the graph",
    ),
    NodeEntry(
        name="gpu_telemetry",
        executable="gpu_telemetry",
        node_class="krystal.gpu.node:GpuTelemetryNode",
        description="Vulkan, NVML and sysfs DRM GPUs to GpuTelemetry",
        sensor=True,
    ),
    NodeEntry(
        name="thermal_monitor",
        executable="thermal_monitor",
        node_class="krystal.thermal.node:ThermalMonitorNode",
        description="Thermal zones and hwmon sensors to ThermalState and sensor_msgs/Temperature",
        sensor=True,
    ),
    NodeEntry(
        name="device_agents",
        executable="device_agents",
        node_class="krystal.devices.node:DeviceAgentsNode",
        description="One lifecycle node per configured device (DeviceStatus, DeviceCommand, audit log)",
    ),
    NodeEntry(
        name="reasoning",
        executable="reasoning",
        node_class="krystal.reasoning.node:ReasoningNode",
        description="Telemetry to StyleDecision: rules, frame-time prediction, TD policy, decision log",
        own_thread=True,
    ),
    NodeEntry(
        name="temporal_solver",
        executable="temporal_solver",
        node_class="krystal.temporal.node:TemporalSolverNode",
        description="Temporal-logic monitors, DTW patterns and a chaos test over topics to TemporalVerdict",
    ),
    NodeEntry(
        name="audio_source",
        executable="audio_source",
        node_class="krystal.audio.node:AudioSourceNode",
        description="Input device, audio file or generator to AudioFeatures (loudness, spectrum, tempo)",
        sensor=True,
    ),
)


@dataclass(frozen=True)
class Stream:
    """A topic published at a known rate. Its publishers offer, and its subscribers request, one QoS
    deadline derived here, so both sides always match (DDS matches a requested deadline only with
    an offered one at least as short); `krystal.ros.streams` applies it."""

    topic: str  # relative, so a namespace or remap moves it with the graph
    msg_type: str
    publisher: str  # the node (GRAPH name) that publishes it
    rate_param: str  # that node's parameter holding the rate (Hz) or, if it ends in _s, the period
    rate_hz: float  # the rate the graph expects: the parameter's default (tests/test_graph.py checks)
    deadline_periods: float = 3.0  # margin: a miss means this many periods without a message

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def deadline_s(self) -> float:
        return self.deadline_periods / self.rate_hz


# Not here: krystal/ascii (its rate is the camera's, and frames are dropped by design when stale),
# /diagnostics (other tools publish there with their own QoS), event-driven topics (style, status).
STREAMS: tuple[Stream, ...] = (
    Stream("camera/image_raw", "sensor_msgs/msg/Image", "video_source", "fps", 30.0),
    # the render feed: the same frames scaled once near the capture to what the renderer needs
    # (video_source render_width); the renderer takes it with `input: render` (the default config)
    Stream("camera/image_render", "sensor_msgs/msg/Image", "video_source", "fps", 30.0),
    Stream("audio/features", "krystal/msg/AudioFeatures", "audio_source", "analysis_rate_hz", 20.0),
    Stream("thermal/state", "krystal/msg/ThermalState", "thermal_monitor", "rate_hz", 2.0),
    Stream("gpu/telemetry", "krystal/msg/GpuTelemetry", "gpu_telemetry", "rate_hz", 2.0),
    Stream("krystal/render_stats", "krystal/msg/RenderStats", "ascii_renderer", "stats_period_s", 1.0),
)


# image_transport's `compressed` transport: beside each image stream `<topic>`, publishers that are asked
# to (video_source `compressed: true`) offer `<topic>/compressed` (sensor_msgs/CompressedImage, JPEG)
# at the same rate and QoS, and its deadline; that is the stream meant to cross a link between hosts
# (docs/scale.md). Not listed in STREAMS (it is off by default); `stream()` derives it.
COMPRESSED_SUFFIX = "compressed"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPE = "sensor_msgs/msg/Image"
IMAGE_TRANSPORTS = ("raw", COMPRESSED_SUFFIX)


def compressed_topic(topic: str) -> str:
    """`<topic>/compressed`, the name image_transport's compressed plugin uses."""
    return f"{topic.rstrip('/')}/{COMPRESSED_SUFFIX}"


def transport_topic(topic: str, transport: str) -> str:
    """The topic a subscriber of image `topic` reads with `transport` (one of IMAGE_TRANSPORTS)."""
    if transport not in IMAGE_TRANSPORTS:
        raise ValueError(f"image transport {transport!r} is not one of {', '.join(IMAGE_TRANSPORTS)}")
    return topic if transport == "raw" else compressed_topic(topic)


def stream(topic: str) -> Stream:
    """The declared stream of a relative topic name (or the compressed form of a declared image
    stream); KeyError names the declared ones."""
    for s in STREAMS:
        if s.topic == topic:
            return s
    base, _, suffix = topic.rpartition("/")
    if suffix == COMPRESSED_SUFFIX:
        for s in STREAMS:
            if s.topic == base and s.msg_type == IMAGE_TYPE:
                return Stream(
                    topic, COMPRESSED_TYPE, s.publisher, s.rate_param, s.rate_hz, s.deadline_periods
                )
    raise KeyError(
        f"{topic!r} is not a declared stream; graph.STREAMS has {', '.join(s.topic for s in STREAMS)}"
    )


def entry_names() -> list[str]:
    return [e.name for e in GRAPH]


def select(names: list[str] | None = None) -> list[NodeEntry]:
    """The entries named (all when None), in graph order; unknown names raise ValueError."""
    if not names:
        return list(GRAPH)
    known = {e.name: e for e in GRAPH}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown node(s) {', '.join(unknown)}; graph has {', '.join(known)}")
    return [e for e in GRAPH if e.name in names]


def by_executable(executable: str) -> NodeEntry:
    for e in GRAPH:
        if e.executable == executable:
            return e
    raise ValueError(f"no node with executable {executable!r} in the graph")


def load_node_class(entry: NodeEntry) -> Any:
    module_name, _, class_name = entry.node_class.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


@dataclass(frozen=True)
class LaunchSpec:
    """What a launch_ros Node action needs for one entry; the launch file maps it 1:1."""

    package: str
    executable: str
    name: str
    namespace: str
    parameters: tuple[str, ...]
    arguments: tuple[str, ...]
    remappings: tuple[tuple[str, str], ...]
    respawn: bool
    respawn_delay_s: float


def launch_specs(
    params_file: str,
    namespace: str = "",
    log_level: str = "info",
    nodes: list[str] | None = None,
    respawn_delay_s: float = 2.0,
) -> list[LaunchSpec]:
    """One spec per selected node; sensor nodes respawn, since a device can come and go."""
    return [
        LaunchSpec(
            package=PACKAGE,
            executable=e.executable,
            name=e.name,
            namespace=namespace,
            parameters=(params_file,),
            arguments=("--ros-args", "--log-level", log_level),
            remappings=e.remappings,
            respawn=e.sensor,
            respawn_delay_s=respawn_delay_s if e.sensor else 0.0,
        )
        for e in select(nodes)
    ]
