"""temporal_solver as a real rclpy node (verdicts, early and at the bound; CheckTrace) and
`krystal check` on an MCAP file written here with mcap_ros2's writer."""

from __future__ import annotations

import io
import math
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter

from tests.conftest import spin_until

HEADER = """std_msgs/Header header
float32 max_temperature_c
float32[] temperatures_c
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""


def test_krystal_check_on_an_mcap_file(tmp_path: Path) -> None:
    from mcap_ros2.writer import Writer

    from krystal.cli import main

    rec = tmp_path / "run.mcap"
    with rec.open("wb") as f:
        w = Writer(f)
        schema = w.register_msgdef("krystal/msg/ThermalState", HEADER)
        for i in range(20):
            temp = 70.0 + i  # crosses 85 at i = 16
            stamp = {"sec": 100 + i, "nanosec": 0}
            w.write_message(
                "/thermal/state",
                schema,
                {
                    "header": {"stamp": stamp, "frame_id": ""},
                    "max_temperature_c": temp,
                    "temperatures_c": [temp],
                },
                log_time=(100 + i) * 10**9,
                publish_time=(100 + i) * 10**9,
            )
        w.finish()
    specs = tmp_path / "specs.txt"
    specs.write_text(
        "# thermal\nhot: always (thermal/state.max_temperature_c < 85)\n"
        "cool: once (thermal/state.temperatures_c[0] < 71)\n"
    )
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["check", str(specs), str(rec)])
    text = out.getvalue()
    assert code == 1
    assert "hot: VIOLATED  robustness -4" in text and "first violation: t=100.000000 s" in text
    assert "cool: SATISFIED" in text and "20 samples" in text
    bad = tmp_path / "bad.txt"
    bad.write_text("x: always (thermal/state.max_temperature_c <")
    assert main(["check", str(bad), str(rec)]) == 2


def _stamp(node, t_s: float):  # type: ignore[no-untyped-def]
    from rclpy.time import Time

    return Time(nanoseconds=int(t_s * 1e9)).to_msg()


def test_node_verdicts_and_check_trace(ros: None) -> None:
    import rclpy
    from krystal.msg import RenderStats, StyleDecision, TemporalVerdict
    from krystal.srv import CheckTrace
    from rclpy.node import Node

    from krystal.ros.qos import reliable_qos
    from krystal.temporal.node import TemporalSolverNode

    specs = [
        "react: (krystal/render_stats.render_time_ms_p99 > 33)"
        " -> eventually[0:0.5s](krystal/style.kernel_size < 5)",
        "budget: krystal/render_stats.render_time_ms_p99 < 40",
    ]
    solver = TemporalSolverNode(
        parameter_overrides=[
            Parameter("specs", Parameter.Type.STRING_ARRAY, specs),
            Parameter("discovery_period_s", Parameter.Type.DOUBLE, 0.1),
            Parameter("chaos_signal", Parameter.Type.STRING, ""),
        ]
    )
    peer = Node("temporal_peer")
    stats_pub = peer.create_publisher(RenderStats, "krystal/render_stats", reliable_qos())
    style_pub = peer.create_publisher(StyleDecision, "krystal/style", reliable_qos())
    got: list[tuple[float, TemporalVerdict]] = []
    peer.create_subscription(
        TemporalVerdict, "krystal/verdicts", lambda m: got.append((time.monotonic(), m)), reliable_qos(50)
    )
    assert spin_until([solver, peer], lambda: len(solver._subs) == 2, 20.0), solver._subs

    def publish_stats(p99: float) -> float:
        msg = RenderStats()
        t = solver._now_s()
        msg.header.stamp = _stamp(solver, t)
        msg.render_time_ms_p99 = p99
        stats_pub.publish(msg)
        return t

    def publish_style(k: int) -> None:
        msg = StyleDecision()
        msg.header.stamp = _stamp(solver, solver._now_s())
        msg.kernel_size = k
        style_pub.publish(msg)

    def verdicts(name: str, v: int) -> list[tuple[float, TemporalVerdict]]:
        return [
            (w, m) for w, m in got if m.monitor == name and m.verdict == v and not math.isnan(m.robustness)
        ]

    publish_style(7)
    publish_stats(10.0)
    assert spin_until([solver, peer], lambda: bool(verdicts("budget", 1)), 10.0)
    # a slow frame and no reaction: violated once the 0.5 s bound has passed, not before
    sent_wall = time.monotonic()
    t_slow = publish_stats(50.0)
    assert spin_until([solver, peer], lambda: bool(verdicts("budget", 2)), 10.0)

    def slow_verdict() -> list[tuple[float, TemporalVerdict]]:
        return [
            (w, m)
            for w, m in verdicts("react", 2)
            if abs(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 - t_slow) < 1e-3
        ]

    assert spin_until([solver, peer], lambda: bool(slow_verdict()), 10.0)
    wall, msg = slow_verdict()[0]
    assert wall - sent_wall >= 0.45  # never premature
    assert msg.value >= t_slow + 0.5  # decided by the time the bound had passed
    assert "deciding sample" in msg.message
    health = solver._specs_health()
    assert health.level == b"\x01" and "decided by the sample" in health.message
    # another slow frame, then the reaction in time: satisfied early, before the bound
    t2 = publish_stats(60.0)
    spin_until([solver, peer], lambda: False, 0.1)
    react_wall = time.monotonic()
    publish_style(3)

    def sat() -> list[tuple[float, TemporalVerdict]]:
        return [
            (w, m)
            for w, m in verdicts("react", 1)
            if abs(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 - t2) < 1e-3
        ]

    assert spin_until([solver, peer], lambda: bool(sat()), 10.0)
    assert sat()[0][1].value < t2 + 0.5 and sat()[0][0] - react_wall < 0.5

    client = peer.create_client(CheckTrace, "krystal/check_trace")
    assert client.wait_for_service(timeout_sec=10.0)
    req = CheckTrace.Request()
    req.spec = "always (a.x < 3)"
    req.signals = ["a.x"]
    req.times_s = [0.0, 1.0, 2.0]
    req.values = [1.0, 4.0, 2.0]
    future = client.call_async(req)
    assert spin_until([solver, peer], future.done, 10.0)
    res = future.result()
    assert res.ok and res.verdict == 2 and res.first_violation_s == 0.0 and res.robustness == -1.0
    req.spec = "always (a.x <"
    future = client.call_async(req)
    assert spin_until([solver, peer], future.done, 10.0)
    assert not future.result().ok and "line 1, column" in future.result().message
    solver.destroy_node()
    peer.destroy_node()
    del rclpy


def test_bad_spec_parameter_is_refused(ros: None) -> None:
    from krystal.temporal.node import TemporalSolverNode

    solver = TemporalSolverNode(parameter_overrides=[Parameter("chaos_signal", Parameter.Type.STRING, "")])
    result = solver.set_parameters([Parameter("specs", Parameter.Type.STRING_ARRAY, ["x: a.b <"])])[0]
    assert not result.successful and "line 1, column" in result.reason
    result = solver.set_parameters(
        [Parameter("specs", Parameter.Type.STRING_ARRAY, ["x: eventually (a.b < 1)"])]
    )[0]
    assert result.successful
    assert solver._specs_health().level == b"\x02"  # refused online: ERROR with the reason
    solver.destroy_node()


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300), st.text(max_size=80))
def test_fuzz_check_inputs(blob: bytes, spec_text: str) -> None:
    """Damaged recordings and spec files end in a message and exit status 2, never a traceback."""
    import tempfile

    from krystal.cli import main

    with tempfile.TemporaryDirectory() as d:
        rec, good, fuzzed = Path(d) / "x.mcap", Path(d) / "good.txt", Path(d) / "fuzzed.txt"
        rec.write_bytes(b"\x89MCAP0\r\n" + blob)
        good.write_text("ok: a/b.c < 1\n", encoding="utf-8")
        fuzzed.write_text("ok: a/b.c < 1\n" + spec_text, encoding="utf-8")
        for specs in (good, fuzzed):
            err = io.StringIO()
            with redirect_stdout(io.StringIO()), redirect_stderr(err):
                code = main(["check", str(specs), str(rec)])
            assert code in (0, 1, 2) and "Traceback" not in err.getvalue()
