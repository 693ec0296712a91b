"""graph.py is the single node list: executables, config sections, declared parameters, launch specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rclpy.node import Node

from krystal.graph import GRAPH, STREAMS, by_executable, launch_specs, load_node_class, select
from krystal.supervise.node import NODE_NAME as SUPERVISOR
from krystal.supervise.node import SupervisorNode
from tests.conftest import executable

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "config" / "krystal.yaml").read_text())


def test_names_and_executables_are_unique() -> None:
    assert len({e.name for e in GRAPH}) == len(GRAPH)
    assert len({e.executable for e in GRAPH}) == len(GRAPH)


@pytest.mark.parametrize("entry", GRAPH, ids=lambda e: e.name)
def test_entry_is_installed_and_importable(entry) -> None:
    assert Path(executable(entry.executable)).stat().st_mode & 0o111
    assert issubclass(load_node_class(entry), Node)
    assert by_executable(entry.executable) is entry


def test_config_has_one_section_per_node() -> None:
    # `/**` holds the executor parameters every node shares (tests/test_sched_executor.py checks them);
    # krystal_supervisor is `krystal run --isolate` itself, not a node of the graph
    assert set(CONFIG) - {"/**", f"/**/{SUPERVISOR}"} == {f"/**/{e.name}" for e in GRAPH}


def test_config_matches_the_supervisor_parameters(ros) -> None:
    node = SupervisorNode()
    try:
        declared = {name: node.get_parameter(name).value for name in node.params.values}
    finally:
        node.destroy_node()
    assert CONFIG[f"/**/{SUPERVISOR}"]["ros__parameters"] == declared


@pytest.mark.parametrize("entry", GRAPH, ids=lambda e: e.name)
def test_config_matches_declared_parameters(ros, entry) -> None:
    """Every declared parameter is in krystal.yaml with its default, and nothing else is."""
    node = load_node_class(entry)(node_name=entry.name)
    try:
        declared = {name: node.get_parameter(name).value for name in node.params.values}
        for name in declared:
            assert node.describe_parameter(name).description, f"{name} has no description"
    finally:
        node.destroy_node()
    configured = CONFIG[f"/**/{entry.name}"]["ros__parameters"]
    assert configured == declared


def test_launch_specs_one_per_node() -> None:
    specs = launch_specs("/p.yaml", namespace="robot1", log_level="debug")
    assert [s.executable for s in specs] == [e.executable for e in GRAPH]
    for spec, entry in zip(specs, GRAPH, strict=True):
        assert spec.package == "krystal" and spec.name == entry.name
        assert spec.parameters == ("/p.yaml",) and spec.namespace == "robot1"
        assert spec.arguments == ("--ros-args", "--log-level", "debug")
        assert spec.respawn == entry.sensor
    assert [s.name for s in launch_specs("/p.yaml", nodes=["ascii_renderer"])] == ["ascii_renderer"]


def test_unknown_node_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown node"):
        select(["video_source", "laser"])


@pytest.mark.parametrize("s", STREAMS, ids=lambda s: s.topic)
def test_stream_rates_are_their_publishers_defaults(s) -> None:
    """A stream's declared rate is its publisher's configured one, so the deadline fits the stream."""
    configured = CONFIG[f"/**/{s.publisher}"]["ros__parameters"][s.rate_param]
    rate_hz = 1.0 / configured if s.rate_param.endswith("_s") else configured
    assert rate_hz == pytest.approx(s.rate_hz)
    assert s.deadline_s > s.period_s
