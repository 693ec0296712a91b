"""device_agents: hosts one lifecycle node per configured device, a supervisor and the registry.

Each device `<id>` is a LifecycleNode `<ns>/devices/<id>` with the standard lifecycle services
(`ros2 lifecycle set /devices/<id> configure`, nav2's lifecycle manager), DeviceStatus on
`<ns>/devices/status` (reliable, transient local; on change and every heartbeat while active), its
DeviceCommand service at `<ns>/devices/<id>/command` and its status on /diagnostics. The host
node adds them to its own executor, so `krystal run` and a `ros2 launch` process host them alike.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import State
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.task import Future
from std_msgs.msg import Header

from krystal.devices.agent import REMEMBERED_COMMANDS, Agent, Answer, DeviceConfig, Timing
from krystal.devices.audit import AuditLog
from krystal.devices.driver import find_driver
from krystal.devices.registry import Entry, Registry
from krystal.devices.store import CommandBook, UuidStore, state_dir
from krystal.msg import DeviceStatus
from krystal.ros.diagnostics import Diagnostics, Health
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import latched_qos
from krystal.srv import DeviceCommand

STRINGS = Parameter.Type.STRING_ARRAY
PARAMS = (
    Param("devices", ["sim0"], "Devices to host, read at start; each has <name>.driver, .options, ...",
          read_only=True, param_type=STRINGS),
    Param("supervise", True, "Bring every device to active at start; retry a failed configure with backoff"),
    Param("heartbeat_period_s", 1.0, "DeviceStatus period while active (bond: 1 s)", 0.05, 60.0),
    Param("heartbeat_timeout_s", 4.0, "No status this long: STALE in the registry (bond: 4 s)", 0.1, 600.0),
    Param("poll_period_s", 0.5, "How often each driver's status is read", 0.02, 60.0),
    Param("call_timeout_s", 2.0, "Driver open/status/close calls are abandoned after this", 0.05, 60.0),
    Param("command_timeout_s", 2.0, "Command timeout when the request says 0", 0.05, 60.0),
    Param("max_command_timeout_s", 10.0, "Longest timeout a request may ask for", 0.05, 600.0),
    Param("reconnect_initial_s", 0.5, "First delay before reopening a lost device (doubles)", 0.05, 60.0),
    Param("reconnect_max_s", 8.0, "Longest delay between reopen attempts", 0.05, 600.0),
    Param("state_dir", "", "UUIDs and audit log; empty: $XDG_STATE_HOME/krystal/devices", read_only=True),
    Param("audit_log", "", "JSON Lines audit log; empty: <state_dir>/audit.jsonl", read_only=True),
    Param("audit_fsync", False, "fsync each audit line (survives power loss, costs a disk flush)"),
)  # fmt: skip

_LABELS = {
    State.PRIMARY_STATE_UNCONFIGURED: "unconfigured",
    State.PRIMARY_STATE_INACTIVE: "inactive",
    State.PRIMARY_STATE_ACTIVE: "active",
    State.PRIMARY_STATE_FINALIZED: "finalized",
}
_IDS = {v: k for k, v in _LABELS.items()}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def device_params(name: str) -> list[Param]:
    """Settings of one device, read at start (restart the host to change a device)."""
    return [
        Param(
            f"{name}.driver",
            "simulated",
            f"Driver of device {name} (built-in or krystal.device_drivers entry point)",
            read_only=True,
        ),
        Param(
            f"{name}.kind", "", f"What device {name} is (fan, gpu, model, ...), for operators", read_only=True
        ),
        Param(
            f"{name}.uuid",
            "",
            f"Fixed UUID of {name}; empty: made once and kept in state_dir",
            read_only=True,
        ),
        Param(f"{name}.frame_id", "", f"frame_id of {name}'s status; empty: its name", read_only=True),
        Param(
            f"{name}.options",
            [],
            f"Driver options of {name} as key=value items",
            read_only=True,
            param_type=STRINGS,
        ),
    ]


class _MissingDriver:
    """Stands in for a driver that cannot be found, so configure fails with the reason."""

    options: tuple[Any, ...] = ()

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, options: dict[str, Any], context: Any) -> Any:
        raise LookupError(self.reason)


class RemoteParameters:
    """get/set another node's parameters from a driver's worker thread, on a private executor."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._executor = SingleThreadedExecutor(context=node.context)
        self._executor.add_node(node)
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}

    def _service(self, remote: str, kind: str, srv_type: Any) -> Any:
        key = (remote, kind)
        if key not in self._clients:
            self._clients[key] = self._node.create_client(srv_type, f"{remote}/{kind}")
        return self._clients[key]

    def _call(self, remote: str, kind: str, srv_type: Any, request: Any, timeout_s: float) -> Any:
        with self._lock:
            client = self._service(remote, kind, srv_type)
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise LookupError(f"no {remote}/{kind} service")
            future = client.call_async(request)
            self._executor.spin_until_future_complete(future, timeout_sec=timeout_s)
            if not future.done():
                client.remove_pending_request(future)
                raise LookupError(f"{remote}/{kind} did not answer within {timeout_s:g} s")
            return future.result()

    def ready(self, node: str) -> bool:
        """Whether `node`'s parameter services are up (a graph query: no executor needed)."""
        with self._lock:
            return bool(self._service(node, "set_parameters", SetParameters).service_is_ready())

    def get(self, node: str, name: str, timeout_s: float) -> Any:
        response = self._call(
            node, "get_parameters", GetParameters, GetParameters.Request(names=[name]), timeout_s
        )
        if not response.values or response.values[0].type == 0:
            raise LookupError(f"{node} has no parameter {name}")
        return parameter_value_to_python(response.values[0])

    def set(self, node: str, name: str, value: Any, timeout_s: float) -> str | None:
        param = Parameter(name, value=value).to_parameter_msg()
        response = self._call(
            node, "set_parameters", SetParameters, SetParameters.Request(parameters=[param]), timeout_s
        )
        result = response.results[0] if response.results else None
        if result is None:
            return "no result"
        return None if result.successful else (result.reason or "refused")

    def shutdown(self) -> None:
        self._executor.shutdown(timeout_sec=0.5)


