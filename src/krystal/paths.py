"""Where the installed package's files are, and the transport environment every process needs.

ROS-free (ament_index_python is plain Python), so the launch file and CMake-time code can use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PACKAGE = "krystal"
PROFILES_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def share_dir() -> Path:
    """share/krystal of the installed package, or the source tree when running from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, ValueError):
        return Path(__file__).resolve().parents[2]


def config_file(name: str) -> Path:
    return share_dir() / "config" / name


def default_params_file() -> Path:
    return config_file("krystal.yaml")


def transport_profile() -> Path:
    return config_file("fastdds.xml")


def transport_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables to add so Fast DDS uses our profile (large SHM segment), unless the user chose.

    With Fast DDS's defaults a best-effort image bigger than the 0.5 MiB shared-memory segment is
    lost between processes (docs/architecture.md, QoS and transport); other RMWs ignore the variable.
    """
    env = os.environ if environ is None else environ
    if env.get(PROFILES_ENV):
        return {}
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw and "fastrtps" not in rmw and "fastdds" not in rmw:
        return {}
    profile = transport_profile()
    return {PROFILES_ENV: str(profile)} if profile.is_file() else {}


def apply_transport_env() -> dict[str, str]:
    """Set the transport variables in this process (before rclpy.init); returns what was set."""
    added = transport_env()
    os.environ.update(added)
    return added


AGGREGATOR_PACKAGE = "diagnostic_aggregator"


def analyzers_file() -> Path:
    """diagnostic_aggregator's analyzers for /diagnostics_agg (rqt_robot_monitor reads it)."""
    return config_file("diagnostics_analyzers.yaml")


def aggregator_installed() -> bool:
    """Whether ROS's diagnostic_aggregator is in the ament index (it is not on PyPI)."""
    try:
        from ament_index_python.packages import get_package_prefix

        get_package_prefix(AGGREGATOR_PACKAGE)
    except (ImportError, LookupError, ValueError):
        return False
    return True
