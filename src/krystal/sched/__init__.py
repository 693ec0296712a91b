"""Scheduling: timing metrics (ROS-free); the deadline-aware executor will live here."""
