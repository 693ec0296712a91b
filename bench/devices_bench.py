"""Device agents: command round trip and fault detection, each beside an anchor from the same run.

- Round trip (DeviceCommand call -> validation -> driver on its thread -> audit line -> answer) on the
  simulated driver, against a plain rclpy parameter set on a node in the same executor (the
  closest standard "validate and apply one value" service: same transport, same Python dispatch).
- A vanished device: time until a listener sees ERROR on devices/status, against a heartbeat-only
  watchdog (bond defaults: 1 s beat, 4 s timeout) noticing a silent device; and time back to active
  after the device returns, against the wait for the next heartbeat (when such a watchdog would know).

python -m bench.devices_bench [--quick]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import emit

BENCH = "devices"


class Spinner:
    """Spins nodes on a background thread; `paused` makes them fall silent (a hung process)."""

    def __init__(self, nodes: list[Any]) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self.executor = SingleThreadedExecutor()
        for n in nodes:
            self.executor.add_node(n)
        self.paused = False
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            if self.paused:
                time.sleep(0.01)
            else:
                self.executor.spin_once(timeout_sec=0.02)

    def stop(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        self.executor.shutdown(timeout_sec=1.0)


def next_beat(statuses: list[tuple[float, Any]], spin_until: Any) -> float:
    """When the next heartbeat after the latest one seen arrived."""
    seq = max(m.heartbeat_seq for _, m in statuses)
    assert spin_until(lambda: any(m.heartbeat_seq > seq for _, m in statuses), 10.0)
    return next(t for t, m in statuses if m.heartbeat_seq > seq)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer calls, one fault (< 20 s)")
    args = parser.parse_args()
    calls = 150 if args.quick else 1000
    faults = 1 if args.quick else 7

    import rclpy
    from diagnostic_msgs.msg import KeyValue
    from krystal.msg import DeviceStatus
    from krystal.srv import DeviceCommand
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from krystal.devices.node import DeviceAgentsNode
    from krystal.devices.registry import Entry, Registry
    from krystal.ros import spin
    from krystal.ros.qos import latched_qos

    spin.init([])
    state = Path(tempfile.mkdtemp(prefix="krystal-devices-bench-"))
    plug = state / "plugged"
    plug.touch()
    host = DeviceAgentsNode(
        parameter_overrides=[
            Parameter("state_dir", value=str(state)),
            Parameter("devices", value=["sim0"]),
            Parameter("sim0.options", value=[f"present_file={plug}"]),
        ]
    )
    plain = rclpy.create_node("bench_plain_node")
    plain.declare_parameter("speed_percent", 30.0)
    server = Spinner([*host.nodes(), plain])
    client = rclpy.create_node("bench_client")
    statuses: list[tuple[float, Any]] = []
    client.create_subscription(
        DeviceStatus, "devices/status", lambda m: statuses.append((time.monotonic(), m)), latched_qos(10)
    )
    command: Any = client.create_client(DeviceCommand, "devices/sim0/command")
    param_set: Any = client.create_client(SetParameters, "bench_plain_node/set_parameters")

    def spin_until(predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            rclpy.spin_once(client, timeout_sec=0.01)
        return bool(predicate())

    def call(cli: Any, request: Any) -> Any:
        future = cli.call_async(request)
        while not future.done():
            rclpy.spin_once(client, timeout_sec=1.0)
        return future.result()

    try:
        assert spin_until(lambda: any(m.lifecycle_label == "active" for _, m in statuses), 15.0), (
            "sim0 not active"
        )
        assert command.wait_for_service(5.0) and param_set.wait_for_service(5.0)

        def ours(i: int) -> Any:
            speed = KeyValue(key="speed_percent", value=str(i % 100))
            return call(
                command, DeviceCommand.Request(command="set_speed", arguments=[speed], command_id=f"b{i}")
            )

        def anchor(i: int) -> Any:
            p = Parameter("speed_percent", value=float(i % 100)).to_parameter_msg()
            return call(param_set, SetParameters.Request(parameters=[p]))

        ours_ms: list[float] = []
        anchor_ms: list[float] = []
        for i in range(calls + 20):  # interleaved, so load on the machine hits both alike
            for fn, out in ((ours, ours_ms), (anchor, anchor_ms)):
                t0 = time.perf_counter()
                fn(i)
                if i >= 20:
                    out.append((time.perf_counter() - t0) * 1e3)
        anchor_name = "rclpy SetParameters round trip, same executor"
        for q, case in ((0.5, "command_round_trip_p50"), (0.99, "command_round_trip_p99")):
            emit(
                BENCH,
                case,
                percentile(ours_ms, q),
                percentile(anchor_ms, q),
                "ms",
                anchor_name=anchor_name,
                calls=calls,
            )

        lost_ms, back_ms, bond_lost_ms, bond_back_ms = [], [], [], []
        rng = random.Random(1)
        for _ in range(faults):
            spin_until(lambda: False, rng.uniform(0.0, 0.5))  # any phase of the 0.5 s status poll
            statuses.clear()
            t0 = time.monotonic()
            plug.unlink()
            assert spin_until(lambda: any(m.level == 2 for _, m in statuses), 10.0), "no ERROR"
            lost_ms.append((next(t for t, m in statuses if m.level == 2) - t0) * 1e3)
            statuses.clear()
            t0 = time.monotonic()
            plug.touch()
            assert spin_until(
                lambda: any(m.level == 0 and m.lifecycle_label == "active" for _, m in statuses), 20.0
            )
            back_ms.append((next(t for t, m in statuses if m.level == 0) - t0) * 1e3)

            # the anchor: a bond-style watchdog on the same topic, the device's process falling silent
            registry = Registry(timeout_s=4.0)
            last = statuses[-1][1]
            registry.update(Entry("sim0", "", "", last.lifecycle_label, 0, "", 0, 1.0, 0.0))
            server.paused = True
            t0 = time.monotonic()
            assert spin_until(registry.check, 10.0)
            bond_lost_ms.append((time.monotonic() - t0) * 1e3)
            server.paused = False
            # back: a heartbeat-only listener learns the device is back at its next beat
            next_beat(statuses, spin_until)  # settled after the pause
            t0 = time.monotonic()
            bond_back_ms.append((next_beat(statuses, spin_until) - t0) * 1e3)
        watchdog = "heartbeat watchdog (bond defaults 1 s / 4 s)"
        emit(BENCH, "vanished_to_error", percentile(lost_ms, 0.5), percentile(bond_lost_ms, 0.5), "ms",
             anchor_name=watchdog, faults=faults)  # fmt: skip
        emit(BENCH, "return_to_active", percentile(back_ms, 0.5), percentile(bond_back_ms, 0.5), "ms",
             anchor_name=watchdog + ": its next beat", faults=faults)  # fmt: skip
    finally:
        server.stop()
        host.destroy_node()
        plain.destroy_node()
        client.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
