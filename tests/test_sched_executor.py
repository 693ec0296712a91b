"""DeadlineExecutor with real rclpy nodes: EDF order, services, lifecycle, the pool, isolation."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Int32, String

from krystal.ros.diagnostics import ERROR, Diagnostics
from krystal.ros.qos import DeadlineMisses, reliable_qos, sensor_qos, with_deadline
from krystal.sched.executor import DeadlineExecutor, set_budget
from krystal.sched.realtime import set_timer_slack, timer_slack
from krystal.sched.settings import EXECUTOR_PARAMS, ExecutorSettings, node_settings
from tests.conftest import executable, spin_until

ROOT = Path(__file__).resolve().parent.parent


class Spinner:
    """A DeadlineExecutor spinning `nodes` in a thread for the length of a test."""

    def __init__(self, nodes: list[Node], threads: int = 1) -> None:
        self.executor = DeadlineExecutor(threads=threads)
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)
        assert not self.thread.is_alive(), "the executor did not stop on shutdown()"


@pytest.fixture
def spinner(ros) -> Iterator[list[Spinner]]:
    made: list[Spinner] = []
    yield made
    for s in made:
        s.stop()


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_ready_callbacks_run_in_deadline_order(ros) -> None:
    node = Node("edf_order", parameter_overrides=[Parameter("executor.topic_budgets_ms", value=["urgent=5"])])
    order: list[str] = []
    guards = {}
    for name, budget_ms in (("gc30", 30.0), ("gc10", 10.0), ("gc20", 20.0)):
        gc = node.create_guard_condition(lambda name=name: order.append(name))
        set_budget(gc, budget_ms)
        guards[name] = gc
    node.create_subscription(String, "urgent", lambda m: order.append("sub5"), reliable_qos())
    pub = node.create_publisher(String, "urgent", reliable_qos())
    executor = DeadlineExecutor()
    executor.add_node(node)
    try:
        executor.spin_once(0.0)  # builds the wait set; nothing is ready yet
        assert _wait(lambda: pub.get_subscription_count() == 1, 5.0)
        pub.publish(String(data="now"))
        for gc in guards.values():
            gc.trigger()
        time.sleep(0.5)  # the message arrives; everything is ready before the next wait
        end = time.monotonic() + 5.0
        while len(order) < 4 and time.monotonic() < end:
            executor.spin_once(0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
    assert order == ["sub5", "gc10", "gc20", "gc30"]


def _low_priority_work(node: Node, log: list[str], n: int, seconds: float) -> list:
    """n guard conditions with a 500 ms budget whose callbacks log `low<i>` and take `seconds`."""

    def low(i: int) -> None:
        log.append(f"low{i}")
        time.sleep(seconds)

    lows = []
    for i in range(n):
        gc = node.create_guard_condition(lambda i=i: low(i))
        set_budget(gc, 500.0)
        lows.append(gc)
    return lows


def test_late_critical_timer_is_chosen_before_queued_low_priority_work(ros) -> None:
    """rclpy runs a ready batch to the end; EDF lets a critical timer in between."""
    node = Node("edf_preempt")
    log: list[str] = []
    lows = _low_priority_work(node, log, 4, 0.02)
    executor = DeadlineExecutor()
    executor.add_node(node)
    try:
        executor.spin_once(0.0)
        for gc in lows:
            gc.trigger()
        critical = node.create_timer(0.025, lambda: log.append("critical"))
        set_budget(critical, 2.0)
        end = time.monotonic() + 5.0
        while "critical" not in log or len([x for x in log if x.startswith("low")]) < 4:
            executor.spin_once(0.1)
            assert time.monotonic() < end, log
        critical.cancel()
    finally:
        executor.shutdown()
        node.destroy_node()
    # low0 and low1 take 40 ms; the timer is due at 25 ms, so it must come before low2 and low3
    # (index 0 if a loaded machine made it ready in the very first wait: EDF picks it first then too).
    first = log.index("critical")
    assert first <= 2, f"critical waited behind the queued low-priority callbacks: {log}"
    timing = next(s for s in executor.summaries() if s.kind == "timer")
    assert timing.count >= 1


def test_pool_workers_leave_long_work_queued_for_a_critical_release(ros) -> None:
    """Workers cannot preempt either: two 50 ms callbacks ready at once, a critical timer released
    about 45 ms later. The workers wait for its release instead of starting the long work."""
    node = Node("edf_pool_defer")
    log: list[str] = []
    lows = _low_priority_work(node, log, 2, 0.05)
    executor = DeadlineExecutor(threads=2)
    executor.add_node(node)
    end = time.monotonic() + 10.0
    try:
        for gc in lows:  # once each, so the executor knows they run 50 ms
            gc.trigger()
        while len(log) < 2:
            executor.spin_once(0.05)
            assert time.monotonic() < end, log
        time.sleep(0.1)  # both done: their cost is recorded
        log.clear()
        critical = node.create_timer(0.06, lambda: log.append("critical"))
        set_budget(critical, 2.0)
        time.sleep(0.015)
        for gc in lows:
            gc.trigger()
        while len(log) < 3:
            executor.spin_once(0.05)
            assert time.monotonic() < end, log
        critical.cancel()
    finally:
        executor.shutdown()
        node.destroy_node()
    assert log[0] == "critical", f"the workers started the long work first: {log}"


def test_parameter_services_work_under_it(spinner) -> None:
    served = Node("served", parameter_overrides=[Parameter("gain", value=1.5)])
    served.declare_parameter("gain", 1.5)
    spinner.append(Spinner([served]))
    client_node = rclpy.create_node("param_client")
    get = client_node.create_client(GetParameters, "/served/get_parameters")
    put = client_node.create_client(SetParameters, "/served/set_parameters")
    try:
        assert spin_until([client_node], lambda: get.service_is_ready() and put.service_is_ready(), 10.0)
        gain = Parameter("gain", value=2.5).to_parameter_msg()
        f = put.call_async(SetParameters.Request(parameters=[gain]))
        assert spin_until([client_node], f.done, 10.0) and f.result().results[0].successful
        g = get.call_async(GetParameters.Request(names=["gain", "executor.type"]))
        assert spin_until([client_node], g.done, 10.0)
        values = g.result().values
        assert values[0].double_value == 2.5 and values[1].string_value == "edf"
    finally:
        client_node.destroy_node()
    assert served.get_parameter("gain").value == 2.5


@pytest.mark.parametrize("threads", [1, 2])
def test_clients_and_coroutine_callbacks_work_under_it(ros, threads: int) -> None:
    """A node spun by ours calls a service: through spin_until_future_complete, and from an async
    timer callback that awaits the response (the rest of it runs as a task)."""
    host = Node("srv_host")
    caller = Node("srv_caller")
    client = caller.create_client(ListParameters, "/srv_host/list_parameters")
    executor = DeadlineExecutor(threads=threads)
    executor.add_node(host)
    executor.add_node(caller)
    answers: list[ListParameters.Response] = []
    try:
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(ListParameters.Request())
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        assert future.done() and "use_sim_time" in future.result().result.names

        async def ask() -> None:
            if not answers:
                answers.append(await client.call_async(ListParameters.Request()))

        caller.create_timer(0.05, ask)
        end = time.monotonic() + 10.0
        while not answers and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert answers and "use_sim_time" in answers[0].result.names
        assert executor.errors_of(caller) == 0
    finally:
        executor.shutdown(timeout_sec=1.0)
        caller.destroy_node()
        host.destroy_node()


@pytest.mark.parametrize("threads", [1, 2])
def test_spinning_before_releases_still_serves_timers_messages_and_cancels(ros, threads: int) -> None:
    """executor.spin_us: due timers are called straight after the busy-wait, messages that arrive
    meanwhile are still taken, and a cancelled timer leaves the loop waiting normally."""
    node = Node("spinner_node")
    ticks: list[int] = []
    got: list[Int32] = []
    pub = node.create_publisher(Int32, "spun", reliable_qos(50))
    node.create_subscription(Int32, "spun", got.append, reliable_qos(50))

    def tick() -> None:
        ticks.append(1)
        pub.publish(Int32(data=len(ticks)))

    timer = node.create_timer(0.005, tick)
    executor = DeadlineExecutor(threads=threads)
    executor.configure_realtime(ExecutorSettings(spin_us=2000))
    executor.add_node(node)
    try:
        end = time.monotonic() + 20.0
        while (len(ticks) < 30 or len(got) < 25) and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert len(ticks) >= 30 and len(got) >= 25, (len(ticks), len(got))
        timer.cancel()
        n = len(ticks)
        for _ in range(5):
            executor.spin_once(timeout_sec=0.02)  # returns: nothing is due any more
        assert len(ticks) == n
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
    assert executor.errors_of(node) == 0


class Talker(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("lc_talker")
        self.transitions: list[str] = []
        self.pub = None
        self.timer = None

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.transitions.append("configure")
        self.pub = self.create_lifecycle_publisher(Int32, "lc_count", 10)
        self.timer = self.create_timer(0.02, self._tick)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.transitions.append("activate")
        return super().on_activate(state)

    def _tick(self) -> None:
        if self.pub is not None:
            self.pub.publish(Int32(data=1))


def test_lifecycle_node_works_under_it(spinner) -> None:
    talker = Talker()
    spinner.append(Spinner([talker]))
    probe = rclpy.create_node("lc_probe")
    change = probe.create_client(ChangeState, "/lc_talker/change_state")
    get = probe.create_client(GetState, "/lc_talker/get_state")
    got: list[int] = []
    probe.create_subscription(Int32, "lc_count", lambda m: got.append(m.data), 10)
    try:
        assert spin_until([probe], change.service_is_ready, 10.0)
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            f = change.call_async(ChangeState.Request(transition=Transition(id=transition)))
            assert spin_until([probe], f.done, 10.0) and f.result().success
        s = get.call_async(GetState.Request())
        assert spin_until([probe], s.done, 10.0)
        assert s.result().current_state.label == "active"
        published = spin_until([probe], lambda: len(got) >= 3, 10.0)
        assert published, "the active lifecycle publisher published nothing"
    finally:
        probe.destroy_node()
    assert talker.transitions == ["configure", "activate"]


def test_pool_with_subscriptions_delivers_every_message(spinner) -> None:
    """rclpy 9.1.2's MultiThreadedExecutor collapses here (rclpy#1452); the pool must not."""
    n = 400
    receiver = Node("pool_rx")
    counts = {"a": 0, "b": 0}
    lock = threading.Lock()

    def on(topic: str) -> None:
        with lock:
            counts[topic] += 1

    group = ReentrantCallbackGroup()
    receiver.create_subscription(Int32, "pool_a", lambda m: on("a"), reliable_qos(n), callback_group=group)
    receiver.create_subscription(Int32, "pool_b", lambda m: on("b"), reliable_qos(n))
    receiver.create_timer(0.001, lambda: None)  # timers beside the subscriptions, as in a real node
    spinner.append(Spinner([receiver], threads=3))
    sender = rclpy.create_node("pool_tx")
    pa = sender.create_publisher(Int32, "pool_a", reliable_qos(n))
    pb = sender.create_publisher(Int32, "pool_b", reliable_qos(n))
    try:
        assert _wait(lambda: pa.get_subscription_count() and pb.get_subscription_count(), 10.0)
        time.sleep(0.3)  # reliable matching completes both ways
        for i in range(n):
            pa.publish(Int32(data=i))
            pb.publish(Int32(data=i))
            if i % 50 == 0:
                time.sleep(0.005)
        assert _wait(lambda: counts == {"a": n, "b": n}, 20.0), counts
    finally:
        sender.destroy_node()


