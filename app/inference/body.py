"""Reading request bodies under the same limits for every protocol.

The byte limit is checked against a declared `Content-Length` before anything is read,
and counted while a body streams in; a body that trickles slower than the read timeout
is cut off. JSON is parsed with bounded nesting and number sizes, large bodies off the
event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.errors import BadRequest, PayloadTooLarge, RequestTimeout
from app.inference.deadlines import LazyDeadline

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks  # a TypedDict defined for type checkers only

__all__ = ["BodyLimits", "FormPart", "parse_json", "read_body", "read_json", "read_multipart"]

JSON_STRUCTURE_VALUES = 4096
"""Values a JSON body may hold besides its tensors' numbers: names, shapes, parameters,
one object per TF Serving instance (`BodyLimits.max_json_values`)."""

JSON_OFF_LOOP_BYTES = 64 * 1024
"""JSON bodies larger than this are parsed in a worker thread."""


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Limits on reading one request body, built from `Settings` (`Settings.body_limits`),
    which holds their defaults.

    Attributes:
        max_bytes: Body size, bytes (413 above).
        read_timeout: Seconds the whole body may take to arrive (408 after).
        max_json_depth: Nesting of JSON arrays and objects (400 deeper).
        max_number_digits: Digits of one JSON integer (400 longer).
        max_form_fields: Text fields of a multipart form.
        max_files: Files of a multipart form.
        max_json_values: Values of a JSON body, counted by its commas before it is parsed
            (413 above): the tensor limit (`MAX_TENSOR_ELEMENTS`) plus
            `JSON_STRUCTURE_VALUES`.
    """

    max_bytes: int
    read_timeout: float
    max_json_depth: int
    max_form_fields: int
    max_files: int
    max_json_values: int
    max_number_digits: int = 40


def _declared_length(request: Request, limits: BodyLimits) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise PayloadTooLarge(
            f"request body of {int(declared):,} bytes exceeds the limit of {limits.max_bytes:,} bytes"
            " (MAX_UPLOAD_BYTES)"
        )


def _read_deadline(limits: BodyLimits) -> LazyDeadline:
    """The read timeout, counted from now; armed only if the body is not read at once."""
    return LazyDeadline(asyncio.get_running_loop().time() + limits.read_timeout)


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
    try:
        async with _read_deadline(limits):
            chunks = [chunk async for chunk in _stream(request, limits)]
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {limits.read_timeout:g} s") from None
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class FormPart:
    """One part of a multipart form.

    Attributes:
        name: The part's field name.
        filename: The file name it was sent with; None for a text field.
        data: Its content, bytes.
    """

    name: str
    filename: str | None
    data: bytes


class _FormCollector:
    """python-multipart callbacks that keep every part in memory.

    Starlette's form parser spools each file to a temporary file; an upload is read whole
    into memory right after (and bounded by `BodyLimits.max_bytes`), and creating the
    spooled file costs more than parsing a small upload, so this keeps the bytes.
    """

    def __init__(self, limits: BodyLimits) -> None:
        self.limits = limits
        self.parts: list[FormPart] = []
        self.files = self.fields = 0
        self._header_name = self._header_value = self._disposition = b""
        self._data = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def on_part_end(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise BadRequest('malformed multipart body: a part has no Content-Disposition "name"')
        filename = options.get(b"filename")
        if filename is None:
            self.fields += 1
            if self.fields > self.limits.max_form_fields:
                raise BadRequest(f"too many form fields; the limit is {self.limits.max_form_fields}")
        else:
            self.files += 1
            if self.files > self.limits.max_files:
                raise BadRequest(f"too many files; the limit is {self.limits.max_files}")
        self.parts.append(
            FormPart(
                name=options[b"name"].decode("utf-8", errors="replace"),
                filename=None if filename is None else filename.decode("utf-8", errors="replace"),
                data=bytes(self._data),
            )
        )


async def read_multipart(request: Request, limits: BodyLimits) -> list[FormPart]:
    """The parts of a multipart/form-data body, in order, each held in memory.

    Raises:
        PayloadTooLarge: Over `limits.max_bytes`, declared or counted (413).
        RequestTimeout: Not all there within `limits.read_timeout` seconds (408).
        BadRequest: No boundary or one over 256 bytes, malformed multipart, a part without
            a name, or more text fields or files than the limits (400).
    """
    _declared_length(request, limits)
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("malformed multipart body: the Content-Type has no boundary")
    collector = _FormCollector(limits)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # refuses a boundary over 256 bytes
        async with _read_deadline(limits):
            async for chunk in _stream(request, limits):
                parser.write(chunk)
            parser.finalize()
    except FormParserError as error:
        raise BadRequest(f"malformed multipart body: {error}") from None
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {limits.read_timeout:g} s") from None
    return collector.parts


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
        PayloadTooLarge: More commas than `limits.max_json_values` (413), before parsing.
        As `read_body` and `parse_json`.
    """
    data = body if body is not None else await read_body(request, limits)
    # json.loads holds the GIL for the whole parse, in a worker thread too: 7 MB of numbers
    # held every other request about 0.3 s. Counting commas (a C loop, about a millisecond
    # for 10 MB) refuses a body with more values than any accepted tensor before it is parsed.
    if len(data) > JSON_OFF_LOOP_BYTES and (values := data.count(b",") + 1) > limits.max_json_values:
        raise PayloadTooLarge(
            f"the JSON body holds about {values:,} values; tensors are limited to "
            f"{limits.max_json_values - JSON_STRUCTURE_VALUES:,} numbers (MAX_TENSOR_ELEMENTS)"
        )
    if len(data) > JSON_OFF_LOOP_BYTES:
        return await anyio.to_thread.run_sync(parse_json, data, limits)
    return parse_json(data, limits)
