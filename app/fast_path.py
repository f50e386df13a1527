"""The fast path of `POST /predict`: the route's own code, without FastAPI's routing.

`POST /predict` is the request a client of this service makes hundreds of times a second.
Under FastAPI it passes Starlette's exception middleware, the router (a match against every
route), FastAPI's request handler (the route's dependencies solved anew, an exit stack, the
exception wrappers) before the endpoint runs: about a fifth of the event loop's CPU time
per request on a 28x28 upload (docs/performance.md). This middleware, the
innermost of the app's own (inside the request id, metrics and admission middlewares, so
those still see every request), calls the same endpoint and the same API key check
directly and answers failures with the same error handler, so the answers, headers,
metrics and access lines are those of the routed request. It does so only while the route
needs nothing else: a dependency or a declared parameter added to `/predict` sends it back
to the router.

Only `POST /predict` with no `root_path` takes it; every other request, and `/predict`
when the models are not loaded yet, goes through FastAPI as before. With `OPENTELEMETRY`
on, the app does not install it: FastAPI's own instrumentation records a span per routed
request, which the fast path would skip. The `/v1` and `/v2` prediction routes stay
routed: their path parameters (model name, version) are declared FastAPI parameters whose
validation errors are part of their protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_response
from app.middleware import api_routes
from app.routers import predict
from app.security import require_api_key

__all__ = ["PredictFastPath"]


def _direct(route: APIRoute) -> bool:
    """Whether calling `route`'s endpoint with the `Request` after `require_api_key` is all
    FastAPI would do: no other dependency and no declared parameter. A route changed to
    need more is left to the router rather than served without it."""
    dependant = route.dependant
    declared = (
        dependant.path_params,
        dependant.query_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.body_params,
    )
    return [dependency.call for dependency in dependant.dependencies] == [require_api_key] and not any(declared)


class PredictFastPath:
    """Answer `POST /predict` by calling its endpoint directly (pure ASGI).

    Args:
        app: The wrapped ASGI app, which answers every other request.
        routes: Returns the application's routes; the `/predict` route is looked up once,
            at the first request (its template labels the metrics, its endpoint is called).
    """

    def __init__(self, app: ASGIApp, *, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.routes = routes
        self._route: APIRoute | None = None
        self._looked_up = False

    def _predict_route(self) -> APIRoute | None:
        if not self._looked_up:  # once: not found stays not found, without a walk per request
            self._route = next(
                (route for route in api_routes(self.routes()) if route.endpoint is predict.predict and _direct(route)),
                None,
            )
            self._looked_up = True
        return self._route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != "/predict"
            or scope.get("root_path")
            or "registry" not in (scope.get("state") or {})
            or (route := self._predict_route()) is None
        ):
            await self.app(scope, receive, send)
            return
        # What the router would have added to the scope for this route.
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        request = Request(scope, receive)
        try:
            await require_api_key(request)
            response = await predict.predict(request)
        except Exception as error:  # every failure is answered as the app's handlers answer it
            response = error_response(route, request, error)
        await response(scope, receive, send)