class DeviceAgentNode(LifecycleNode):
    """One device's lifecycle node: the shell of a core Agent.

    Driver status reads run on the agent's own poll thread and commands on a thread of their own
    (the service callback awaits it), so a slow or hanging driver never holds the executor, and a
    driver may call services of nodes on that same executor (the `model` driver does). Lifecycle
    transitions call the driver on the executor, bounded by call_timeout_s.
    """

    def __init__(self, agent: Agent, host: DeviceAgentsNode, namespace: str) -> None:
        super().__init__(agent.config.name, namespace=namespace)
        self.agent = agent
        self._host = host
        self._lock = threading.RLock()  # one driver conversation at a time
        self._publish_lock = threading.Lock()
        self._seq = 0
        self._last_key: tuple[Any, ...] = ()
        self._status_pub = self.create_publisher(DeviceStatus, "status", latched_qos(1))
        self.create_service(DeviceCommand, "~/command", self._on_command)
        self._diagnostics = Diagnostics(self, hardware_id=agent.uuid)
        self._diagnostics.add("device", self._health)
        period_s = float(host.params["poll_period_s"])
        self.create_timer(period_s, self._changed)
        self._heartbeat = self.create_timer(host.params["heartbeat_period_s"], self._beat)
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll_loop, args=(period_s,), name=f"poll-{agent.config.name}", daemon=True
        )
        self._poller.start()
        self.publish_status()

    # lifecycle: the core does the work; nothing it returns can raise out of here
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            reason = self.agent.configure()
        if reason:
            self.get_logger().warning(f"configure failed: {reason}", throttle_duration_sec=10.0)
        self._changed()
        return TransitionCallbackReturn.FAILURE if reason else TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.agent.activate()
        self._changed()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.agent.deactivate()
        self._changed()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.agent.cleanup()
        self._changed()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.agent.shutdown()
        self._changed()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.agent.cleanup()
        self._changed()
        return TransitionCallbackReturn.SUCCESS

    def lifecycle_label(self) -> str:
        return str(self._state_machine.current_state[1])

    def _poll_loop(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            try:
                with self._lock:
                    self.agent.poll()
                self._changed()  # a change goes out now, not at the next timer tick
            except Exception as exc:  # the core catches driver errors; this guards the core itself
                self.get_logger().error(f"poll failed: {exc!r}", throttle_duration_sec=5.0)

    def stop(self) -> None:
        self._stop.set()
        self._poller.join(timeout=2.0)
        with self._lock:
            self.agent.shutdown()

    def _beat(self) -> None:
        if self.agent.state == "active":
            self._seq += 1
            self.publish_status()

    def _changed(self) -> None:
        a = self.agent
        with self._publish_lock:  # the poll thread and the executor both report changes
            key = (a.state, a.level, a.message, a.connected, a.last_command)
            if key == self._last_key:
                return
            self._last_key = key
            self.publish_status()
        self._diagnostics.level_changed("device", bytes([min(a.level, 3)]))

    def status(self) -> DeviceStatus:
        a = self.agent
        values = {
            "uuid": a.uuid,
            "kind": a.config.kind,
            "connected": str(a.connected).lower(),
            "reconnects": str(a.reconnects),
            **a.values,
        }
        return DeviceStatus(
            header=Header(stamp=self.get_clock().now().to_msg(), frame_id=a.config.frame_id or a.config.name),
            device_id=a.config.name,
            driver=a.config.driver,
            hardware_id=a.hardware_id,
            lifecycle_state=_IDS.get(a.state, 0),
            lifecycle_label=a.state,
            level=min(a.level, 3),
            message=a.message,
            heartbeat_seq=self._seq,
            heartbeat_period_s=float(self._host.params["heartbeat_period_s"]),
            capabilities=[c.name for c in a.schema],
            last_command=a.last_command,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )

    def publish_status(self) -> None:
        msg = self.status()
        self._status_pub.publish(msg)
        self._host.observe(msg)

    def _health(self) -> Health:
        a = self.agent
        values = {"uuid": a.uuid, "driver": a.config.driver, "state": a.state, **a.values}
        values.update({f"command.{c.name}": c.describe() for c in a.schema})
        return Health(bytes([min(a.level, 3)]), f"{a.state}: {a.message}", values)

    def _command(self, request: Any) -> Answer:
        try:
            with self._lock:
                return self.agent.command(
                    request.command,
                    [(kv.key, kv.value) for kv in request.arguments],
                    command_id=request.command_id,
                    caller=request.caller,
                    timeout_s=float(request.timeout_s),
                )
        except Exception as exc:  # the core answers everything; never let a request kill the node
            self.get_logger().error(f"command {request.command!r} failed: {exc!r}", throttle_duration_sec=5.0)
            return Answer(False, 2, f"internal error: {exc!r}")

    async def _on_command(self, request: Any, response: Any) -> Any:
        executor = self.executor
        if executor is None:
            answer = self._command(request)
        else:
            done: Future[Answer] = Future(executor=executor)
            done.add_done_callback(lambda _: None)  # completion schedules a task: wakes the executor
            threading.Thread(
                target=lambda: done.set_result(self._command(request)), name="device-command", daemon=True
            ).start()
            result = await done
            assert result is not None
            answer = result
        response.accepted, response.level, response.message = answer.accepted, answer.level, answer.message
        response.values = [KeyValue(key=k, value=v) for k, v in answer.values.items()]
        self._changed()
        return response


class DeviceAgentsNode(Node):
    """Hosts the configured devices' agents (added to this node's executor), supervises them and
    publishes the registry of every device seen on devices/status on devices/registry."""

    def __init__(self, node_name: str = "device_agents", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS)
        names = []
        for n in dict.fromkeys(self.params["devices"]):
            if _NAME.fullmatch(n):
                names.append(n)
            else:
                self.get_logger().error(
                    f"device name {n!r} skipped: letters, digits and _ only, a letter first"
                )
        self.device_params = ParamTable(self, [p for n in names for p in device_params(n)])
        self.params.values.update(self.device_params.values)  # one view of all that is declared
        p = self.params
        folder = state_dir(p["state_dir"])
        self.audit = AuditLog(p["audit_log"] or folder / "audit.jsonl", fsync=p["audit_fsync"])
        self._audit_error_logged: str | None = None
        uuids = UuidStore(folder / "uuids.json")
        timing = Timing(
            call_timeout_s=p["call_timeout_s"],
            command_timeout_s=p["command_timeout_s"],
            max_command_timeout_s=p["max_command_timeout_s"],
            reconnect_initial_s=p["reconnect_initial_s"],
            reconnect_max_s=p["reconnect_max_s"],
        )
        self._param_node = Node(
            f"{node_name}_parameter_client", namespace=self.get_namespace(), context=self.context
        )
        self.remote_parameters = RemoteParameters(self._param_node)
        self.registry = Registry(p["heartbeat_timeout_s"])
        self._registry_pub = self.create_publisher(DiagnosticArray, "devices/registry", latched_qos(1))
        self._lock = threading.Lock()
        ns = self.get_namespace().rstrip("/") + "/devices"
        self.agents: list[DeviceAgentNode] = []
        self._supervised: dict[str, tuple[float, float]] = {}  # name -> (next attempt, delay)
        for name in names:
            config = DeviceConfig(
                name=name,
                driver=self.device_params[f"{name}.driver"],
                kind=self.device_params[f"{name}.kind"],
                uuid=self.device_params[f"{name}.uuid"],
                options=tuple(self.device_params[f"{name}.options"]),
                frame_id=self.device_params[f"{name}.frame_id"],
            )
            try:
                driver_class: Any = find_driver(config.driver)
            except Exception as exc:  # unknown or broken plug-in: this device fails, the rest run
                driver_class = _MissingDriver(f"driver {config.driver!r}: {exc}")
            try:
                device_uuid = uuids.get(name, config.uuid)
            except (OSError, ValueError) as exc:
                self.get_logger().error(f"{name}: uuid not kept ({exc})")
                device_uuid = config.uuid
            try:  # beside the audit log: a retry after a crash and restart is still a duplicate
                book = CommandBook(
                    self.audit.path.parent / f"commands-{name}.jsonl", REMEMBERED_COMMANDS, p["audit_fsync"]
                )
            except OSError as exc:
                self.get_logger().error(f"{name}: command ids kept in memory only ({exc})")
                book = CommandBook(None, REMEMBERED_COMMANDS)
            agent = Agent(
                config,
                driver_class,
                device_uuid,
                timing=timing,
                audit=self.audit,
                services={"parameters": self.remote_parameters},
                commands=book,
            )
            self.agents.append(DeviceAgentNode(agent, self, ns))
            if p["supervise"]:
                self._supervised[name] = (0.0, p["reconnect_initial_s"])
        self.create_subscription(DeviceStatus, "devices/status", self._on_status, latched_qos(10))
        self._diagnostics = Diagnostics(self)
        self._diagnostics.add("devices", self._health)
        self.create_timer(0.1, self._tick)

    def nodes(self) -> list[Node]:
        return [self, *self.agents]

    def _attach(self) -> None:
        """Put the agents on this node's executor (whichever spins it: krystal run, a test, launch)."""
        executor = self.executor
        if executor is None:
            return
        for agent in self.agents:
            if agent.executor is not executor:
                agent.executor = executor

    def _tick(self) -> None:
        self._attach()
        now = self.get_clock().now().nanoseconds / 1e9
        for agent in self.agents:
            plan = self._supervised.get(agent.agent.config.name)
            if plan is None or now < plan[0]:
                continue
            self._supervise(agent, now, plan[1])
        if self.registry.check():
            self._publish_registry()

    def _supervise(self, agent: DeviceAgentNode, now: float, delay_s: float) -> None:
        name = agent.agent.config.name
        label = agent.lifecycle_label()
        if label == "unconfigured":
            agent.trigger_configure()
            label = agent.lifecycle_label()
        if label == "inactive":
            agent.trigger_activate()
            label = agent.lifecycle_label()
        if label in ("active", "finalized"):
            del self._supervised[name]  # brought up once; from here on operators decide
        else:
            self._supervised[name] = (now + delay_s, min(delay_s * 2, self.params["reconnect_max_s"]))

    def observe(self, msg: DeviceStatus) -> None:
        """Feed our own agents' statuses straight in (no DDS loop needed for the registry)."""
        self._on_status(msg)

    def _on_status(self, msg: DeviceStatus) -> None:
        try:
            entry = Entry(
                device_id=msg.device_id,
                driver=msg.driver,
                hardware_id=msg.hardware_id,
                lifecycle_label=msg.lifecycle_label,
                level=int(msg.level),
                message=msg.message,
                heartbeat_seq=int(msg.heartbeat_seq),
                heartbeat_period_s=float(msg.heartbeat_period_s),
                seen_s=0.0,
                values=tuple((kv.key, kv.value) for kv in msg.values),
            )
        except Exception as exc:
            self.get_logger().warning(f"bad DeviceStatus: {exc!r}", throttle_duration_sec=5.0)
            return
        with self._lock:
            changed = self.registry.update(entry)
        if changed:
            self._publish_registry()

    def registry_message(self) -> DiagnosticArray:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        for e in self.registry.entries():
            stale = self.registry.is_stale(e.device_id)
            values = dict(e.values)
            message = f"no heartbeat for {self.registry.age_s(e.device_id):.1f} s" if stale else e.message
            msg.status.append(
                DiagnosticStatus(
                    level=bytes([3 if stale else min(e.level, 3)]),
                    name=e.device_id,
                    message=f"{e.lifecycle_label}: {message}",
                    hardware_id=values.get("uuid", e.hardware_id),
                    values=[
                        KeyValue(key="driver", value=e.driver),
                        KeyValue(key="hardware_id", value=e.hardware_id),
                        KeyValue(key="lifecycle", value=e.lifecycle_label),
                        KeyValue(key="heartbeat_seq", value=str(e.heartbeat_seq)),
                        KeyValue(key="stale", value=str(stale).lower()),
                    ],
                )
            )
        return msg

    def _publish_registry(self) -> None:
        self._registry_pub.publish(self.registry_message())

    def _health(self) -> Health:
        states = {a.agent.config.name: a.agent.state for a in self.agents}
        stale = [e.device_id for e in self.registry.entries() if self.registry.is_stale(e.device_id)]
        values = {**states, "audit_log": str(self.audit.path)}
        if self.audit.error is not None:  # commands still run; their record is what is lost
            if self.audit.error != self._audit_error_logged:
                self.get_logger().error(f"{self.audit.error}; commands still run, unaudited")
            self._audit_error_logged = self.audit.error
            return Health(bytes([2]), f"{self.audit.error}; commands still run, unaudited", values)
        self._audit_error_logged = None
        if stale:
            return Health(bytes([1]), f"no heartbeat from {', '.join(stale)}", values)
        if not self.agents:
            return Health(bytes([0]), "no devices configured", values)
        active = sum(1 for s in states.values() if s == "active")
        return Health(bytes([0]), f"{active} of {len(states)} devices active", values)

    def destroy_node(self) -> None:
        for agent in self.agents:
            if agent.executor is not None:
                agent.executor.remove_node(agent)
            with contextlib.suppress(Exception):
                agent.stop()
            agent.destroy_node()
        self.remote_parameters.shutdown()
        self._param_node.destroy_node()
        self.audit.close()
        super().destroy_node()
