"""Device agents as ROS nodes: lifecycle services, DeviceCommand, status, faults, model deployment."""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from diagnostic_msgs.msg import DiagnosticArray, KeyValue

from krystal.devices.audit import read_audit
from tests.conftest import spin_until

pytestmark = pytest.mark.usefixtures("ros")


def make_host(tmp_path: Path, devices: dict[str, tuple[str, list[str]]], supervise: bool = True) -> Any:
    from rclpy.parameter import Parameter

    from krystal.devices.node import DeviceAgentsNode

    overrides = [
        Parameter("state_dir", value=str(tmp_path / "state")),
        Parameter("devices", value=list(devices)),
        Parameter("supervise", value=supervise),
        Parameter("heartbeat_period_s", value=0.2),
        Parameter("poll_period_s", value=0.05),
        Parameter("call_timeout_s", value=1.0),
        Parameter("reconnect_initial_s", value=0.1),
        Parameter("reconnect_max_s", value=0.3),
    ]
    for name, (driver, options) in devices.items():
        overrides += [Parameter(f"{name}.driver", value=driver), Parameter(f"{name}.options", value=options)]
    return DeviceAgentsNode(parameter_overrides=overrides)


class Client:
    """A test node calling services and collecting DeviceStatus messages."""

    def __init__(self, spin_nodes: list[Any]) -> None:
        import rclpy
        from krystal.msg import DeviceStatus

        from krystal.ros.qos import latched_qos

        self.node = rclpy.create_node("device_test_client")
        self.statuses: list[Any] = []
        self.node.create_subscription(DeviceStatus, "devices/status", self.statuses.append, latched_qos(10))
        self.nodes = [*spin_nodes, self.node]

    def call(self, srv_type: Any, name: str, request: Any, timeout_s: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        assert spin_until(self.nodes, client.service_is_ready, timeout_s), f"no service {name}"
        future = client.call_async(request)
        assert spin_until(self.nodes, future.done, timeout_s), f"{name} did not answer"
        self.node.destroy_client(client)
        return future.result()

    def command(
        self, device: str, command: str, command_id: str = "", timeout_s: float = 0.0, **args: str
    ) -> Any:
        from krystal.srv import DeviceCommand

        request = DeviceCommand.Request(
            command=command,
            arguments=[KeyValue(key=k, value=v) for k, v in args.items()],
            command_id=command_id,
            caller="pytest",
            timeout_s=timeout_s,
        )
        return self.call(DeviceCommand, f"devices/{device}/command", request)

    def transition(self, device: str, label: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(label=label))
        return bool(self.call(ChangeState, f"/devices/{device}/change_state", request).success)

    def state(self, device: str) -> tuple[int, str]:
        from lifecycle_msgs.srv import GetState

        s = self.call(GetState, f"/devices/{device}/get_state", GetState.Request()).current_state
        return int(s.id), str(s.label)

    def wait_status(self, predicate: Any, timeout_s: float = 10.0) -> Any:
        found: list[Any] = []

        def seen() -> bool:
            found[:] = [m for m in self.statuses if predicate(m)]
            return bool(found)

        assert spin_until(self.nodes, seen, timeout_s), [
            (m.lifecycle_label, m.level, m.message) for m in self.statuses[-5:]
        ]
        return found[0]


def test_transitions_through_lifecycle_services(tmp_path: Path) -> None:
    host = make_host(
        tmp_path, {"sim0": ("simulated", []), "fan1": ("sysfs_pwm", [f"root={tmp_path}/none"])}, False
    )
    c = Client(host.nodes())
    try:
        assert c.state("sim0") == (1, "unconfigured")
        assert c.transition("sim0", "configure") and c.state("sim0") == (2, "inactive")
        assert c.transition("sim0", "activate") and c.state("sim0") == (3, "active")
        beat = c.wait_status(
            lambda m: m.device_id == "sim0" and m.lifecycle_label == "active" and m.heartbeat_seq >= 2
        )
        assert beat.lifecycle_state == 3 and beat.driver == "simulated" and "set_speed" in beat.capabilities
        values = {kv.key: kv.value for kv in beat.values}
        assert (
            values["uuid"] and values["connected"] == "true" and beat.heartbeat_period_s == pytest.approx(0.2)
        )
        assert c.transition("sim0", "deactivate") and c.state("sim0") == (2, "inactive")
        assert c.transition("sim0", "cleanup") and c.state("sim0") == (1, "unconfigured")
        assert not c.transition("fan1", "configure") and c.state("fan1") == (1, "unconfigured")  # absent
        assert c.transition("sim0", "shutdown") and c.state("sim0") == (4, "finalized")
        events = [
            r["event"] for r in read_audit(tmp_path / "state" / "audit.jsonl") if r.get("device") == "sim0"
        ]
        assert events == ["configured", "activated", "deactivated", "cleaned_up", "shut_down"]
    finally:
        host.destroy_node()


def test_commands_answers_and_audit(tmp_path: Path) -> None:
    host = make_host(tmp_path, {"sim0": ("simulated", ["slow_command_s=3"])})
    c = Client(host.nodes())
    try:
        c.wait_status(lambda m: m.lifecycle_label == "active")  # the supervisor brought it up
        good = c.command("sim0", "set_speed", "id-1", speed_percent="80")
        assert good.accepted and good.level == 0 and good.message == "speed 80 %"
        c.wait_status(lambda m: {kv.key: kv.value for kv in m.values}.get("speed_percent") == "80.0")
        bad = {
            "unknown": c.command("sim0", "warp"),
            "range": c.command("sim0", "set_speed", speed_percent="250"),
            "type": c.command("sim0", "set_speed", speed_percent="fast"),
            "duplicate": c.command("sim0", "set_speed", "id-1", speed_percent="80"),
        }
        assert not bad["unknown"].accepted and "unknown command 'warp'" in bad["unknown"].message
        assert not bad["range"].accepted and "above 100" in bad["range"].message
        assert not bad["type"].accepted and "not a number" in bad["type"].message
        assert bad["duplicate"].accepted and bad["duplicate"].message == good.message  # not run twice
        assert c.command("sim0", "inject_fault", fault="slow_commands").accepted
        t0 = time.monotonic()
        slow = c.command("sim0", "set_speed", "id-2", timeout_s=0.3, speed_percent="10")
        assert (
            not slow.accepted and "did not return within 0.3 s" in slow.message and time.monotonic() - t0 < 3
        )
        assert c.command("sim0", "inject_fault", fault="none").accepted
        assert c.transition("sim0", "deactivate")
        state = c.command("sim0", "set_speed", speed_percent="10")
        assert not state.accepted and "needs the device active, it is inactive" in state.message
        lines = [r for r in read_audit(tmp_path / "state" / "audit.jsonl") if r["type"] == "command"]
        assert [(r["command"], r["accepted"], r["duplicate"]) for r in lines] == [
            ("set_speed", True, False),
            ("warp", False, False),
            ("set_speed", False, False),
            ("set_speed", False, False),
            ("set_speed", True, True),
            ("inject_fault", True, False),
            ("set_speed", False, False),
            ("inject_fault", True, False),
            ("set_speed", False, False),
        ]
        assert all(r["caller"] == "pytest" and r["device"] == "sim0" for r in lines)
        assert lines[2]["arguments"] == {"speed_percent": "250"} and "above 100" in lines[2]["result"]
        assert "did not return" in lines[6]["result"] and lines[6]["command_id"] == "id-2"
    finally:
        host.destroy_node()


def test_disconnect_and_return_seen_by_a_late_joiner(tmp_path: Path) -> None:
    plug = tmp_path / "plugged"
    host = make_host(tmp_path, {"sim0": ("simulated", [f"present_file={plug}"])})
    c = Client(host.nodes())
    try:
        # absent at start: configure fails, the supervisor retries with backoff until it appears
        assert spin_until(c.nodes, lambda: False, 0.5) is False
        assert host.agents[0].lifecycle_label() == "unconfigured"
        plug.touch()
        c.wait_status(lambda m: m.lifecycle_label == "active" and m.level == 0)
        c.statuses.clear()
        plug.unlink()  # unplugged
        lost = c.wait_status(lambda m: m.level == 2)
        assert "device lost" in lost.message and lost.lifecycle_label == "active"
        plug.touch()
        c.statuses.clear()
        c.wait_status(lambda m: m.level == 0 and {kv.key: kv.value for kv in m.values}["reconnects"] == "1")
        # a late joiner gets the latest status (transient local) and the registry
        late = Client(host.nodes())
        registry: list[DiagnosticArray] = []
        from krystal.ros.qos import latched_qos

        late.node.create_subscription(DiagnosticArray, "devices/registry", registry.append, latched_qos(1))
        latest = late.wait_status(lambda m: m.device_id == "sim0")
        assert latest.level == 0 and latest.lifecycle_label == "active"
        assert spin_until(late.nodes, lambda: bool(registry), 5.0)
        entry = registry[-1].status[0]
        assert (
            entry.name == "sim0" and entry.hardware_id == {kv.key: kv.value for kv in latest.values}["uuid"]
        )
        late.node.destroy_node()
    finally:
        host.destroy_node()


def test_uuid_stable_across_restarts(tmp_path: Path) -> None:
    uuids = []
    for _ in range(2):
        host = make_host(tmp_path, {"sim0": ("simulated", [])}, supervise=False)
        uuids.append(host.agents[0].agent.uuid)
        host.destroy_node()
    assert uuids[0] == uuids[1] and len(uuids[0]) == 36


def test_model_deployed_to_running_ascii_renderer(tmp_path: Path) -> None:
    from rclpy.parameter_client import AsyncParameterClient

    from krystal.ascii.learned import DEFAULT_MODEL
    from krystal.ascii.node import AsciiRendererNode

    model = tmp_path / "matcher_v2.npz"
    shutil.copy(DEFAULT_MODEL, model)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a model")
    renderer = AsciiRendererNode()
    host = make_host(tmp_path, {"model0": ("model", ["node=ascii_renderer"])})
    c = Client([*host.nodes(), renderer])
    diagnostics: list[DiagnosticArray] = []
    from krystal.ros.qos import reliable_qos

    c.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, reliable_qos(50))
    try:
        c.wait_status(lambda m: m.device_id == "model0" and m.lifecycle_label == "active")
        answer = c.command("model0", "deploy", "deploy-1", path=str(model))
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        assert answer.accepted and answer.level == 0, answer.message
        assert {kv.key: kv.value for kv in answer.values}["model_sha256"] == sha
        # verified through the renderer's own parameter service, as any client sees it
        params = AsyncParameterClient(c.node, "ascii_renderer")
        future = params.get_parameters(["model_path"])
        assert spin_until(c.nodes, future.done, 10.0)
        assert future.result().values[0].string_value == str(model)

        def reports_hash() -> bool:
            return any(
                s.name.endswith("ascii_renderer: model")
                and {kv.key: kv.value for kv in s.values}.get("model_sha256") == sha
                for d in diagnostics
                for s in d.status
            )

        assert spin_until(c.nodes, reports_hash, 10.0)
        refused = c.command("model0", "deploy", path=str(junk))
        assert refused.accepted and refused.level == 2 and "refused model_path" in refused.message
        assert renderer.get_parameter("model_path").value == str(model)  # the good one stays
        missing = c.command("model0", "deploy", path=str(tmp_path / "nope.npz"))
        assert missing.level == 2 and "cannot read" in missing.message
    finally:
        host.destroy_node()
        renderer.destroy_node()


