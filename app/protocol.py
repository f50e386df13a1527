"""uvicorn's HTTP protocol with a deadline on every request head (slow-header clients).

uvicorn 0.54 arms no timer on a connection until it has answered a first request, and
counts every open connection toward `--limit-concurrency`, past which it answers 503 to
every new request. A single client that opens connections and sends each request head a
byte at a time (a "slowloris") held them for as long as it liked: 2,100 such connections
against the two workers of `scripts/serve.sh` had every prediction of every other client
answered 503 for as long as they stayed open (docs/operations.md). `HeadTimeoutProtocol`,
the protocol of `scripts/serve.sh` and of the container image:

- answers 408 and closes a connection whose request head (request line and headers) is
  not complete `HEADER_TIMEOUT_SECONDS` after the connection opened, or after the first
  byte of a later request on a kept-alive connection, as nginx's `client_header_timeout`
  and Apache's `mod_reqtimeout` do; a body's own pace is `BODY_READ_TIMEOUT_SECONDS`'s;
- counts a connection toward `limit_concurrency` from its first complete head on, so
  connections still sending theirs never turn other clients away (uvicorn's keep-alive
  timeout still closes idle ones after a request).

Use it as uvicorn's protocol class: `uvicorn --http app.protocol:HeadTimeoutProtocol`, or
`uvicorn.Config(http=HeadTimeoutProtocol)`.
"""

from __future__ import annotations

import asyncio

from pydantic_core import to_json
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import error_body
from app.metrics import HEAD_TIMEOUTS

__all__ = ["DEFAULT_HEADER_TIMEOUT_SECONDS", "HeadTimeoutProtocol"]

DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
"""The deadline before the app's settings are known (they are, once it has started)."""


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline on each request head and connections
    counted toward `limit_concurrency` only once they have sent a whole head.

    The deadline is the app's `header_timeout_seconds` setting (`HEADER_TIMEOUT_SECONDS`),
    read from the state its lifespan yields.
    """

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.connections.discard(self)  # counted from its first complete head on
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self.connections.add(self)
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        settings = self.app_state.get("settings")
        seconds = getattr(settings, "header_timeout_seconds", DEFAULT_HEADER_TIMEOUT_SECONDS)
        self._head_timer = self.loop.call_later(seconds, self._head_timed_out, seconds)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self, seconds: float) -> None:
        """Answer 408 and close, unless an answer to an earlier request is still being sent
        (a pipelined head may wait for it)."""
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()
            return
        HEAD_TIMEOUTS.inc()
        message = f"the request head did not arrive within {seconds:g} s (HEADER_TIMEOUT_SECONDS)"
        body = to_json(error_body("request_timeout", message, None))
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()
