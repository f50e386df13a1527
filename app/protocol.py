"""uvicorn's HTTP protocol with limits on every request head: its time and its size.

uvicorn's httptools protocol bounds neither. It arms no timer on a connection until it has
answered a first request, and counts every open connection toward `--limit-concurrency`,
past which it answers 503 to every new request: 2,100 connections that sent their heads a
byte at a time (a "slowloris"), from one client, had every prediction of every other
client answered 503 against the two workers of `scripts/serve.sh` for as long as they
stayed open. And it keeps whatever a head grows to: four connections streaming one endless
header held the event loop parsing it, and `/healthz` waited 3-6 s (docs/operations.md).
`HeadLimitsProtocol`, the protocol of `scripts/serve.sh` and of the image:

- answers 408 and closes a connection whose request head (request line and headers) is
  not complete `HEADER_TIMEOUT_SECONDS` after the connection opened, or after the first
  byte of a later request on a kept-alive connection, as nginx's `client_header_timeout`
  and Apache's `mod_reqtimeout` do (a body's own pace is `BODY_READ_TIMEOUT_SECONDS`'s);
- answers 431 and closes one whose head grows past `MAX_HEADER_BYTES`, as nginx's
  `large_client_header_buffers` does (with 400);
- counts a connection toward `limit_concurrency` from its first complete head on, so
  connections still sending theirs never turn other clients away (uvicorn's keep-alive
  timeout still closes idle ones after a request).

Use it as uvicorn's protocol class: `uvicorn --http app.protocol:HeadLimitsProtocol`, or
`uvicorn.Config(http=HeadLimitsProtocol)`.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from pydantic_core import to_json
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings
from app.errors import error_body
from app.metrics import HEADS_REFUSED

__all__ = ["HeadLimitsProtocol"]

# The limits where the app's settings are not in its state (uvicorn's `--lifespan off`).
DEFAULT_HEADER_TIMEOUT_SECONDS: float = Settings.model_fields["header_timeout_seconds"].default
DEFAULT_MAX_HEADER_BYTES: int = Settings.model_fields["max_header_bytes"].default


class HeadLimitsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size bound on each request head,
    and connections counted toward `limit_concurrency` only once they have sent one.

    The limits are the app's settings `header_timeout_seconds` (`HEADER_TIMEOUT_SECONDS`)
    and `max_header_bytes` (`MAX_HEADER_BYTES`), read from the state its lifespan yields.
    """

    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.connections.discard(self)  # counted from its first complete head on
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is None or self.transport.is_closing():
            return  # no head on its way: the bytes were a whole head, a body, or nothing
        # The head is still incomplete after these bytes, so they were all head (if it
        # began in them, at most one read's worth of an earlier request's body is counted).
        self._head_bytes += len(data)
        limit = getattr(self.app_state.get("settings"), "max_header_bytes", DEFAULT_MAX_HEADER_BYTES)
        if self._head_bytes > limit:
            self._cancel_head_timer()
            message = f"the request head (request line and headers) is over {limit:,} bytes (MAX_HEADER_BYTES)"
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header_too_large", "too_large", message)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self.connections.add(self)
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        seconds = getattr(self.app_state.get("settings"), "header_timeout_seconds", DEFAULT_HEADER_TIMEOUT_SECONDS)
        self._head_bytes = 0
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
        message = f"the request head did not arrive within {seconds:g} s (HEADER_TIMEOUT_SECONDS)"
        self._refuse(HTTPStatus.REQUEST_TIMEOUT, "request_timeout", "timeout", message)

    def _refuse(self, status: HTTPStatus, code: str, reason: str, message: str) -> None:
        """Answer `status` with the native error body of `code` and `message` (no request id:
        there is no request yet), close the connection, and count it by `reason`."""
        HEADS_REFUSED.labels(reason).inc()
        body = to_json(error_body(code, message, None))
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()
