"""temporal_solver's CPU with its default specs while a watched topic runs at 1 kHz.

A publisher in another process sends RenderStats on krystal/render_stats (watched by two default
specs and the chaos test) at --rate; in this process the node spins alone and its CPU is measured
(process CPU seconds per wall second, DDS threads included, as bench/node_cpu.py). The anchor, in the
same run and on the same stream: an empty rclpy node with a subscription to that topic and a
callback that does nothing — the cost of receiving the messages at all in Python. Each node runs in
its own namespace, so other graphs on the machine do not feed it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import emit
from bench.node_cpu import ensure_init

TOPIC = "krystal/render_stats"


def publish(namespace: str, rate_hz: float, seconds: float) -> None:
    """The load: RenderStats at rate_hz, stamped now, paced by the clock (no bursts to catch up)."""
    import math
    import random

    import rclpy
    from krystal.msg import RenderStats

    from krystal.ros.qos import sensor_qos

    rclpy.init()
    node = rclpy.create_node("temporal_bench_publisher", namespace=namespace)
    pub = node.create_publisher(RenderStats, TOPIC, sensor_qos(depth=50))
    rng = random.Random(0)
    period = 1.0 / rate_hz
    end = time.monotonic() + seconds
    next_t = time.monotonic()
    i = 0
    while time.monotonic() < end and rclpy.ok():
        msg = RenderStats()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.render_time_ms_p99 = 20.0 + 5.0 * math.sin(i * 0.01) + rng.random()
        msg.render_time_ms_mean = 12.0 + rng.random()
        msg.budget_ms = 33.0
        try:
            pub.publish(msg)
        except Exception:  # stopped (SIGTERM shuts the context down)
            break
        i += 1
        next_t = max(next_t + period, time.monotonic() - period)
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    node.destroy_node()
    rclpy.try_shutdown()


class _Counted:
    received = 0


def _solver(poll_period_s: float) -> Any:
    def make(namespace: str, counter: _Counted) -> Any:
        from rclpy.parameter import Parameter

        from krystal.temporal.node import TemporalSolverNode

        class Counting(TemporalSolverNode):
            def _on_message(self, topic: str, msg: Any, t: int | None = None) -> None:
                counter.received += 1
                super()._on_message(topic, msg, t)

        return Counting(
            namespace=namespace,
            parameter_overrides=[Parameter("input_poll_period_s", Parameter.Type.DOUBLE, poll_period_s)],
        )

    return make


def _empty(namespace: str, counter: _Counted) -> Any:
    from krystal.msg import RenderStats
    from rclpy.node import Node

    from krystal.ros.qos import sensor_qos

    node = Node("empty_subscriber", namespace=namespace)

    def callback(msg: RenderStats) -> None:
        counter.received += 1

    node.create_subscription(RenderStats, TOPIC, callback, sensor_qos(depth=50))
    return node


def measure(make: Any, namespace: str, seconds: float, executor: str) -> tuple[float, float]:
    """(% of one core, messages received per second) of the node make(namespace, counter) builds,
    spinning alone in this process while the publisher process sends."""
    from krystal.sched.executor import make_executor

    counter = _Counted()
    node = make(namespace, counter)
    ex = make_executor(executor)
    ex.add_node(node)
    try:
        deadline = time.monotonic() + 20.0  # the publisher's start, discovery, matching
        while counter.received == 0 and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        settle = time.monotonic() + 0.5
        while time.monotonic() < settle:
            ex.spin_once(timeout_sec=0.05)
        n0, cpu0, wall0 = counter.received, time.process_time(), time.monotonic()
        while time.monotonic() < wall0 + seconds:
            ex.spin_once(timeout_sec=0.05)
        wall = time.monotonic() - wall0
        return 100.0 * (time.process_time() - cpu0) / wall, (counter.received - n0) / wall
    finally:
        ex.remove_node(node)
        node.destroy_node()
        ex.shutdown(timeout_sec=0.5)


def decode_cost(n: int) -> tuple[float, float]:
    """(µs to read the default specs' RenderStats fields with cdr.FieldReader, µs for rclpy to
    deserialize the whole message) from the same bytes."""
    from krystal.msg import RenderStats
    from rclpy.serialization import deserialize_message, serialize_message

    from krystal.temporal.cdr import FieldReader
    from krystal.temporal.node import fields_of

    msg = RenderStats(render_time_ms_p99=21.5, render_time_ms_mean=12.0, budget_ms=33.0, mode="edges")
    msg.header.frame_id = "ascii_renderer"
    raw = serialize_message(msg)
    paths = [("header", "stamp"), ("render_time_ms_p99",), ("render_time_ms_mean",), ("budget_ms",)]
    reader = FieldReader("krystal/RenderStats", paths, fields_of)
    times = []
    for decode in (reader.read, lambda b: deserialize_message(b, RenderStats)):
        t0 = time.perf_counter()
        for _ in range(n):
            decode(raw)
        times.append((time.perf_counter() - t0) / n * 1e6)
    return times[0], times[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="1.5 s windows, the default mode only (a smoke run)"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second on the topic")
    parser.add_argument(
        "--executor", default="edf", choices=["edf", "single", "events"], help="as krystal run (default edf)"
    )
    parser.add_argument(
        "--publish", nargs=3, metavar=("NAMESPACE", "RATE", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.publish:
        publish(args.publish[0], float(args.publish[1]), float(args.publish[2]))
        return 0
    seconds = 1.5 if args.quick else 10.0
    ensure_init()
    namespace = f"/temporal_bench_{os.getpid()}"
    proc = subprocess.Popen(  # one publisher for every node measured, one node at a time
        [sys.executable, "-m", "bench.temporal_node_bench", "--publish", namespace, str(args.rate), "600"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        cases = [("batched input every 50 ms (default)", _solver(0.05))]
        if not args.quick:
            cases += [("batched input every 20 ms", _solver(0.02)), ("a callback per message", _solver(0.0))]
        results = [(what, *measure(make, namespace, seconds, args.executor)) for what, make in cases]
        anchor, anchor_rate = measure(_empty, namespace, seconds, args.executor)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ours_us, rclpy_us = decode_cost(2_000 if args.quick else 50_000)
    emit("temporal_node", "the watched fields of a RenderStats from its CDR bytes", ours_us, rclpy_us, "us",
         anchor_name="rclpy deserialize_message (the whole message as Python objects)")  # fmt: skip
    for what, ours, rate in results:
        emit("temporal_node", f"node CPU, default specs, {TOPIC} at {args.rate:g} Hz, {what}, "
             f"{args.executor} executor", ours, anchor, "% of one core",
             anchor_name="empty rclpy node subscribed to the same topic (a callback per message)",
             goal=10.0, received_hz=round(rate, 1), anchor_received_hz=round(anchor_rate, 1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
