"""Service errors, the one mapping from failures to statuses, and each protocol's error body.

Each `ServiceError` subclass sets only its status and code. `describe` turns any failure
(ours, FastAPI's validation, Starlette's HTTP errors, a client that went away, a bug) into
a status, a code and a message, once for every protocol; the protocol then renders it:
the native API as `{"error": {"code", "message", "request_id"}}` (the app's exception
handlers), TF Serving and the Open Inference Protocol as `{"error": "<message>"}` (their
routers' `route_class`, see `protocol_route`). A 5xx never shows its real message: it is
logged with the request id, and the client gets a generic one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from app.responses import JSONResponse

logger = logging.getLogger(__name__)

__all__ = [
    "STATUS_DESCRIPTIONS",
    "BadRequest",
    "DeadlineExceeded",
    "ErrorRenderer",
    "Failure",
    "Forbidden",
    "ModelFailed",
    "ModelNotFound",
    "NotReady",
    "Overloaded",
    "PayloadTooLarge",
    "RequestTimeout",
    "ServiceError",
    "Unauthorized",
    "UnsupportedImage",
    "ValidationFailed",
    "describe",
    "error_body",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "protocol_fallback",
    "protocol_route",
    "render_message_error",
]

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "not_ready",
    504: "deadline_exceeded",
}

STATUS_DESCRIPTIONS = {
    400: "malformed request (bad JSON, base64, multipart or tensor), or a preprocessing the model cannot take",
    401: "no API key, or an unknown one",
    403: "not an admin key, or model management disabled",
    404: "unknown model or version",
    408: "the body did not arrive within BODY_READ_TIMEOUT_SECONDS",
    409: "the model store cannot be written (read-only)",
    413: "body over MAX_UPLOAD_BYTES, an image over MAX_IMAGE_PIXELS, tensors over MAX_TENSOR_ELEMENTS,"
    " or too many images",
    415: "not a decodable image, or an unsupported content type",
    422: "missing field, empty body or invalid parameter",
    503: "models not loaded yet, or overloaded (retry after `Retry-After` seconds)",
    504: "the deadline (REQUEST_TIMEOUT_SECONDS, or the client's: X-Request-Timeout, v2's `timeout`) passed"
    " before the model ran",
}
"""What each error status means, in every protocol: the one table the API's documentation uses."""


def error_responses(body: type, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route or router: each of `statuses` with its protocol's
    error `body` model and its `STATUS_DESCRIPTIONS` entry."""
    return {status: {"model": body, "description": STATUS_DESCRIPTIONS[status]} for status in statuses}


class ServiceError(Exception):
    """Base of the errors a request can end with; `status` is the HTTP status code."""

    status: int = 500
    code: str = "internal_error"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    """The request is malformed (bad JSON, bad base64, bad tensor)."""

    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    """No API key, or one that is not known (`Authorization: Bearer <key>` or `X-API-Key`)."""

    status, code = 401, "unauthorized"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    """A known key without the right to this route (a prediction key on a management route)."""

    status, code = 403, "forbidden"


class ModelNotFound(ServiceError):
    """No loaded model or version matches the request."""

    status, code = 404, "model_not_found"


class Conflict(ServiceError):
    """The request cannot be carried out in the server's present state (a read-only store)."""

    status, code = 409, "conflict"


class RequestTimeout(ServiceError):
    """The request body did not arrive within the read timeout."""

    status, code = 408, "request_timeout"


class PayloadTooLarge(ServiceError):
    """The body, an image or a tensor is over its limit, or there are too many images."""

    status, code = 413, "payload_too_large"


class UnsupportedImage(ServiceError):
    """The upload is not a decodable image of a supported format."""

    status, code = 415, "unsupported_media_type"


class ValidationFailed(ServiceError):
    """A parameter or field is missing or out of range."""

    status, code = 422, "validation_error"


class NotReady(ServiceError):
    """The models are not loaded yet, or the server is draining before it stops."""

    status, code = 503, "not_ready"


class Overloaded(ServiceError):
    """Too many requests in flight, or too many inputs queued for the model: retry shortly."""

    status, code = 503, "overloaded"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class DeadlineExceeded(ServiceError):
    """The request's deadline passed before its inputs reached the model."""

    status, code = 504, "deadline_exceeded"


class ModelFailed(ServiceError):
    """The model call itself failed (a server fault, logged with the request id)."""

    status, code = 500, "model_error"


class Failure:
    """A failure described for the client: HTTP status, error code, message, headers."""

    __slots__ = ("code", "headers", "message", "status")

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def request_id_of(request: Request) -> str | None:
    """The id the request-id middleware gave this request."""
    return request.scope.get("request_id")


def _describe_validation(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            return f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'parse error')})"
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{location}: {item.get('msg', 'invalid')}" if location else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


