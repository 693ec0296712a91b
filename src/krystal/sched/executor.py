"""DeadlineExecutor: an rclpy executor that runs the ready callback with the nearest deadline (EDF).

Deadlines: a timer's expected call time plus its budget (default: its period); a message's DDS
source stamp plus the budget of its topic (default: the subscription's QoS deadline); services,
clients, guard conditions and waitables when seen ready plus the node's default budget. Every
ready entity is taken in one pass after each wait (its message, request or timer call), so the
scheduler knows every deadline before it picks; an entity with work queued or running is left out
of the wait set until that work is done, so DDS keeps the backlog (bounded by the QoS depth).

One wait set is kept and refilled in place; it is rebuilt only when entities come or go.
With `threads > 1` the spinning thread only waits and takes, and a pool runs the callbacks,
respecting callback groups. An exception escaping a callback is logged with its traceback,
counted against its node (ERROR on that node's /diagnostics) and the executor goes on.
"""

from __future__ import annotations

import contextlib
import heapq
import inspect
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any

import rclpy
from rclpy.clock_type import ClockType
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.subscription import Subscription
from rclpy.task import Task

from krystal.ros.diagnostics import ERROR, OK, WARN, Health, diagnostics_of
from krystal.sched.realtime import RealtimeResult, apply_realtime, set_timer_slack
from krystal.sched.settings import ExecutorSettings, node_settings
from krystal.sched.timing import (
    CallbackStats,
    CallbackSummary,
    format_summary,
    resolve_budget_ns,
    should_defer,
)

try:
    from rclpy.exceptions import TimerCancelledError
except ImportError:  # Humble

    class TimerCancelledError(Exception):  # type: ignore[no-redef]
        pass


try:
    from rclpy.timer import TimerInfo

    HAS_TIMER_INFO = True
except ImportError:  # Humble
    HAS_TIMER_INFO = False

try:
    _MESSAGE_ONLY: Any = Subscription.CallbackType.MessageOnly
except AttributeError:  # Humble: message-only callbacks
    _MESSAGE_ONLY = None

_TIMER, _SUB, _SRV, _CLI, _GC, _WAITABLE = range(6)
_KIND_NAMES = ("timer", "subscription", "service", "client", "guard", "waitable")
_STEADY, _WALL, _SIM = range(3)
_POLL_MIN_NS = 50_000  # callbacks shorter than this run back to back without a poll in between
_DEFAULTS = ExecutorSettings()
_ERROR_HOLD_NS = 10_000_000_000  # a node stays ERROR this long after a callback raised
_REPEAT_LOG_NS = 10_000_000_000  # the same failure is logged again at most this often

_GROUP_NAME_ATTR = "_krystal_group_name"
_BUDGET_ATTR = "_krystal_budget_ms"
_PERIOD_ATTR = "_krystal_period_ns"


def name_group(group: Any, name: str) -> Any:
    """Name a callback group so `executor.group_budgets_ms` can give it a budget; returns it."""
    setattr(group, _GROUP_NAME_ATTR, name)
    return group


def set_stream_period(subscription: Any, period_s: float) -> None:
    """The period of the stream a subscription reads: its natural budget (before its QoS deadline)."""
    setattr(subscription, _PERIOD_ATTR, int(period_s * 1e9))


def set_budget(entity_or_group: Any, budget_ms: float) -> None:
    """Budget (deadline after release, ms) of one timer, subscription, service or callback group."""
    setattr(entity_or_group, _BUDGET_ATTR, float(budget_ms))


class _Entry:
    """One entity in the wait set, with what the hot path needs cached."""

    __slots__ = (
        "budget_ns",
        "busy",
        "cb",
        "cb_info_arg",
        "cb_is_coro",
        "clock",
        "entity",
        "group",
        "handle",
        "kind",
        "name",
        "next_release_ns",
        "node",
        "owner",
        "period_ns",
        "stats",
    )

    def __init__(self, entity: Any, node: Node, kind: int, owner: _NodeState) -> None:
        self.entity = entity
        self.node = node
        self.kind = kind
        self.handle: Any = getattr(entity, "handle", None)
        self.budget_ns = 0
        self.busy = False
        self.stats: CallbackStats | None = None
        self.name = ""
        self.group: Any = getattr(entity, "callback_group", None)
        self.period_ns = 0
        self.next_release_ns = 0
        self.clock = _STEADY
        self.cb: Any = None
        self.cb_info_arg: str | None = None
        self.cb_is_coro = False
        self.owner = owner