def test_a_raising_callback_is_isolated_logged_and_turns_its_node_error(spinner, capfd) -> None:
    broken = Node("broken_node")
    Diagnostics(broken)

    def bug() -> None:
        raise ZeroDivisionError("a bug in a callback")

    broken.create_timer(0.02, bug)
    healthy = Node("healthy_node")
    ticks: list[int] = []
    healthy.create_timer(0.01, lambda: ticks.append(1))
    probe = rclpy.create_node("diag_probe")
    errors: list[str] = []

    def on_diag(msg: DiagnosticArray) -> None:
        errors.extend(s.message for s in msg.status if s.name == "broken_node: executor" and s.level == ERROR)

    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diag, reliable_qos(50))
    spinner.append(Spinner([broken, healthy]))
    try:
        assert spin_until([probe], lambda: bool(errors), 10.0), "no ERROR on /diagnostics for the broken node"
    finally:
        probe.destroy_node()
    before = len(ticks)
    assert _wait(lambda: len(ticks) > before + 10, 5.0), "the healthy node stopped with its neighbour"
    assert "ZeroDivisionError" in errors[0]
    assert spinner[0].executor.errors_of(broken) >= 2
    assert spinner[0].executor.errors_of(healthy) == 0
    err = capfd.readouterr().err
    assert "Traceback (most recent call last)" in err and "a bug in a callback" in err
    assert err.count("Traceback") == 1  # repeats are counted, not logged again each time


