"""Publishers and subscriptions of the graph's rated streams (`krystal.graph.STREAMS`).

Both sides take the stream's QoS deadline from its one declaration, so they always match (a
subscription that requests a deadline matches only publishers offering one at least as short; a
plain subscriber such as rqt matches any). Each entity counts its deadline-missed and
incompatible-QoS events; the node reports them on /diagnostics as `<node>: streams`.
"""

from __future__ import annotations

import weakref
from typing import Any, TypeVar

from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSPolicyKind, QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.subscription import Subscription

from krystal.graph import Stream, stream
from krystal.ros.compat import PublisherEventCallbacks, SubscriptionEventCallbacks
from krystal.ros.diagnostics import OK, WARN, Health, add_task
from krystal.ros.qos import with_deadline
from krystal.ros.shedding import rate_factor
from krystal.sched.executor import set_stream_period

MsgT = TypeVar("MsgT")


def stream_qos(topic: str, profile: QoSProfile) -> QoSProfile:
    """`profile` with the declared deadline of `topic` (a relative name in graph.STREAMS)."""
    s = stream(topic)
    return with_deadline(profile, s.rate_hz, tolerance=s.deadline_periods)


def declared_qos(full_name: str, profile: QoSProfile) -> QoSProfile:
    """`profile` with the deadline of the stream a resolved name ends in, else `profile` as it is:
    for generic publishers (`krystal play`) whose subscribers may be the graph's."""
    parts = full_name.strip("/").split("/")
    for first in range(len(parts)):  # longest tail first: camera/image_raw/compressed before ...
        try:
            return stream_qos("/".join(parts[first:]), profile)
        except KeyError:
            continue
    return profile


class StreamCounter:
    """Deadline-missed and incompatible-QoS events of one publisher or subscription."""

    def __init__(self, node: Node, side: str, s: Stream) -> None:
        self.side = side  # "publisher" or "subscription"
        self.stream = s
        self.topic = s.topic  # the resolved name once the entity exists
        self.deadline_ms = 0.0
        self.missed = 0
        self.incompatible = 0
        self.incompatible_policy = ""
        self._node = weakref.ref(node)
        self._logged_policy = ""

    def _on_missed(self, status: Any) -> None:
        self.missed += max(1, int(getattr(status, "total_count_change", 1)))

    def _on_incompatible(self, status: Any) -> None:
        self.incompatible += max(1, int(getattr(status, "total_count_change", 1)))
        kind = int(getattr(status, "last_policy_kind", 0))
        try:
            policy = QoSPolicyKind(kind).name
        except ValueError:
            policy = str(kind)
        self.incompatible_policy = policy
        node = self._node()
        if node is None or policy == self._logged_policy:
            return
        self._logged_policy = policy
        peer = "publisher" if self.side == "subscription" else "subscription"
        hint = ""
        if policy == "DEADLINE":
            hint = (
                f" This {self.side} {'requests' if self.side == 'subscription' else 'offers'} a "
                f"{self.deadline_ms:g} ms deadline (graph.STREAMS); a publisher must offer one at most "
                f"that long. To take a plain publisher's messages: "
                f"-p qos_overrides.{self.topic}.subscription.deadline:=0"
            )
        node.get_logger().warning(
            f"{self.topic}: a {peer} with incompatible QoS ({policy}): nothing passes between them.{hint}"
        )

    def attach(self, entity: Publisher[Any] | Subscription[Any]) -> None:
        self.topic = entity.topic_name
        deadline = getattr(entity.qos_profile, "deadline", None)
        self.deadline_ms = int(getattr(deadline, "nanoseconds", 0) or 0) / 1e6

    def set_slower(self) -> bool:
        """Whether the node's rate parameter (graph.Stream.rate_param), slowed by shedding while it
        sheds (krystal.ros.shedding), has it publish no more often than the deadline: its offered
        deadline is then missed by design, not by a stall."""
        node = self._node()
        name = self.stream.rate_param
        if node is None or not node.has_parameter(name):
            return False
        value = node.get_parameter(name).value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            return False
        period_s = value if name.endswith("_s") else 1.0 / value
        return period_s / rate_factor(node) >= self.stream.deadline_s

    def line(self) -> str:
        text = f"deadline_ms={self.deadline_ms:g} missed={self.missed}"
        if self.incompatible:
            text += f" incompatible={self.incompatible} ({self.incompatible_policy})"
        return text