class _NodeState:
    """Per node: its settings, error bookkeeping and the diagnostics task."""

    def __init__(self, node: Node, settings: ExecutorSettings) -> None:
        self.node = node
        self.settings = settings
        self.entries: list[_Entry] = []
        self.errors = 0
        self.last_error_ns = -1
        self.last_error = ""
        self.misses_seen = 0
        self.diagnostics_attached = False
        self.logged: dict[tuple[int, str], int] = {}  # (entry id, exception type) -> last log time


class DeadlineExecutor(Executor):
    """EDF over rclpy's wait set; `threads` > 1 adds a pool that respects callback groups."""

    def __init__(
        self,
        *,
        context: Context | None = None,
        threads: int = 1,
        isolate_errors: bool = True,
    ) -> None:
        super().__init__(context=context)
        self._threads = max(1, int(threads))
        self._isolate = isolate_errors
        self._states: dict[Node, _NodeState] = {}
        self._entries: dict[Any, _Entry] = {}
        self._dirty = True
        self._tasks_due = False
        self._ws: Any = None
        self._stack = contextlib.ExitStack()
        self._queue: list[tuple[int, int, _Entry, Any, int]] = []
        self._seq = 0
        self._timers: list[_Entry] = []
        self._subs: list[_Entry] = []
        self._services: list[_Entry] = []
        self._clients: list[_Entry] = []
        self._gcs: list[_Entry] = []
        self._waitables: list[_Entry] = []
        self._by_ptr: tuple[dict[int, _Entry], ...] = ({}, {}, {}, {}, {})
        self._own_guards: list[Any] = []
        self._guard_ptr = 0
        self._last_wait_ns = 0
        self._spin_ns = 0
        self._spinning = threading.Lock()
        self._realtime: RealtimeResult | None = None
        self._rt_settings: ExecutorSettings | None = None
        # per thread: the generation of settings it was set up with (thread idents are reused)
        self._local = threading.local()
        self._generation = 0
        # pool
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._stop = False
        self._done_gc: GuardCondition | None = None
        if self._threads > 1:
            self._done_gc = GuardCondition(callback=None, callback_group=None, context=self._context)

    # -- nodes and entities -------------------------------------------------------------------

    def add_node(self, node: Node) -> bool:
        if node not in self._states:
            self._states[node] = _NodeState(node, node_settings(node))
        added = super().add_node(node)
        self.wake()
        return added

    def remove_node(self, node: Node) -> None:
        super().remove_node(node)
        self.wake()

    def wake(self) -> None:
        self._dirty = True
        super().wake()

    def configure_realtime(self, settings: ExecutorSettings) -> None:
        """Real-time setup for the spinning thread and the pool, applied when spinning starts."""
        self._rt_settings = settings
        self._generation += 1
        self._spin_ns = int(settings.spin_us * 1000)

    def _rebuild(self) -> None:
        self._dirty = False
        self._stack.close()
        self._stack = contextlib.ExitStack()
        enter = self._stack.enter_context
        lists: tuple[list[_Entry], ...] = ([], [], [], [], [], [])
        by_ptr: tuple[dict[int, _Entry], ...] = ({}, {}, {}, {}, {})
        counts = [0, 0, 0, 0, 0, 0]  # subs, guards, timers, clients, services, events
        slot = {_SUB: 0, _GC: 1, _TIMER: 2, _CLI: 3, _SRV: 4}
        seen: dict[Any, _Entry] = {}
        for node in self.get_nodes():
            state = self._states.get(node)
            if state is None:
                continue
            groups: tuple[tuple[int, Iterable[Any]], ...] = (
                (_TIMER, node.timers),
                (_SUB, node.subscriptions),
                (_SRV, node.services),
                (_CLI, node.clients),
                (_GC, node.guards),
                (_WAITABLE, node.waitables),
            )
            for kind, entities in groups:
                for entity in entities:
                    entry = self._entries.get(entity)
                    if entry is None:
                        entry = _Entry(entity, node, kind, state)
                        self._configure(entry, state)
                    try:
                        if kind == _WAITABLE:
                            enter(entity)
                            n = entity.get_num_entities()
                            counts[0] += n.num_subscriptions
                            counts[1] += n.num_guard_conditions
                            counts[2] += n.num_timers
                            counts[3] += n.num_clients
                            counts[4] += n.num_services
                            counts[5] += n.num_events
                        else:
                            enter(entry.handle)
                            counts[slot[kind]] += 1
                            by_ptr[slot[kind]][entry.handle.pointer] = entry
                    except InvalidHandle:
                        continue
                    if kind == _TIMER:
                        entry.period_ns = int(entity.timer_period_ns)
                        entry.clock = _clock_kind(entity)
                        if not entry.next_release_ns and entry.clock != _SIM:
                            entry.next_release_ns = _first_release(entity)
                    seen[entity] = entry
                    lists[kind].append(entry)
            if not state.diagnostics_attached:
                diagnostics = diagnostics_of(node)
                if diagnostics is not None:
                    diagnostics.add("executor", self._health_task(state))
                    state.diagnostics_attached = True
        self._entries = seen
        own = [g for g in (self._guard, self._sigint_gc, self._done_gc) if g is not None]
        self._own_guards = []
        for g in own:
            with contextlib.suppress(InvalidHandle):
                enter(g.handle)
                self._own_guards.append(g.handle)
        counts[1] += len(self._own_guards)
        self._guard_ptr = self._guard.handle.pointer if self._guard is not None else 0
        if self._context.handle is None:
            raise RuntimeError("context has no handle")
        enter(self._context.handle)
        self._ws = _rclpy.WaitSet(
            counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], self._context.handle
        )
        (self._timers, self._subs, self._services, self._clients, self._gcs, self._waitables) = lists
        self._by_ptr = by_ptr

    def _configure(self, entry: _Entry, state: _NodeState) -> None:
        e = entry.entity
        node = state.node
        budgets = state.settings.budgets
        group_name = getattr(entry.group, _GROUP_NAME_ATTR, None)
        explicit = float(getattr(e, _BUDGET_ATTR, 0.0) or getattr(entry.group, _BUDGET_ATTR, 0.0))
        topic_ms = 0.0
        natural = 0
        kind = entry.kind
        if kind == _TIMER:
            cb = getattr(e.callback, "__qualname__", "timer")
            entry.name = f"timer {e.timer_period_ns / 1e6:g}ms {cb}"
            natural = int(e.timer_period_ns)
        elif kind == _SUB:
            entry.name = f"sub {e.topic_name}"
            topic_ms = budgets.for_topic(e.topic_name, node.get_namespace())
            deadline = getattr(getattr(e, "qos_profile", None), "deadline", None)
            natural = int(getattr(e, _PERIOD_ATTR, 0) or getattr(deadline, "nanoseconds", 0) or 0)
        elif kind == _SRV:
            entry.name = f"service {e.srv_name}"
        elif kind == _CLI:
            entry.name = f"client {e.srv_name}"
        elif kind == _GC:
            entry.name = f"guard {getattr(e.callback, '__qualname__', 'callback')}"
        else:
            entry.name = f"waitable {type(e).__name__}"
        entry.budget_ns = resolve_budget_ns(
            explicit_ms=explicit,
            topic_ms=topic_ms,
            group_ms=budgets.for_group(group_name),
            node_ms=budgets.node_ms,
            natural_ns=natural,
            default_ms=state.settings.default_budget_ms,
        )
        state.entries.append(entry)

    # -- waiting and taking ------------------------------------------------------------------

    def _wait_and_take(self, timeout_ns: int, until_ns: int = 0) -> None:
        """`until_ns` (monotonic), when set, ends the wait at that time: the timeout is taken just
        before `rcl_wait`, after the wait set is built."""
        e: Any
        ws = self._ws
        ws.clear_entities()
        add = ws.add_timer
        for e in self._timers:
            if not e.busy:
                add(e.handle)
        add = ws.add_subscription
        for e in self._subs:
            if not e.busy:
                add(e.handle)
        add = ws.add_service
        for e in self._services:
            if not e.busy:
                add(e.handle)
        add = ws.add_client
        for e in self._clients:
            if not e.busy:
                add(e.handle)
        add = ws.add_guard_condition
        for e in self._gcs:
            if not e.busy:
                add(e.handle)
        for h in self._own_guards:
            add(h)
        waitables = self._waitables
        for e in waitables:
            if not e.busy:
                e.entity.add_to_wait_set(ws)
        if until_ns:
            timeout_ns = max(0, until_ns - time.monotonic_ns())
        ws.wait(timeout_ns)
        now = time.monotonic_ns()
        self._last_wait_ns = now
        wall_offset = time.time_ns() - now
        pool = self._threads > 1
        queue = [] if pool else self._queue  # the pool's heap is shared: merged under its lock
        push = heapq.heappush
        by_timer, by_sub, by_srv, by_cli, by_gc = (
            self._by_ptr[2],
            self._by_ptr[0],
            self._by_ptr[4],
            self._by_ptr[3],
            self._by_ptr[1],
        )
        take_timer = self._release_timer
        for ptr in ws.get_ready_entities("timer"):
            e = by_timer.get(ptr)
            if e is not None and not e.busy:
                take_timer(e, now, wall_offset, queue)
        seq = self._seq
        for ptr in ws.get_ready_entities("subscription"):
            e = by_sub.get(ptr)
            if e is None or e.busy:
                continue
            sub = e.entity
            try:
                taken = e.handle.take_message(sub.msg_type, sub.raw)
            except InvalidHandle:
                continue
            if taken is None:
                continue
            stamp = taken[1]["source_timestamp"]
            release = stamp - wall_offset if stamp > 0 else now
            if release > now or release < now - 60_000_000_000:  # a skewed clock: use arrival
                release = now
            e.busy = True
            seq += 1
            push(queue, (release + e.budget_ns, seq, e, taken, release))
        for ptr in ws.get_ready_entities("service"):
            e = by_srv.get(ptr)
            if e is None or e.busy:
                continue
            srv = e.entity
            try:
                request_and_header = e.handle.service_take_request(srv.srv_type.Request)
            except InvalidHandle:
                continue
            if request_and_header[1] is None:
                continue
            e.busy = True
            seq += 1
            push(queue, (now + e.budget_ns, seq, e, request_and_header, now))
        for ptr in ws.get_ready_entities("client"):
            e = by_cli.get(ptr)
            if e is None or e.busy:
                continue
            try:
                header_and_response = e.handle.take_response(e.entity.srv_type.Response)
            except InvalidHandle:
                continue
            if header_and_response[0] is None:
                continue
            e.busy = True
            seq += 1
            push(queue, (now + e.budget_ns, seq, e, header_and_response, now))
        guard_ptr = self._guard_ptr
        for ptr in ws.get_ready_entities("guard_condition"):
            if ptr == guard_ptr:
                self._tasks_due = True  # woken: a task was created (wake() also marks _dirty)
                continue
            e = by_gc.get(ptr)
            if e is None or e.busy:
                continue
            e.busy = True
            seq += 1
            push(queue, (now + e.budget_ns, seq, e, None, now))
        for e in waitables:
            if e.busy:
                continue
            w = e.entity
            try:
                if not w.is_ready(ws):
                    continue
                data = w.take_data()
            except InvalidHandle:
                continue
            e.busy = True
            seq += 1
            push(queue, (now + e.budget_ns, seq, e, data, now))
        self._seq = seq
        if pool and queue:
            with self._cond:
                for item in queue:
                    push(self._queue, item)
                self._cond.notify_all()

    def _release_timer(self, e: _Entry, now: int, wall_offset: int, queue: list[Any]) -> bool:
        """Call a ready timer (rcl's call: its next release is set) and queue its callback."""
        h = e.handle
        try:
            if not h.is_timer_ready():
                return False
            if HAS_TIMER_INFO:
                info = h.call_timer_with_info()
                expected = info["expected_call_time"]
            else:
                h.call_timer()
                info = None
                expected = now
        except (InvalidHandle, TimerCancelledError):
            return False
        if e.clock == _STEADY:
            release = expected
        elif e.clock == _WALL:
            release = expected - wall_offset
        else:
            release = now
        release = min(release, now)
        period = e.period_ns
        if period > 0:
            e.next_release_ns = release + period * ((now - release) // period + 1)
        e.busy = True
        self._seq += 1
        heapq.heappush(queue, (release + e.budget_ns, self._seq, e, info, release))
        return True

    # -- running -----------------------------------------------------------------------------

    def _run(self, item: tuple[int, int, _Entry, Any, int]) -> None:
        deadline, _, e, payload, release = item
        start = time.monotonic_ns()
        try:
            self._dispatch(e, payload)
        except Exception as exc:
            self._on_error(e, exc)
        end = time.monotonic_ns()
        e.busy = False
        stats = e.stats
        if stats is None:
            stats = e.stats = CallbackStats(e.name, _KIND_NAMES[e.kind], e.node.get_name())
        stats.record(release, deadline, start, end)

    def _dispatch(self, e: _Entry, payload: Any) -> None:
        kind = e.kind
        entity = e.entity
        if kind == _SUB:
            if getattr(entity, "_callback_type", _MESSAGE_ONLY) is _MESSAGE_ONLY:
                result = entity.callback(payload[0])
            else:
                result = entity.callback(*payload)
            if result is not None and inspect.iscoroutine(result):
                self._drive(result, e)
        elif kind == _TIMER:
            cb = entity.callback
            if cb is None:
                return
            if cb is not e.cb:
                e.cb = cb
                e.cb_info_arg = _timer_info_arg(cb) if HAS_TIMER_INFO else None
                e.cb_is_coro = inspect.iscoroutinefunction(cb)
            if e.cb_info_arg is not None and payload is not None:
                info = TimerInfo(
                    expected_call_time=payload["expected_call_time"],
                    actual_call_time=payload["actual_call_time"],
                    clock_type=entity.clock.clock_type,
                )
                result = cb(**{e.cb_info_arg: info})
            else:
                result = cb()
            if e.cb_is_coro:
                self._drive(result, e)
        elif kind == _SRV:
            request, header = payload
            response = entity.callback(request, entity.srv_type.Response())
            if inspect.iscoroutine(response):
                self._drive(_respond_later(entity, response, header), e)
            else:
                entity.send_response(response, header)
        elif kind == _CLI:
            header, response = payload
            try:
                future = entity.get_pending_request(header.request_id.sequence_number)
            except KeyError:
                return  # cancelled
            future._set_executor(self)
            future.set_result(response)
        elif kind == _GC:
            if entity.callback is not None:
                result = entity.callback()
                if result is not None and inspect.iscoroutine(result):
                    self._drive(result, e)
        else:
            for future in entity._futures:
                future._set_executor(self)
            self._drive(entity.execute(payload), e)
        if kind == _CLI:
            self._tasks_due = True  # a task may be awaiting that future

    def _drive(self, coro: Coroutine[Any, Any, Any], e: _Entry) -> None:
        """Run a coroutine callback until it first waits; the rest runs as a task."""
        try:
            coro.send(None)
        except StopIteration:
            return
        task: Task[None] = Task(_resume, (coro,), executor=self)
        with self._tasks_lock:
            self._tasks.append((task, e.entity, e.node))
        self.wake()

    def _run_tasks(self) -> None:
        with self._tasks_lock:
            tasks = list(self._tasks)
        for task, entity, node in tasks:
            if not task.executing() and not task.done():
                task()
            if task.done():
                exc = task.exception()
                if exc is not None:
                    entry = self._entries.get(entity) if entity is not None else None
                    if entry is not None:
                        self._on_error(entry, exc)
                    elif self._isolate and self._context.ok():
                        _log_task_error(node, exc)
                    elif self._context.ok():
                        raise exc
        with self._tasks_lock:
            self._tasks = [t for t in self._tasks if not t[0].done()]

    def _on_error(self, e: _Entry, exc: BaseException) -> None:
        if not self._context.ok():
            return  # shut down under a running callback (a publish on a dead context): expected
        if not self._isolate:
            raise exc
        state = e.owner
        now = time.monotonic_ns()
        state.errors += 1
        state.last_error_ns = now
        state.last_error = f"{e.name}: {type(exc).__name__}: {exc}"
        stats = e.stats
        if stats is None:
            stats = e.stats = CallbackStats(e.name, _KIND_NAMES[e.kind], e.node.get_name())
        stats.errors += 1
        key = (id(e), type(exc).__name__)
        last = state.logged.get(key)
        if last is None or now - last > _REPEAT_LOG_NS:
            state.logged[key] = now
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
            with contextlib.suppress(Exception):
                e.node.get_logger().error(
                    f"{e.name} raised (the node keeps running, {stats.errors} so far):\n{text}"
                )
        diagnostics = diagnostics_of(e.node)
        if diagnostics is not None:
            with contextlib.suppress(Exception):
                diagnostics.level_changed("executor", ERROR)

    def _health_task(self, state: _NodeState) -> Callable[[], Health]:
        def task() -> Health:
            now = time.monotonic_ns()
            values: dict[str, str] = {}
            misses = 0
            for e in state.entries:
                if e.stats is not None and e.stats.count:
                    s = e.stats.summary()
                    values[e.name] = s.line()
                    misses += s.misses
            new_misses = misses - state.misses_seen
            state.misses_seen = misses
            values["errors"] = str(state.errors)
            values["deadline_misses"] = str(misses)
            if state.last_error_ns >= 0 and now - state.last_error_ns < _ERROR_HOLD_NS:
                return Health(ERROR, f"callback raised: {state.last_error}", values)
            if new_misses:
                return Health(WARN, f"{new_misses} deadline misses since the last report", values)
            return Health(OK, f"{len(values) - 2} callbacks on time", values)

        return task

    # -- spinning ----------------------------------------------------------------------------

    def _setup_thread(self) -> None:
        """Once per thread that spins or works: timer slack, and what configure_realtime asked."""
        if getattr(self._local, "generation", -1) == self._generation:
            return
        self._local.generation = self._generation
        s = self._rt_settings
        if s is None:
            set_timer_slack(_DEFAULTS.timer_slack_ns)
            return
        first = self._realtime is None
        result = setup_realtime(s, lock_memory=s.mlockall and first, log=first)
        if first:
            self._realtime = result

    @property
    def realtime(self) -> RealtimeResult | None:
        """What the real-time setup of the spinning thread applied and what the OS refused."""
        return self._realtime

    def spin(self) -> None:
        with self._spinning:
            self._setup_thread()
            self._start_pool()
            try:
                while self._context.ok() and not self._is_shutdown:
                    self._iterate(-1)
            except (ExternalShutdownException, InvalidHandle, RuntimeError):
                # the context went away under the wait (Ctrl-C): that is the end we asked for
                if self._context.ok() and not self._is_shutdown:
                    raise

    def spin_once(self, timeout_sec: float | None = None) -> None:
        with self._spinning:
            self._setup_thread()
            self._start_pool()
            self._iterate(_to_ns(timeout_sec))

    def _spin_once_until_future_complete(self, future: Any, timeout_sec: Any = None) -> None:
        timeout = timeout_sec.timeout if hasattr(timeout_sec, "timeout") else timeout_sec
        self.spin_once(timeout)

    def spin_once_until_future_complete(self, future: Any, timeout_sec: Any = None) -> None:
        future.add_done_callback(lambda _: self.wake())
        self._spin_once_until_future_complete(future, timeout_sec)

    def _iterate(self, timeout_ns: int) -> None:
        if self._is_shutdown or not self._context.ok():
            return
        if self._dirty:
            self._rebuild()
            self._tasks_due = True
        if self._tasks_due:
            self._tasks_due = False
            if self._tasks:
                self._run_tasks()
        if self._threads > 1:
            self._wait(timeout_ns)
            return
        queue = self._queue
        if not queue:
            self._wait(timeout_ns)
        elif time.monotonic_ns() - self._last_wait_ns >= _POLL_MIN_NS:
            self._wait_and_take(0)  # a late critical timer may have become ready meanwhile
        if not queue or self._is_shutdown:
            return
        head = queue[0]
        if self._timers:
            wait_until = self._defer_for(head)
            if wait_until:
                wait = max(0, wait_until - time.monotonic_ns()) + 200_000
                self._wait_and_take(wait if timeout_ns < 0 else min(wait, timeout_ns))
                return  # the next pass chooses again: the wait may have ended on other work
        self._run(heapq.heappop(queue))

    def _wait(self, timeout_ns: int) -> None:
        """Wait for work; with `spin_us`, sleep only until that long before the next timer's
        release and busy-wait the rest: the kernel's wake-up is what jitters at 1 kHz."""
        spin = self._spin_ns
        if not spin or timeout_ns == 0:
            self._wait_and_take(timeout_ns)
            return
        now = time.monotonic_ns()
        due = 0
        for t in self._timers:
            r = t.next_release_ns
            if r > now and not t.busy and t.clock != _SIM and (due == 0 or r < due):
                due = r
        if due == 0 or (timeout_ns > 0 and now + timeout_ns < due):
            self._wait_and_take(timeout_ns)
            return
        if due - spin > now:
            seq = self._seq
            self._wait_and_take(0, until_ns=due - spin)
            if self._seq != seq or self._dirty or self._tasks_due:
                return  # other work came first
        clock = time.monotonic_ns
        while clock() < due:
            pass
        # the due timer is called at once, not found through another wait
        now = clock()
        wall_offset = time.time_ns() - now
        queue = self._queue if self._threads == 1 else []
        taken = False
        for t in self._timers:
            if t.next_release_ns == due and not t.busy:
                taken = self._release_timer(t, now, wall_offset, queue) or taken
        if not taken:
            self._wait_and_take(0)
        elif queue is not self._queue:
            with self._cond:
                for item in queue:
                    heapq.heappush(self._queue, item)
                self._cond.notify_all()

    def _defer_for(self, head: tuple[int, int, _Entry, Any, int]) -> int:
        entry = head[2]
        cost = entry.stats.run_ewma_ns if entry.stats is not None else 0.0
        if cost < _POLL_MIN_NS:
            return 0
        now = time.monotonic_ns()
        upcoming = [
            (
                t.next_release_ns,
                t.next_release_ns + t.budget_ns,
                t.stats.run_ewma_ns if t.stats else 0.0,
                t.period_ns,
            )
            for t in self._timers
            if not t.busy
            and t.clock != _SIM
            and t.next_release_ns < now + cost
            and (t.next_release_ns > now or self._ready(t))
        ]
        return should_defer(now, head[0], cost, upcoming) if upcoming else 0

    @staticmethod
    def _ready(t: _Entry) -> bool:
        """Released while the last wait's work was being taken (rcl's check came before it)."""
        try:
            return bool(t.handle.is_timer_ready())
        except (InvalidHandle, TimerCancelledError):
            return False

    # -- the pool ----------------------------------------------------------------------------

    def _start_pool(self) -> None:
        if self._threads <= 1 or self._workers:
            return
        for i in range(self._threads):
            t = threading.Thread(target=self._worker, name=f"krystal-edf-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def _pop_runnable(self) -> tuple[int, int, _Entry, Any, int] | None:
        queue = self._queue
        skipped = []
        found = None
        while queue:
            item = heapq.heappop(queue)
            group = item[2].group
            if group is None or group.beginning_execution(item[2].entity):
                found = item
                break
            skipped.append(item)
        for item in skipped:
            heapq.heappush(queue, item)
        return found

    def _worker(self) -> None:
        self._setup_thread()
        cond = self._cond
        while True:
            with cond:
                item = None
                while not self._stop:
                    item = self._pop_runnable()
                    if item is None:
                        cond.wait()
                        continue
                    wait_until = self._defer_for(item) if self._timers else 0
                    if not wait_until:
                        break
                    # as the single thread does: leave it queued until that release is taken
                    if item[2].group is not None:
                        item[2].group.ending_execution(item[2].entity)
                    heapq.heappush(self._queue, item)
                    item = None
                    cond.wait(max(0, wait_until - time.monotonic_ns()) / 1e9 + 200e-6)
                if self._stop:
                    return
            assert item is not None
            e = item[2]
            try:
                self._run(item)
            finally:
                if e.group is not None:
                    e.group.ending_execution(e.entity)
                with cond:
                    cond.notify_all()
                gc = self._done_gc
                if gc is not None:
                    with contextlib.suppress(InvalidHandle):
                        gc.trigger()  # the spinning thread puts the entity back in the wait set

    # -- reports and shutdown ----------------------------------------------------------------

    def summaries(self) -> list[CallbackSummary]:
        return [e.stats.summary() for s in self._states.values() for e in s.entries if e.stats]

    def summary_text(self) -> str:
        return format_summary(self.summaries())

    def errors_of(self, node: Node) -> int:
        state = self._states.get(node)
        return state.errors if state is not None else 0

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        done = super().shutdown(timeout_sec)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._workers:
            t.join(timeout=1.0 if timeout_sec is None else max(0.1, timeout_sec))
        if self._spinning.acquire(timeout=1.0 if timeout_sec is None else max(0.0, timeout_sec)):
            try:
                self._stack.close()
                self._ws = None
                if self._done_gc is not None:
                    self._done_gc.destroy()
                    self._done_gc = None
            finally:
                self._spinning.release()
        return done


class _Continue:
    """Awaitable that goes on driving a coroutine already started (suspended in an await):
    `await coro` on it would raise "coroutine is being awaited already"."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro

    def __await__(self) -> Generator[Any, None, Any]:
        while True:
            try:
                yielded = self._coro.send(None)
            except StopIteration as stop:
                return stop.value
            yield yielded


async def _resume(coro: Coroutine[Any, Any, Any]) -> None:
    await _Continue(coro)


async def _respond_later(service: Any, pending: Coroutine[Any, Any, Any], header: Any) -> None:
    service.send_response(await pending, header)


def _log_task_error(node: Node | None, exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    logger = node.get_logger() if node is not None else rclpy.logging.get_logger("krystal.sched")
    logger.error(f"task raised:\n{text}")


def _timer_info_arg(cb: Callable[..., Any]) -> str | None:
    try:
        params = inspect.signature(cb).parameters.values()
    except (TypeError, ValueError):
        return None
    for p in params:
        if p.annotation is TimerInfo or p.annotation == "TimerInfo":
            return p.name
    return None


def _first_release(timer: Any) -> int:
    """Monotonic time of a timer's first release, so the look-ahead knows it before its first call."""
    try:
        until = timer.time_until_next_call()
    except (InvalidHandle, TimerCancelledError):
        return 0
    if until is None:
        return 0
    return time.monotonic_ns() + max(0, int(until))  # due already: now (0 would read as "not known")


def _clock_kind(timer: Any) -> int:
    clock = timer.clock
    if clock.clock_type == ClockType.STEADY_TIME:
        return _STEADY
    if clock.clock_type == ClockType.ROS_TIME and getattr(clock, "ros_time_is_active", False):
        return _SIM
    return _WALL


def _to_ns(timeout_sec: float | None) -> int:
    if timeout_sec is None or timeout_sec < 0:
        return -1
    return int(timeout_sec * 1e9)


def setup_realtime(settings: ExecutorSettings, *, lock_memory: bool, log: bool = True) -> RealtimeResult:
    """Real-time setup of the calling thread from settings; one log line says what happened."""
    set_timer_slack(settings.timer_slack_ns)
    if settings.sched_priority <= 0 and not settings.cpu_affinity and not lock_memory:
        return RealtimeResult()
    result = apply_realtime(settings.sched_priority, settings.cpu_affinity, lock_memory)
    if log:
        logger = rclpy.logging.get_logger("krystal.sched")
        line = result.refusal_line()
        if line:
            logger.warning(line)
        elif result.applied:
            logger.info("real-time setup: " + ", ".join(result.applied))
    return result


def make_executor(kind: str = "edf", threads: int = 1, *, isolate_errors: bool = True) -> Executor:
    """The executor named by `executor.type`: ours (edf) or rclpy's single, multi, events."""
    if kind == "edf":
        return DeadlineExecutor(threads=threads, isolate_errors=isolate_errors)
    if kind == "multi":
        from rclpy.executors import MultiThreadedExecutor

        return MultiThreadedExecutor(num_threads=max(2, threads))
    if kind == "events":
        try:
            from rclpy.experimental.events_executor import EventsExecutor
        except ImportError:
            rclpy.logging.get_logger("krystal.sched").warning(
                "executor.type events: this rclpy has no EventsExecutor; using single"
            )
            return SingleThreadedExecutor()
        return EventsExecutor()
    if kind == "single":
        return SingleThreadedExecutor()
    raise ValueError(f"executor type {kind!r} is not one of edf, single, multi, events")
