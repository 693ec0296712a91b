"""rqt_robot_monitor reads /diagnostics_agg: the package ships diagnostic_aggregator's analyzers and
the launch file starts the aggregator where the package is installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from krystal import paths
from krystal.graph import GRAPH

ROOT = Path(__file__).resolve().parent.parent


def _analyzers() -> dict:
    params = yaml.safe_load(paths.analyzers_file().read_text())["analyzers"]["ros__parameters"]
    return {k: v for k, v in params.items() if isinstance(v, dict)}


def test_analyzers_file_is_installed_and_well_formed() -> None:
    assert paths.analyzers_file().is_file()
    assert (ROOT / "config" / "diagnostics_analyzers.yaml").read_text() == paths.analyzers_file().read_text()
    analyzers = _analyzers()
    assert analyzers
    for name, spec in analyzers.items():
        assert spec["type"] == "diagnostic_aggregator/GenericAnalyzer", name
        assert spec["path"] and any(spec.get(k) for k in ("contains", "startswith", "name", "expected"))


def test_every_node_of_the_graph_has_a_group() -> None:
    def matches(status: str, spec: dict) -> bool:
        return any(s in status for s in spec.get("contains", ())) or any(
            status.startswith(s) for s in spec.get("startswith", ())
        )

    for entry in GRAPH:
        status = f"{entry.name}: health"
        assert any(matches(status, spec) for spec in _analyzers().values()), entry.name
    assert any(matches("krystal_view: view", spec) for spec in _analyzers().values())


def test_aggregator_is_found_through_the_ament_index(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert not paths.aggregator_installed()  # not on PyPI: absent in the venv
    marker = tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "diagnostic_aggregator"
    marker.parent.mkdir(parents=True)
    marker.touch()
    assert paths.aggregator_installed()


def test_launch_file_starts_the_aggregator_when_installed() -> None:
    pytest.importorskip("launch.actions", reason="ROS 2 `launch` is not installed here (not on PyPI)")
    pytest.importorskip("launch_ros.actions", reason="ROS 2 `launch_ros` is not installed here")
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node

    source = PythonLaunchDescriptionSource(str(ROOT / "launch" / "krystal.launch.py"))
    description = source.get_launch_description(LaunchContext())
    context = LaunchContext()
    made = []
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations.setdefault(entity.name, entity.default_value[0].perform(context))
        elif isinstance(entity, OpaqueFunction):
            made.extend(entity.execute(context) or [])
    if paths.aggregator_installed():
        assert any(isinstance(a, Node) and a.node_package == "diagnostic_aggregator" for a in made)
    else:
        assert any(isinstance(a, LogInfo) for a in made), os.environ.get("AMENT_PREFIX_PATH")