class StreamWatch:
    """A node's stream counters and its `streams` diagnostics task."""

    def __init__(self, node: Node) -> None:
        self.counters: list[StreamCounter] = []
        self._missed_seen = 0
        self._offered_seen = 0
        add_task(node, "streams", self.health)

    def health(self) -> Health:
        values = {f"{c.side} {c.topic}": c.line() for c in self.counters}
        missed = sum(c.missed for c in self.counters if c.side == "subscription")
        new, self._missed_seen = missed - self._missed_seen, missed
        values["deadline_misses"] = str(missed)
        # a publisher's offered deadline missed: this node has stopped sending what it declared
        # (not when the node was set to publish slower than the deadline: misses are its rate then)
        offered = sum(c.missed for c in self.counters if c.side == "publisher" and not c.set_slower())
        stopped, self._offered_seen = max(0, offered - self._offered_seen), offered
        bad = [c for c in self.counters if c.incompatible]
        if bad:
            names = ", ".join(f"{c.topic} ({c.incompatible_policy})" for c in bad)
            return Health(WARN, f"peers with incompatible QoS, no messages from them: {names}", values)
        if new:
            late = ", ".join(
                sorted({c.topic for c in self.counters if c.missed and c.side == "subscription"})
            )
            return Health(WARN, f"{new} deadline misses since the last report ({late})", values)
        if stopped:
            idle = ", ".join(sorted({c.topic for c in self.counters if c.missed and c.side == "publisher"}))
            return Health(
                WARN,
                f"nothing published within the deadline, {stopped} times since the last report ({idle})",
                values,
            )
        return Health(OK, f"{len(self.counters)} streams on time", values)


_WATCHES: weakref.WeakKeyDictionary[Node, StreamWatch] = weakref.WeakKeyDictionary()


def watch_of(node: Node) -> StreamWatch:
    w = _WATCHES.get(node)
    if w is None:
        w = _WATCHES[node] = StreamWatch(node)
    return w


def _overrides(options: QoSOverridingOptions | None) -> QoSOverridingOptions:
    """The caller's overridable policies plus the deadline: a user can lift it without a rebuild."""
    if options is None:
        return QoSOverridingOptions([QoSPolicyKind.DEADLINE])
    kinds = list(options.policy_kinds)
    if QoSPolicyKind.DEADLINE not in kinds:
        kinds.append(QoSPolicyKind.DEADLINE)
    return QoSOverridingOptions(kinds, callback=options.callback, entity_id=options.entity_id)


def publish_stream(
    node: Node,
    msg_type: type[MsgT],
    topic: str,
    profile: QoSProfile,
    *,
    qos_overriding_options: QoSOverridingOptions | None = None,
    **kwargs: Any,
) -> Publisher[MsgT]:
    """A publisher of a declared stream that offers its deadline and counts what it missed."""
    counter = StreamCounter(node, "publisher", stream(topic))
    pub = node.create_publisher(
        msg_type,
        topic,
        stream_qos(topic, profile),
        event_callbacks=PublisherEventCallbacks(
            deadline=counter._on_missed, incompatible_qos=counter._on_incompatible
        ),
        qos_overriding_options=_overrides(qos_overriding_options),
        **kwargs,
    )
    counter.attach(pub)
    watch_of(node).counters.append(counter)
    return pub


def subscribe_stream(
    node: Node,
    msg_type: type[MsgT],
    topic: str,
    callback: Any,
    profile: QoSProfile,
    *,
    qos_overriding_options: QoSOverridingOptions | None = None,
    **kwargs: Any,
) -> Subscription[MsgT]:
    """A subscription to a declared stream that requests its deadline and counts the misses.

    Its executor budget (krystal.sched) is the stream's period, not the deadline's margin.
    """
    s = stream(topic)
    counter = StreamCounter(node, "subscription", s)
    sub = node.create_subscription(
        msg_type,
        topic,
        callback,
        stream_qos(topic, profile),
        event_callbacks=SubscriptionEventCallbacks(
            deadline=counter._on_missed, incompatible_qos=counter._on_incompatible
        ),
        qos_overriding_options=_overrides(qos_overriding_options),
        **kwargs,
    )
    counter.attach(sub)
    set_stream_period(sub, s.period_s)
    watch_of(node).counters.append(counter)
    return sub
