"""Service errors and the handlers that turn every failure into one JSON error shape.

Native API errors are `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.
Each `ServiceError` subclass sets only its status and code. A 5xx never shows its real
message: it is logged with the request id, and the client gets a generic one.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)

__all__ = [
    "BadRequest",
    "ModelNotFound",
    "NotReady",
    "PayloadTooLarge",
    "ServiceError",
    "UnsupportedImage",
    "ValidationFailed",
    "error_body",
    "install_error_handlers",
]

STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "not_ready",
}


class ServiceError(Exception):
    """Base of the errors a request can end with; `status` is the HTTP status code."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    """The request is malformed (bad JSON, bad base64, bad tensor)."""

    status, code = 400, "bad_request"


class ModelNotFound(ServiceError):
    """No loaded model or version matches the request."""

    status, code = 404, "model_not_found"


class PayloadTooLarge(ServiceError):
    """The body exceeds MAX_UPLOAD_BYTES or the image exceeds MAX_IMAGE_PIXELS."""

    status, code = 413, "payload_too_large"


class UnsupportedImage(ServiceError):
    """The upload is not a decodable image of a supported format."""

    status, code = 415, "unsupported_media_type"


class ValidationFailed(ServiceError):
    """A parameter or field is missing or out of range."""

    status, code = 422, "validation_error"


class NotReady(ServiceError):
    """The models are not loaded yet."""

    status, code = 503, "not_ready"


def request_id_of(request: Request) -> str | None:
    """The id the request-id middleware gave this request."""
    return request.scope.get("request_id")


def error_body(code: str, message: str, request_id: str | None) -> dict[str, Any]:
    """The native error shape."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def _is_tf_serving(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def error_response(request: Request, status: int, code: str, message: str) -> JSONResponse:
    """An error response in the shape of the surface the request used.

    The TensorFlow Serving surface (`/v1/...`) answers `{"error": "<message>"}` as TF
    Serving does; everything else answers the native shape.
    """
    request_id = request_id_of(request)
    if status >= 500:
        message = f"internal error; quote request id {request_id} when reporting it"
    body = {"error": message} if _is_tf_serving(request) else error_body(code, message, request_id)
    headers = {"X-Request-ID": request_id} if request_id else None
    return JSONResponse(body, status_code=status, headers=headers)


def _describe_validation(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            return f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'parse error')})"
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{location}: {item.get('msg', 'invalid')}" if location else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status >= 500 and exc.status != 503:
        logger.error("request %s failed: %s", request_id_of(request), exc.message)
    return error_response(request, exc.status, exc.code, exc.message)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status = 400 if _is_tf_serving(request) else 422  # TF Serving answers 400 to malformed bodies
    return error_response(request, status, "validation_error", _describe_validation(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    code = STATUS_CODES.get(exc.status_code, "http_error")
    response = error_response(request, exc.status_code, code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    logger.info("request %s: client disconnected before its body was read", request_id_of(request))
    return error_response(request, 400, "bad_request", "client disconnected")


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("request %s failed with an unhandled error", request_id_of(request), exc_info=exc)
    return error_response(request, 500, "internal_error", "")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the JSON shape above."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unhandled_error)