def test_executor_parameters_match_the_config_section(ros) -> None:
    config = yaml.safe_load((ROOT / "config" / "krystal.yaml").read_text())["/**"]["ros__parameters"]
    configured = {f"executor.{k}": v for k, v in config["executor"].items()}
    assert configured == {p.name: p.default for p in EXECUTOR_PARAMS}
    node = Node("settings_probe")
    try:
        settings = node_settings(node)
        assert (settings.kind, settings.threads, settings.sched_priority) == ("edf", 1, 0)
        for p in EXECUTOR_PARAMS:
            assert node.describe_parameter(p.name).description
    finally:
        node.destroy_node()


_BROKEN = """
import sys
from rclpy.node import Node
import krystal.ros.entry as entry
from krystal.graph import NodeEntry

class Broken(Node):
    def __init__(self, node_name):
        super().__init__(node_name)
        1 / 0

sys.modules["broken_mod"] = sys.modules[__name__]
entry.by_executable = lambda name: NodeEntry("broken", name, "broken_mod:Broken", "")
sys.exit(entry.main("broken", sys.argv))
"""


def test_a_node_executable_that_dies_prints_its_traceback(tmp_path) -> None:
    script = tmp_path / "broken_exe.py"
    script.write_text(_BROKEN)
    cmd = [sys.executable, str(script)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr and "ZeroDivisionError" in out.stderr
    assert "[broken] cannot start" in out.stderr


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_refused_sched_fifo_logs_one_line_and_the_executable_runs_and_stops_cleanly(ros, procs) -> None:
    drop = "-sys_nice"
    video = procs(
        [
            "setpriv",
            f"--inh-caps={drop}",
            f"--bounding-set={drop}",
            executable("video_source"),
            "--ros-args",
            "-p",
            "executor.sched_priority:=50",
            "-p",
            "fps:=30.0",
        ]
    )
    probe = rclpy.create_node("rt_probe")
    from sensor_msgs.msg import Image

    images: list[Image] = []
    probe.create_subscription(Image, "camera/image_raw", images.append, sensor_qos(5))
    try:
        ok = spin_until([probe], lambda: len(images) >= 3, 15.0)
    finally:
        probe.destroy_node()
    code, _ = video.interrupt(timeout_s=5.0)
    assert ok, video.stderr
    assert code == 0, video.stderr
    assert "Traceback" not in video.stderr
    refusals = [line for line in video.stderr.splitlines() if "real-time setup refused" in line]
    assert len(refusals) == 1 and "SCHED_FIFO priority 50: not permitted" in refusals[0], video.stderr
    assert "executor summary" in video.stderr


def test_a_real_time_pool_that_spins_before_releases_stops_cleanly_on_ctrl_c(ros, procs) -> None:
    """SCHED_FIFO (root here; refused with one line elsewhere), a pool of 2 and spin_us: frames
    flow, Ctrl-C exits 0 without a traceback and the summary is logged."""
    args = ["executor.sched_priority:=20", "executor.threads:=2", "executor.spin_us:=200", "width:=64"]
    video = procs([executable("video_source"), "--ros-args", *(x for a in args for x in ("-p", a))])
    probe = rclpy.create_node("rt_pool_probe")
    from sensor_msgs.msg import Image

    images: list[Image] = []
    probe.create_subscription(Image, "camera/image_raw", images.append, sensor_qos(5))
    try:
        ok = spin_until([probe], lambda: len(images) >= 10, 20.0)
    finally:
        probe.destroy_node()
    code, _ = video.interrupt(timeout_s=10.0)
    assert ok, video.stderr
    assert code == 0 and "Traceback" not in video.stderr, video.stderr
    assert "executor summary" in video.stderr


def test_qos_deadline_misses_are_counted_through_the_executor(ros) -> None:
    """A 50 Hz stream that stops: deadline-missed events (waitables) arrive through the executor."""
    node = Node("deadline_watch")
    misses = DeadlineMisses()
    got: list[Int32] = []
    qos = with_deadline(sensor_qos(), rate_hz=50.0)
    assert qos.deadline.nanoseconds == 40_000_000
    node.create_subscription(Int32, "watched", got.append, qos, event_callbacks=misses.callbacks())
    pub = node.create_publisher(Int32, "watched", qos)
    timer = node.create_timer(0.02, lambda: pub.publish(Int32(data=1)))
    executor = DeadlineExecutor()
    executor.add_node(node)
    try:
        end = time.monotonic() + 10.0
        while len(got) < 10 and time.monotonic() < end:
            executor.spin_once(0.05)
        assert len(got) >= 10, "the deadline QoS on both sides must still match"
        timer.cancel()  # the stream stops: the deadline passes again and again
        while misses.total < 3 and time.monotonic() < end:
            executor.spin_once(0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
    assert misses.total >= 3 and misses.since_last() == misses.total and misses.since_last() == 0
    sub = next(s for s in executor.summaries() if s.kind == "subscription")
    assert sub.count >= 10


def test_events_falls_back_for_nodes_with_guard_conditions(ros) -> None:
    from rclpy.executors import SingleThreadedExecutor

    from krystal.ros.spin import executor_for

    node = Node("with_guard")
    node.create_guard_condition(lambda: None)
    try:
        executor, _ = executor_for([node], "events")
        assert isinstance(executor, SingleThreadedExecutor)
        executor.shutdown()
        executor, _ = executor_for([node])
        assert isinstance(executor, DeadlineExecutor)
        executor.shutdown()
    finally:
        node.destroy_node()


@pytest.mark.parametrize(("threads", "slack_ns"), [(1, None), (2, None), (1, 20_000), (2, 7_000)])
def test_callbacks_run_on_threads_with_the_configured_timer_slack(ros, threads: int, slack_ns) -> None:
    """executor.timer_slack_ns (1 µs by default; Linux's own is 50 µs) holds on the spinning
    thread and on every pool worker."""
    node = Node("slack_node")
    group = ReentrantCallbackGroup()
    seen: dict[int, int] = {}

    def tick() -> None:
        seen[threading.get_ident()] = timer_slack()
        time.sleep(0.002)

    for _ in range(4):
        node.create_timer(0.005, tick, callback_group=group)
    executor = DeadlineExecutor(threads=threads)
    if slack_ns is not None:
        executor.configure_realtime(ExecutorSettings(timer_slack_ns=slack_ns))
    executor.add_node(node)
    before = timer_slack()
    assert before is not None  # Linux: prctl's timer slack
    try:
        end = time.monotonic() + 10.0
        while len(seen) < threads and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        spinner = timer_slack()  # this thread spun: set up as the workers are
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        set_timer_slack(before)
    assert len(seen) >= threads and set(seen.values()) == {slack_ns or 1000}, seen
    assert spinner == (slack_ns or 1000)
