"""Pure ASGI middleware: request ids and arrival times.

Plain ASGI (not `BaseHTTPMiddleware`) so the hot path pays one function call.
"""

from __future__ import annotations

import asyncio
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import REQUEST

__all__ = ["RequestIdMiddleware"]

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class RequestIdMiddleware:
    """Give every request an id (the client's `X-Request-ID` if well-formed, else a new
    one), store it in `scope["request_id"]` and return it in the `X-Request-ID` header;
    store the event-loop time it arrived in `scope["arrived_at"]` (deadlines count from it),
    and open the request's logging context (`app.logs.REQUEST`)."""

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
        scope["arrived_at"] = asyncio.get_running_loop().time()
        REQUEST.set({"request_id": request_id})
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [item for item in message.get("headers", []) if item[0].lower() != b"x-request-id"]
                message["headers"] = [*headers, header]
            await send(message)

        await self.app(scope, receive, send_with_id)
