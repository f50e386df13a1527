"""Pure ASGI middleware: request ids and the request body size limit.

Plain ASGI (not `BaseHTTPMiddleware`) so the hot path pays one function call each.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body

__all__ = ["BodySizeLimitMiddleware", "RequestIdMiddleware"]

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class RequestIdMiddleware:
    """Give every request an id (the client's `X-Request-ID` if well-formed, else a new
    one), store it in `scope["request_id"]` and return it in the `X-Request-ID` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _CLIENT_ID.match(candidate) else None
                break
        request_id = request_id or uuid.uuid4().hex
        scope["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [item for item in message.get("headers", []) if item[0].lower() != b"x-request-id"]
                message["headers"] = [*headers, header]
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit (FastAPI re-raises
    HTTPExceptions from body parsing, so it reaches the 413 handler intact)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds the upload limit of {max_bytes:,} bytes (MAX_UPLOAD_BYTES)")


class BodySizeLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413 while streaming.

    A declared `Content-Length` over the limit is refused before any body is read; a
    chunked body is counted as it arrives and refused as soon as it passes the limit.

    Args:
        app: The wrapped ASGI app.
        max_bytes: Returns the limit in bytes (read per request, so tests can override it).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.limit = max_bytes

    async def _refuse(self, scope: Scope, send: Send, max_bytes: int) -> None:
        request_id = scope.get("request_id")
        limit = f"{max_bytes:,} bytes"
        path = scope.get("path", "")
        message = f"request body exceeds the upload limit of {limit} (MAX_UPLOAD_BYTES)"
        body = {"error": message} if path.startswith("/v1/") else error_body("payload_too_large", message, request_id)
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit()
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > max_bytes:
                    await self._refuse(scope, send, max_bytes)
                    return
                break

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send, max_bytes)
