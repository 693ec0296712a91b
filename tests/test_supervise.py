"""`krystal run --isolate`: every node its own process under the supervisor. kill -9 of a node: it is
restarted and reports on /diagnostics again while the others keep publishing; the decision and audit
logs keep every line written before the kill (at most the one being written is lost); Ctrl-C stops
and reaps them all. `make test` kills the two nodes with logs; `make test-hosts` every node in turn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from krystal.msg import AudioFeatures, StyleDecision

from krystal.devices.audit import read_audit
from krystal.graph import entry_names
from krystal.reasoning.log import read_decisions
from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos
from krystal.ros.streams import stream_qos
from tests.conftest import ROOT, scaled, spin_until, wait_until

SUP = "krystal_supervisor"


class Watch:
    """Follows /diagnostics (when each node last spoke; the supervisor's statuses), the published
    decisions, and drives decisions (tempo) and device commands."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("supervise_probe")
        self.heard: dict[str, list[float]] = defaultdict(list)  # node -> arrival times of its statuses
        self.sup: dict[str, DiagnosticStatus] = {}
        self.decisions: list[int] = []
        n = self.node
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(50))
        n.create_subscription(StyleDecision, "krystal/style", self._on_decision, latched_qos(10))
        self.audio = n.create_publisher(
            AudioFeatures, "audio/features", stream_qos("audio/features", sensor_qos(5))
        )

    def _on_diag(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        for s in msg.status:
            node, _, task = s.name.partition(": ")
            if node == SUP:
                self.sup[task] = s
            else:
                self.heard[node].append(now)

    def _on_decision(self, msg: StyleDecision) -> None:
        if msg.decision_id not in self.decisions:
            self.decisions.append(msg.decision_id)

    def pid(self, name: str) -> int:
        s = self.sup.get(name)
        values = {kv.key: kv.value for kv in s.values} if s else {}
        return int(values.get("pid") or 0) if s and s.level == DiagnosticStatus.OK else 0

    def spin(self, predicate: Any, timeout_s: float) -> bool:
        return spin_until([self.node], predicate, timeout_s)

    def spoke_since(self, name: str, t: float) -> bool:
        return any(x > t for x in self.heard[name])


def _params(tmp_path: Path) -> Path:
    config = yaml.safe_load((ROOT / "config" / "krystal.yaml").read_text())
    config[f"/**/{SUP}"]["ros__parameters"].update(restart_initial_s=0.2, stop_timeout_s=3.0)
    config["/**/reasoning"]["ros__parameters"]["context_dwell_s"] = 0.2
    config["/**/video_source"]["ros__parameters"].update(width=160, height=120, fps=10.0)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(nodes: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
        with open(tmp_path / "run.log", "ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "krystal.cli", "run", "--isolate", "--nodes", ",".join(nodes),
                 "--params-file", str(_params(tmp_path)), "--log-level", "warn"],
                env=env, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        started.append(popen)
        return popen

    rclpy.init()
    try:
        yield start
    finally:
        for p in started:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(scaled(10))
                except subprocess.TimeoutExpired:
                    p.kill()  # its children get SIGTERM from the kernel (PR_SET_PDEATHSIG)
                    p.wait()
        rclpy.try_shutdown()


def _log(tmp_path: Path) -> str:
    return (tmp_path / "run.log").read_text(errors="replace")[-4000:]


def _drive_decisions(w: Watch, count: int) -> None:
    """Alternate the tempo until `count` more decisions were published."""
    want = len(w.decisions) + count
    deadline = time.monotonic() + scaled(15)
    bpm = 170.0
    while len(w.decisions) < want and time.monotonic() < deadline:
        w.audio.publish(AudioFeatures(tempo_bpm=bpm, tempo_confidence=0.9, rms_dbfs=-12.0))
        seen = len(w.decisions)
        if w.spin(lambda s=seen: len(w.decisions) > s, 0.3):
            bpm = 80.0 if bpm > 100 else 170.0
    assert len(w.decisions) >= want, f"only {len(w.decisions)} decisions"


def _command(w: Watch, command_id: str) -> bool:
    from krystal.srv import DeviceCommand

    client = w.node.create_client(DeviceCommand, "devices/sim0/command")
    try:
        if not w.spin(client.service_is_ready, scaled(10)):
            return False
        request = DeviceCommand.Request(
            command="set_speed",
            arguments=[KeyValue(key="speed_percent", value="40")],
            command_id=command_id,
            caller="pytest",
        )
        future = client.call_async(request)
        return w.spin(future.done, scaled(10)) and bool(future.result().accepted)
    finally:
        w.node.destroy_client(client)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_each_in_turn(
    start: Any, tmp_path: Path, nodes: list[str], victims: list[str], stop: int = signal.SIGINT
) -> None:
    run = start(nodes)
    w = Watch()
    t0 = time.monotonic()
    up = lambda: all(w.pid(n) and w.spoke_since(n, t0) for n in nodes)  # noqa: E731
    assert w.spin(up, scaled(20)), ({n: w.sup[n].message for n in w.sup}, _log(tmp_path))
    commands: list[str] = []
    for victim in victims:
        if victim == "reasoning":
            _drive_decisions(w, 3)
        if victim == "device_agents":
            for n in range(3):
                commands.append(f"before-kill-{len(commands)}-{n}")
                assert _command(w, commands[-1]), _log(tmp_path)
        pid = w.pid(victim)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # the supervisor reports the death, starts it again, and the new process speaks
        back = lambda v=victim, p=pid, k=killed: w.pid(v) not in (0, p) and w.spoke_since(v, k + 0.5)  # noqa: E731
        assert w.spin(back, scaled(15)), (victim, w.sup.get(victim), _log(tmp_path))
        assert "killed by SIGKILL" in w.sup[victim].message, w.sup[victim].message
        others = [n for n in nodes if n != victim]
        assert w.spin(lambda o=others, k=killed: all(w.spoke_since(n, k) for n in o), scaled(3)), (
            victim,
            _log(tmp_path),
        )
        assert run.poll() is None, _log(tmp_path)
    if "reasoning" in victims:
        _drive_decisions(w, 2)  # it decides again after its restart, with new ids
    if "device_agents" in victims:
        assert _command(w, "after-restart"), _log(tmp_path)
    pids = [w.pid(n) for n in nodes]
    assert all(pids), dict(zip(nodes, pids, strict=True))  # a 0 would make the checks below vacuous
    w.node.destroy_node()
    run.send_signal(stop)
    if stop == signal.SIGKILL:  # nothing can forward it: each node gets SIGTERM from the kernel
        run.wait(scaled(5))
        assert wait_until(lambda: not any(_running(p) for p in pids), 10.0), "a node outlived its supervisor"
    else:
        assert run.wait(scaled(15)) == 0, _log(tmp_path)
        assert not [p for p in pids if Path(f"/proc/{p}").exists()], "a node outlived the supervisor"
    state = tmp_path / "state" / "krystal"
    if "reasoning" in victims:
        logged = {r["decision"]["decision_id"] for r in read_decisions(state / "decisions.jsonl")}
        lost = [d for d in w.decisions if d not in logged]
        assert len(lost) <= 1, (lost, sorted(logged))
    if "device_agents" in victims:
        audited = {r.get("command_id") for r in read_audit(state / "devices" / "audit.jsonl")}
        assert set(commands) | {"after-restart"} <= audited, audited


def test_kill_9_of_the_logging_nodes_under_the_supervisor(supervised, tmp_path: Path) -> None:
    nodes = ["reasoning", "device_agents", "thermal_monitor"]
    _kill_each_in_turn(supervised, tmp_path, nodes, ["reasoning", "device_agents"])


@pytest.mark.skipif(
    os.environ.get("KRYSTAL_TEST_HOSTS") != "1",
    reason="every node in turn (about a minute): `make test-hosts`",
)
def test_kill_9_of_each_node_in_turn_under_the_supervisor(supervised, tmp_path: Path) -> None:
    """Then the supervisor itself is SIGKILLed: no node is left running."""
    _kill_each_in_turn(supervised, tmp_path, entry_names(), entry_names(), stop=signal.SIGKILL)


def test_child_argv_carries_the_runs_arguments_and_overrides() -> None:
    """What `krystal run --isolate` starts for a node: its installed executable, the run's ROS
    arguments, the namespace and each override as `-p name:=value` in ROS's YAML syntax."""
    from krystal.graph import select
    from krystal.runner import child_argv

    (entry,) = select(["reasoning"])
    argv = child_argv(
        entry, ["krystal", "--ros-args", "--log-level", "warn"], "bay1",
        {"modes": ["edges", "ramp"], "columns": 80, "enabled": True}, "single",
    )  # fmt: skip
    assert Path(argv[0]).name == entry.executable and os.access(argv[0], os.X_OK), argv
    assert argv[1:] == [
        "--ros-args", "--log-level", "warn", "-r", "__ns:=/bay1",
        "-p", "modes:=[edges, ramp]", "-p", "columns:=80", "-p", "enabled:=true",
        "-p", "executor.type:=single",
    ]  # fmt: skip
