"""Device agents: one lifecycle node per device, each driving it through a small driver interface.

The modules here are ROS-free (the `model` driver talks to ROS through an injected client), so the
agent state machine, schemas, audit log and drivers are tested without DDS; `node.py` is the shell.
"""
