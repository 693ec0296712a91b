"""What every node shares: QoS profiles, image conversion, diagnostics, parameters, spinning.

Submodules import rclpy; import them explicitly (this package's __init__ stays light).
"""
