"""uvicorn configured for a gateway that faces strangers: bounded headers, idle and slow clients.

uvicorn's h11 protocol has no timeout for a request's headers (a client that sends one byte every
few seconds keeps its connection forever, and data cancels the keep-alive timer). The protocol
below closes a connection whose next request's headers are not complete within
`header_timeout_s` of the connection or of the previous response.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class _HeaderTimeoutH11(H11Protocol):
    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived: its body has its own timeout
            self._disarm()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def make_server(
    app: Any,
    *,
    header_timeout_s: float = 10.0,
    max_connections: int = 256,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> uvicorn.Server:
    """A uvicorn server for `app`: header timeout, 16 KiB of headers, 64 KiB WebSocket messages,
    at most `max_connections` connections (503 beyond), 5 s keep-alive."""
    protocol = type("GatewayH11", (_HeaderTimeoutH11,), {"header_timeout_s": header_timeout_s})
    config = uvicorn.Config(
        app,
        http=protocol,
        ws_max_size=64 * 1024,
        limit_concurrency=max_connections,
        timeout_keep_alive=5,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    return uvicorn.Server(config)
