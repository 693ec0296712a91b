"""`ros2 launch krystal krystal.launch.py`: the nodes of krystal.graph, one process each.

Thin on purpose: the node list, parameters and respawn policy come from krystal.graph.launch_specs,
the same description `krystal run` composes, so its tests cover both.
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from krystal.graph import entry_names, launch_specs
from krystal.paths import aggregator_installed, analyzers_file, default_params_file, transport_env


def _nodes(context: LaunchContext) -> list:
    selected = LaunchConfiguration("nodes").perform(context).strip()
    specs = launch_specs(
        params_file=LaunchConfiguration("params_file").perform(context),
        namespace=LaunchConfiguration("namespace").perform(context),
        log_level=LaunchConfiguration("log_level").perform(context),
        nodes=[n.strip() for n in selected.split(",") if n.strip()] if selected else None,
    )
    return [
        Node(
            package=s.package,
            executable=s.executable,
            name=s.name,
            namespace=s.namespace,
            parameters=list(s.parameters),
            arguments=list(s.arguments),
            remappings=list(s.remappings),
            respawn=s.respawn,
            respawn_delay=s.respawn_delay_s,
            output="screen",
        )
        for s in specs
    ]


def _aggregator(context: LaunchContext) -> list:
    """ROS's diagnostic aggregator, so rqt_robot_monitor (which reads /diagnostics_agg) shows the graph."""
    if LaunchConfiguration("aggregator").perform(context).lower() not in ("true", "1", "yes"):
        return []
    if not aggregator_installed():
        return [
            LogInfo(msg="diagnostic_aggregator is not installed: no /diagnostics_agg for rqt_robot_monitor")
        ]
    return [
        Node(
            package="diagnostic_aggregator",
            executable="aggregator_node",
            parameters=[LaunchConfiguration("analyzers_file").perform(context)],
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=str(default_params_file()),
                description="ROS parameters file for every node",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of the graph"),
            DeclareLaunchArgument(
                "log_level", default_value="info", description="debug, info, warn, error or fatal"
            ),
            DeclareLaunchArgument(
                "nodes",
                default_value="",
                description=f"Comma-separated subset of: {', '.join(entry_names())} (empty: all)",
            ),
            DeclareLaunchArgument(
                "aggregator",
                default_value="true",
                description="Start diagnostic_aggregator (when installed) for rqt_robot_monitor",
            ),
            DeclareLaunchArgument(
                "analyzers_file",
                default_value=str(analyzers_file()),
                description="diagnostic_aggregator analyzers grouping /diagnostics into /diagnostics_agg",
            ),
            *[SetEnvironmentVariable(k, v) for k, v in transport_env().items()],
            OpaqueFunction(function=_nodes),
            OpaqueFunction(function=_aggregator),
        ]
    )