def describe(request: Request, exc: Exception) -> Failure:
    """The status, code and message a failure answers with, in every protocol.

    Unexpected exceptions are logged with the request id and answer 500 with a generic
    message that never shows a stack trace or a path.
    """
    request_id = request_id_of(request)
    if isinstance(exc, ServiceError):
        failure = Failure(exc.status, exc.code, exc.message, exc.headers)
    elif isinstance(exc, RequestValidationError):
        failure = Failure(422, "validation_error", _describe_validation(exc))
    elif isinstance(exc, StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        failure = Failure(
            exc.status_code, STATUS_CODES.get(exc.status_code, "http_error"), message, dict(exc.headers or {})
        )
    elif isinstance(exc, ClientDisconnect):
        logger.info("request %s: client disconnected before its body was read", request_id)
        failure = Failure(400, "bad_request", "client disconnected")
    else:
        logger.error("request %s failed with an unhandled error", request_id, exc_info=exc)
        failure = Failure(500, "internal_error", "")
    if failure.status >= 500 and failure.status not in (503, 504):
        if isinstance(exc, ServiceError):
            logger.error("request %s failed: %s", request_id, exc.message)
        failure.message = f"internal error; quote request id {request_id} when reporting it"
    return failure


def error_body(code: str, message: str, request_id: str | None) -> dict[str, Any]:
    """The native error shape."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def _headers(request: Request, failure: Failure) -> dict[str, str]:
    request_id = request_id_of(request)
    return {**failure.headers, **({"X-Request-ID": request_id} if request_id else {})}


def render_native(failure: Failure, request_id: str | None) -> tuple[int, dict[str, Any]]:
    """The native API's error format."""
    return failure.status, error_body(failure.code, failure.message, request_id)


def error_response(route: object, request: Request, exc: Exception) -> JSONResponse:
    """The response to `exc` in the format of `route`'s protocol (native when it has none)."""
    failure = describe(request, exc)
    render = getattr(route, "render_error", None)
    status, body = render(failure) if render else render_native(failure, request_id_of(request))
    return JSONResponse(body, status_code=status, headers=_headers(request, failure))


async def _native_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(None, request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure outside a protocol router in the native JSON error shape."""
    for kind in (ServiceError, RequestValidationError, StarletteHTTPException, ClientDisconnect, Exception):
        app.add_exception_handler(kind, _native_error)


ErrorRenderer = Callable[[Failure], tuple[int, dict[str, Any]]]
"""A protocol's error format: (status, JSON body) for a failure."""


def render_message_error(failure: Failure) -> tuple[int, dict[str, Any]]:
    """The error format of TF Serving and of the Open Inference Protocol: `{"error": "<message>"}`;
    a request that does not validate is their 400 (the native API's 422)."""
    return (400 if failure.status == 422 else failure.status), {"error": failure.message}


def protocol_route(render: ErrorRenderer) -> type[APIRoute]:
    """A route class whose routes answer failures in a protocol's own format.

    Use as `APIRouter(route_class=protocol_route(render))`: the router, not the URL,
    decides how its errors look.
    """

    class ProtocolRoute(APIRoute):
        render_error = staticmethod(render)

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:
                    failure = describe(request, exc)
                    status, body = render(failure)
                    return JSONResponse(body, status_code=status, headers=_headers(request, failure))

            return handle

    return ProtocolRoute


class AnyPathConvertor(PathConvertor):
    """Any rest of a path, newlines (`%0A`) included, which `{name:path}` does not match."""

    regex = "(?s:.*)"


register_url_convertor("any_path", AnyPathConvertor())


def protocol_fallback(router: APIRouter) -> None:
    """Add a last route to `router` that answers, in the protocol's format, any path under
    its prefix that no route of it matches: 405 if another method would match, else 404.

    Call after every other route is added.
    """
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes = list(router.routes)

    @router.api_route("/{path:any_path}", methods=methods, include_in_schema=False)
    async def unmatched(request: Request, path: str) -> Response:
        allowed = sorted(
            method
            for route in routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] == Match.PARTIAL
            for method in route.methods or ()
        )
        if allowed:
            raise StarletteHTTPException(405, headers={"Allow": ", ".join(allowed)})
        raise StarletteHTTPException(404)
