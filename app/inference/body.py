"""Reading request bodies under the same limits for every protocol.

The byte limit is checked against a declared `Content-Length` before anything is read,
and counted while a body streams in; a body that trickles slower than the read timeout
is cut off. JSON is parsed with bounded nesting and number sizes, large bodies off the
event loop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from app.errors import BadRequest, PayloadTooLarge, RequestTimeout

__all__ = ["BodyLimits", "parse_json", "read_body", "read_form", "read_json"]

JSON_OFF_LOOP_BYTES = 64 * 1024
"""JSON bodies larger than this are parsed in a worker thread."""


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Limits on reading one request body.

    Attributes:
        max_bytes: Body size, bytes (413 above).
        read_timeout: Seconds the whole body may take to arrive (408 after).
        max_json_depth: Nesting of JSON arrays and objects (400 deeper).
        max_number_digits: Digits of one JSON integer (400 longer).
        max_form_fields: Text fields of a multipart form.
        max_files: Files of a multipart form.
    """

    max_bytes: int = 10 * 1024 * 1024
    read_timeout: float = 30.0
    max_json_depth: int = 16
    max_number_digits: int = 40
    max_form_fields: int = 16
    max_files: int = 64


def _declared_length(request: Request, limits: BodyLimits) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise PayloadTooLarge(
            f"request body of {int(declared):,} bytes exceeds the limit of {limits.max_bytes:,} bytes"
            " (MAX_UPLOAD_BYTES)"
        )


async def _stream(request: Request, limits: BodyLimits) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limits.max_bytes:
            raise PayloadTooLarge(f"request body exceeds the limit of {limits.max_bytes:,} bytes (MAX_UPLOAD_BYTES)")
        yield chunk


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    """The whole body.

    Raises:
        PayloadTooLarge: Over `limits.max_bytes`, declared or counted (413).
        RequestTimeout: Not all there within `limits.read_timeout` seconds (408).
    """
    _declared_length(request, limits)
    chunks = []
    with anyio.move_on_after(limits.read_timeout) as scope:
        chunks = [chunk async for chunk in _stream(request, limits)]
    if scope.cancelled_caught:
        raise RequestTimeout(f"the request body did not arrive within {limits.read_timeout:g} s")
    return b"".join(chunks)


async def read_form(request: Request, limits: BodyLimits) -> FormData:
    """A multipart body's fields and files (files are spooled by Starlette); close it after use.

    Raises:
        PayloadTooLarge: Over `limits.max_bytes` (413).
        RequestTimeout: Not all there within `limits.read_timeout` seconds (408).
        BadRequest: Malformed multipart, or too many fields or files (400).
    """
    _declared_length(request, limits)
    parser = MultiPartParser(
        request.headers, _stream(request, limits), max_files=limits.max_files, max_fields=limits.max_form_fields
    )
    form = None
    with anyio.move_on_after(limits.read_timeout) as scope:
        try:
            form = await parser.parse()
        except MultiPartException as error:
            raise BadRequest(f"malformed multipart body: {error.message}") from None
    if form is None or scope.cancelled_caught:
        raise RequestTimeout(f"the request body did not arrive within {limits.read_timeout:g} s")
    return form


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, walking containers only as deep as `limit` + 1."""
    depth = 0
    level = [value]
    while level and depth <= limit:
        containers = [item for item in level if isinstance(item, list | dict)]
        if not containers:
            break
        depth += 1
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return depth


def parse_json(data: bytes, limits: BodyLimits) -> Any:
    """Parse JSON bytes; blocking (see `read_json`).

    Raises:
        BadRequest: Not UTF-8 JSON, nested deeper than `limits.max_json_depth`, or an
            integer longer than `limits.max_number_digits` digits (400).
    """

    def parse_int(text: str) -> int:
        if len(text.lstrip("-")) > limits.max_number_digits:
            raise BadRequest(f"a JSON number has more than {limits.max_number_digits} digits")
        return int(text)

    def parse_constant(name: str) -> float:
        raise BadRequest(f"{name} is not valid JSON")

    try:
        value = json.loads(data, parse_int=parse_int, parse_constant=parse_constant)
    except RecursionError:
        raise BadRequest(f"the JSON body is nested deeper than {limits.max_json_depth} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON ({error})") from None
    except ValueError as error:  # e.g. a float that does not fit
        raise BadRequest(f"the body is not valid JSON ({error})") from None
    if _depth(value, limits.max_json_depth) > limits.max_json_depth:
        raise BadRequest(f"the JSON body is nested deeper than {limits.max_json_depth} levels")
    return value


async def read_json(request: Request, limits: BodyLimits, *, body: bytes | None = None) -> Any:
    """The body (or `body`, already read) parsed as JSON, whatever its content type.

    Raises:
        As `read_body` and `parse_json`.
    """
    data = body if body is not None else await read_body(request, limits)
    if len(data) > JSON_OFF_LOOP_BYTES:
        return await anyio.to_thread.run_sync(parse_json, data, limits)
    return parse_json(data, limits)
