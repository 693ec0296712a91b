"""The launch file, with the real ROS 2 `launch` where it is installed (it is not on PyPI)."""

from __future__ import annotations

from pathlib import Path

import pytest

# launch.actions, not launch: the repository's launch/ folder is an importable namespace package.
pytest.importorskip(
    "launch.actions",
    reason="ROS 2 `launch` is not installed here (not on PyPI); this runs where ROS 2 is installed",
)
pytest.importorskip("launch_ros.actions", reason="ROS 2 `launch_ros` is not installed here")

from launch import LaunchContext
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.utilities import perform_substitutions
from launch_ros.actions import Node

from krystal.graph import GRAPH

LAUNCH_FILE = Path(__file__).resolve().parent.parent / "launch" / "krystal.launch.py"


def _node_actions(arguments: dict[str, str]) -> list[Node]:
    description = PythonLaunchDescriptionSource(str(LAUNCH_FILE)).get_launch_description(LaunchContext())
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    nodes: list[Node] = []
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations.setdefault(entity.name, entity.default_value[0].perform(context))
        elif isinstance(entity, SetEnvironmentVariable):
            entity.execute(context)
        elif isinstance(entity, OpaqueFunction):
            nodes.extend(a for a in entity.execute(context) or [] if isinstance(a, Node))
    return nodes


def _respawn(node: Node) -> bool:
    """The respawn flag: a bool in Humble, a typed substitution since Jazzy (both private)."""
    value = node._ExecuteLocal__respawn
    if isinstance(value, bool):
        return value
    from launch.utilities.type_utils import perform_typed_substitution

    return bool(perform_typed_substitution(LaunchContext(), value, bool))


def test_one_node_action_per_graph_entry() -> None:
    nodes = _node_actions({"params_file": "/tmp/krystal-test.yaml"})
    assert [n.node_executable for n in nodes] == [e.executable for e in GRAPH]
    for node, entry in zip(nodes, GRAPH, strict=True):
        assert node.node_package == "krystal"
        (param_file,) = node._Node__parameters
        assert perform_substitutions(LaunchContext(), param_file.param_file) == "/tmp/krystal-test.yaml"
        assert _respawn(node) == entry.sensor


def test_subset_of_nodes() -> None:
    nodes = _node_actions({"params_file": "/tmp/p.yaml", "nodes": "ascii_renderer"})
    assert [n.node_executable for n in nodes] == ["ascii_renderer"]
