"""Pure ASGI middleware: request ids and arrival times; admission of prediction requests.

Plain ASGI (not `BaseHTTPMiddleware`) so the hot path pays one function call.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import Overloaded, error_response
from app.logs import REQUEST

__all__ = ["ADMITTED", "AdmissionMiddleware", "RequestIdMiddleware", "admitted", "api_routes"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

ADMITTED: set[Callable[..., Any]] = set()
"""The endpoints of the prediction routes, marked by `admitted`."""


def admitted(endpoint: Endpoint) -> Endpoint:
    """Mark a route's endpoint as a prediction: `AdmissionMiddleware` counts its requests in
    flight and refuses them past `MAX_REQUESTS_IN_FLIGHT`. Put it under the route decorator."""
    ADMITTED.add(endpoint)
    return endpoint


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
        # 128 random bits, written as uuid4().hex is; not uuid4(): it reads os.urandom, a
        # system call that releases the GIL, and the model's thread then keeps the event
        # loop waiting for it (docs/performance.md). `random` reseeds in a forked child.
        request_id = request_id or f"{random.getrandbits(128):032x}"
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


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route of an application, including those of included routers (which
    FastAPI keeps as router entries, not copies)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (inner := getattr(route, "original_router", None)) is not None:
            yield from api_routes(inner.routes)


class AdmissionMiddleware:
    """Count prediction requests in flight from their arrival to their answer, and those
    still receiving their body (`app.inference.model.Admission`); answer 503 `overloaded` at
    once, before routing, parsing or reading the body, while `MAX_REQUESTS_IN_FLIGHT` of
    them are past their body (prepared, queued or run).

    Under overload most requests are refused, so refusing must cost far less than serving:
    a refused request costs one route match and a small JSON answer in the matched route's
    protocol format. Prediction routes are those whose endpoint is marked `admitted`; the
    rest (health, metrics, models, admin) are never counted nor refused.

    Args:
        app: The wrapped ASGI app.
        routes: Returns the application's routes (read at the first request).
    """

    def __init__(self, app: ASGIApp, *, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.routes = routes
        self._prediction_routes: list[APIRoute] | None = None
        self._by_path: dict[str, APIRoute | None] = {}

    def _prediction_route(self, scope: Scope) -> APIRoute | None:
        path = scope["path"]
        if path in self._by_path:
            return self._by_path[path]
        if self._prediction_routes is None:
            self._prediction_routes = [route for route in api_routes(self.routes()) if route.endpoint in ADMITTED]
        found = next((route for route in self._prediction_routes if route.matches(scope)[0] == Match.FULL), None)
        if len(self._by_path) < 4096:  # paths name models, so there are few; a flood of odd ones is not cached
            self._by_path[path] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.get("state") or {}
        admission = getattr(state.get("registry"), "admission", None)
        route = self._prediction_route(scope) if admission is not None else None
        if route is None or admission is None:
            await self.app(scope, receive, send)
            return
        if admission.working >= admission.max_in_flight:
            error = Overloaded(f"{admission.working} requests in flight (MAX_REQUESTS_IN_FLIGHT); retry shortly")
            await error_response(route, Request(scope), error)(scope, receive, send)
            return
        reading = True

        async def receive_body() -> Message:
            nonlocal reading
            message = await receive()
            if reading and not (message["type"] == "http.request" and message.get("more_body", False)):
                reading = False  # the last of the body, or the client went away
                admission.reading -= 1
            return message

        admission.in_flight += 1
        admission.reading += 1
        try:
            await self.app(scope, receive_body, send)
        finally:
            admission.in_flight -= 1
            if reading:
                admission.reading -= 1
