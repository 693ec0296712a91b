"""Temporal verification of the graph's streams: MTL monitors, DTW pattern search, Lyapunov chaos test."""
