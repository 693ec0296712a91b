"""Krystal: a ROS 2 node graph for sensor and device integration (see docs/architecture.md)."""

__version__ = "0.1.0"
