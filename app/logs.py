"""Logging: plain text or one JSON object per line (`LOG_FORMAT=json`), every line of a
request carrying its request id, and one access line per request.

The request id and what the pipeline learns about a request (model, version, images)
live in a context variable set by `RequestIdMiddleware`, so every log call made while the
request is served carries them without being passed around. The access line never holds
the upload's content.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "REQUEST",
    "JsonFormatter",
    "RequestContextFilter",
    "access",
    "configure_logging",
    "native_stderr_as_logs",
    "note",
]

REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("request", default=None)
"""The request being served: `request_id`, then `model`, `version`, `images` as the pipeline learns them."""

ACCESS_LOGGER = logging.getLogger("app.access")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

SERVER_LOGGERS = ("uvicorn", "uvicorn.error")

SERVER_ACCESS_LOGGER = "uvicorn.access"
"""uvicorn's access log, which `app.access` replaces: kept silent, or each request would
log twice and build a second line on the event loop."""


def note(**fields: Any) -> None:
    """Record facts about the request being served (for its access line); a no-op outside one."""
    context = REQUEST.get()
    if context is not None:
        context.update(fields)


class RequestContextFilter(logging.Filter):
    """Give every record the request id of the request being served (`-` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = REQUEST.get()
        record.request_id = context.get("request_id", "-") if context else "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request id,
    the fields of an access line, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update(getattr(record, "access", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler `configure_logging` installs (other handlers, e.g. a test's, are kept)."""


def configure_logging(level: str, log_format: str) -> None:
    """Send every log line (the app's and the server's) to stderr as text or JSON, with request ids."""
    handler = ServiceHandler()
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers = [*(old for old in root.handlers if not isinstance(old, ServiceHandler)), handler]
    root.setLevel(level)
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers = []
        server_logger.propagate = True
    # Without handlers anywhere up its chain, uvicorn skips the line (`hasHandlers()`).
    server_access = logging.getLogger(SERVER_ACCESS_LOGGER)
    server_access.handlers = []
    server_access.propagate = False


def access(method: str, route: str, status: int, seconds: float) -> None:
    """Write the request's access line: method, route template, model, version, status,
    latency (ms) and images; never the upload's content."""
    if not ACCESS_LOGGER.isEnabledFor(logging.INFO):
        return
    context = REQUEST.get() or {}
    fields = {
        "method": method,
        "route": route,
        "status": status,
        "latency_ms": round(seconds * 1000, 2),
        "model": context.get("model"),
        "version": context.get("version"),
        "images": context.get("images"),
    }
    ACCESS_LOGGER.info(
        "%s %s %d %.1f ms model=%s v%s images=%s",
        method,
        route,
        status,
        seconds * 1000,
        fields["model"],
        fields["version"],
        fields["images"],
        extra={"access": fields},
    )


@contextlib.contextmanager
def native_stderr_as_logs(logger_name: str) -> Iterator[None]:
    """Capture what native code (TensorFlow's C++ runtime) writes to the stderr file
    descriptor inside the block, and log it line by line, so it too comes out as JSON.

    Python's `logging` never sees those lines otherwise: they go straight to file
    descriptor 2 (e.g. "Could not find cuda drivers on your machine" at import).
    """
    handlers = [handler for handler in logging.getLogger().handlers if isinstance(handler, ServiceHandler)]
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        real_stderr = os.fdopen(saved, "w", closefd=False)
        streams = [handler.setStream(real_stderr) for handler in handlers]  # our own lines go on as before
        try:
            yield
        finally:
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)  # type: ignore[arg-type]
            real_stderr.close()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            logger = logging.getLogger(logger_name)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip():
                    logger.info("%s", line.strip())