def test_fuzz_status_and_command_messages(tmp_path: Path) -> None:
    """Whatever arrives on devices/status or as a DeviceCommand request, the host answers and runs on."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from krystal.msg import DeviceStatus
    from krystal.srv import DeviceCommand

    host = make_host(tmp_path, {"sim0": ("simulated", ["hang_s=0.3", "slow_command_s=0.3"])})
    agent = host.agents[0]
    text = st.text(max_size=16)
    pairs = st.lists(
        st.tuples(st.sampled_from(["speed_percent", "fault", "duration_s"]) | text, text), max_size=3
    )

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        device_id=text,
        label=st.sampled_from(["active", "inactive", "", "weird"]),
        level=st.integers(0, 255),
        seq=st.integers(0, 2**64 - 1),
        command=st.sampled_from(["set_speed", "reset", "inject_fault"]) | text,
        arguments=pairs,
        command_id=text,
        timeout_s=st.floats(width=32, allow_nan=True, allow_infinity=True),
    )
    def fuzz(  # noqa: PLR0917  (hypothesis passes every field)
        device_id: str,
        label: str,
        level: int,
        seq: int,
        command: str,
        arguments: Any,
        command_id: str,
        timeout_s: float,
    ) -> None:
        status = DeviceStatus(
            device_id=device_id, lifecycle_label=label, level=level, heartbeat_seq=seq, message="m"
        )
        host._on_status(status)
        assert host.registry_message().status
        request = DeviceCommand.Request(
            command=command,
            arguments=[KeyValue(key=k, value=v) for k, v in arguments],
            command_id=command_id,
            timeout_s=min(abs(timeout_s), 0.3) if not math.isnan(timeout_s) else timeout_s,
        )
        answer = agent._command(request)
        assert answer.level in (0, 1, 2) and answer.message

    try:
        agent.trigger_configure()
        agent.trigger_activate()
        fuzz()
        assert agent.lifecycle_label() == "active"
    finally:
        host.destroy_node()
