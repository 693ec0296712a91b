"""Streams to WebSocket clients: strict JSON, per-principal and global caps, no thread per client.

ROS callbacks publish from their threads; each open stream owns a small queue on the server's
event loop, filled through `call_soon_threadsafe`. A client that reads slowly loses its oldest
items, never anyone else's, and an idle client costs a coroutine waiting on its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from krystal.gateway.access import AccessError


def strict(value: Any) -> Any:
    """`value` with every NaN and infinity replaced by None: what JSON can carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Strict JSON (RFC 8259): a browser's JSON.parse reads every message."""
    return json.dumps(strict(value), allow_nan=False, separators=(",", ":"), ensure_ascii=False)


@dataclass(eq=False)
class Subscriber:
    kind: str
    who: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]
    dropped: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # what the protocol needs (subscriptions)

    def offer(self, item: Any) -> None:
        """On the loop: queue `item`, dropping the oldest when the client is behind."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


class Streams:
    """Open streams with their caps; `publish` may be called from any thread."""

    def __init__(self, max_total: int = 32, max_per_principal: int = 8) -> None:
        self.max_total = max_total
        self.max_per_principal = max_per_principal
        self._subs: list[Subscriber] = []
        self._lock = threading.Lock()

    def open(self, kind: str, who: str, queue_size: int = 4) -> Subscriber:
        """A new stream for `who`, or AccessError(429) over a cap."""
        with self._lock:
            if len(self._subs) >= self.max_total:
                raise AccessError(429, f"the gateway serves at most {self.max_total} streams")
            mine = sum(1 for s in self._subs if s.who == who)
            if mine >= self.max_per_principal:
                raise AccessError(429, f"{who} has {mine} streams open, the most one caller may have")
            sub = Subscriber(kind, who, asyncio.get_running_loop(), asyncio.Queue(queue_size))
            self._subs.append(sub)
            return sub

    def close(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def count(self, kind: str = "") -> int:
        with self._lock:
            return sum(1 for s in self._subs if not kind or s.kind == kind)

    def publish(self, kind: str, item: Any, adapt: Callable[[Subscriber, Any], Any] | None = None) -> None:
        """Offer `item` (or `adapt(subscriber, item)` when not None) to every stream of `kind`."""
        with self._lock:
            subs = [s for s in self._subs if s.kind == kind]
        for sub in subs:
            out = adapt(sub, item) if adapt is not None else item
            if out is None:
                continue
            try:
                sub.loop.call_soon_threadsafe(sub.offer, out)
            except RuntimeError:  # its loop has closed: the server is stopping
                self.close(sub)


async def _pump(ws: Any, sub: Subscriber, send_timeout_s: float) -> None:
    while True:
        item = await sub.queue.get()
        sending = ws.send_bytes(item) if isinstance(item, bytes) else ws.send_text(item)
        await asyncio.wait_for(sending, send_timeout_s)


async def discard(ws: Any) -> None:
    """Read (and ignore) what a client sends until it leaves."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


async def run_stream(ws: Any, sub: Subscriber, reader: Awaitable[None], send_timeout_s: float) -> None:
    """Send `sub`'s items while `reader` follows the client; whichever ends first ends both. A
    client that does not take a message within `send_timeout_s` is closed (4408)."""
    sender = asyncio.ensure_future(_pump(ws, sub, send_timeout_s))
    reading = asyncio.ensure_future(reader)
    done, pending = await asyncio.wait({sender, reading}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if sender in done and isinstance(sender.exception(), asyncio.TimeoutError):
        with contextlib.suppress(Exception):  # the connection is going anyway
            await asyncio.wait_for(ws.close(4408, f"client took over {send_timeout_s:g} s to read"), 1.0)
    for task in done:
        if not task.cancelled():
            task.exception()  # consumed: a closed connection is how streams end
