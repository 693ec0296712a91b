"""Gateway: the running graph over HTTP, a live page, Prometheus metrics and a Foxglove bridge."""
