"""The Foxglove WebSocket protocol (v1) served by the gateway itself, behind its tokens and checks.

The foxglove-sdk server has no hook for authentication or Origin checks, so the gateway speaks the
protocol's subset a viewer needs: serverInfo, advertise, subscribe/unsubscribe and binary
messageData (opcode 1, subscription id u32, log time u64 ns, the serialized CDR message).
Channels are added from ROS threads as topics appear; messages fan out through `Streams`.
"""

from __future__ import annotations

import json
import struct
import threading
from typing import Any

from krystal.gateway.streams import Streams, Subscriber, dumps, run_stream

SUBPROTOCOLS = ("foxglove.sdk.v1", "foxglove.websocket.v1")
KIND = "foxglove"


class Channels:
    """Bridged topics: id -> advertisement; `log` hands a serialized message to subscribed clients."""

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self._channels: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, topic: str, schema_name: str, schema: str) -> int:
        with self._lock:
            cid = len(self._channels) + 1
            self._channels[cid] = {
                "id": cid,
                "topic": topic,
                "encoding": "cdr",
                "schemaName": schema_name,
                "schema": schema,
                "schemaEncoding": "ros2msg",
            }
            advert = dumps({"op": "advertise", "channels": [self._channels[cid]]})
        self.streams.publish(KIND, advert)
        return cid

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._channels.values())

    def topics(self) -> list[str]:
        return sorted(c["topic"] for c in self.all())

    def log(self, cid: int, data: bytes, log_time_ns: int) -> None:
        def frame(sub: Subscriber, payload: bytes) -> bytes | None:
            sid = sub.state.get("subscriptions", {}).get(cid)
            return None if sid is None else struct.pack("<BIQ", 1, sid, log_time_ns) + payload

        self.streams.publish(KIND, bytes(data), frame)


async def serve(ws: Any, sub: Subscriber, channels: Channels, send_timeout_s: float) -> None:
    """One client: announce, then follow its subscribe/unsubscribe while its stream sends."""
    subs: dict[int, int] = {}  # channel id -> subscription id
    sub.state["subscriptions"] = subs
    hello = {
        "op": "serverInfo",
        "name": "krystal",
        "capabilities": [],
        "supportedEncodings": [],
        "metadata": {},
        "sessionId": str(id(sub)),
    }
    await ws.send_text(dumps(hello))
    await ws.send_text(dumps({"op": "advertise", "channels": channels.all()}))
    await run_stream(ws, sub, _follow(ws, subs), send_timeout_s)


async def _follow(ws: Any, subs: dict[int, int]) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            msg = json.loads(message.get("text") or "")
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("op") == "subscribe":
            for s in msg.get("subscriptions") or []:
                if (
                    isinstance(s, dict)
                    and isinstance(s.get("id"), int)
                    and isinstance(s.get("channelId"), int)
                ):
                    subs[s["channelId"]] = s["id"] & 0xFFFFFFFF
        elif msg.get("op") == "unsubscribe":
            gone = {i for i in msg.get("subscriptionIds") or [] if isinstance(i, int)}
            for cid in [c for c, i in subs.items() if i in gone]:
                del subs[cid]
