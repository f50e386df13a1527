"""`app.protocol.HeadLimitsProtocol`: a client that sends request heads slowly gets 408, one
whose head is too large 431, and neither turns other clients away (real server processes on
127.0.0.1)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DATA, serve, upload

PARTIAL_HEAD = b"POST /predict?model=tiny HTTP/1.1\r\nHost: test\r\n"


def _connect(url: str) -> socket.socket:
    host, port = url.rsplit(":", 1)
    connection = socket.create_connection((host, int(port)))
    connection.settimeout(30)
    return connection


def _read_until_closed(connection: socket.socket) -> bytes:
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


def _read_response(connection: socket.socket) -> bytes:
    """One whole response with a `content-length` (its head and body may come in two sends)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length, head
    while len(body) < int(length.group(1)):
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def _heads_refused(url: str, reason: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"http://{url}/metrics").text):
        if family.name == "http_request_heads_refused":
            return sum(sample.value for sample in family.samples if sample.labels.get("reason") == reason)
    raise AssertionError("no http_request_heads_refused_total in /metrics")


def test_slow_heads_get_408_and_never_turn_others_away(tiny_store: Path) -> None:
    # As `scripts/serve.sh` starts it, with room for 8 connections: 20 slow clients would
    # have every other request answered 503 if half-sent heads counted.
    server = serve(
        tiny_store, "--workers", "1", "--limit-concurrency", "8", launcher="app.serve", HEADER_TIMEOUT_SECONDS="3"
    )
    with server as (url, _), contextlib.ExitStack() as stack:
        slow = [stack.enter_context(_connect(url)) for _ in range(20)]
        for connection in slow:
            connection.sendall(PARTIAL_HEAD)
        started = time.monotonic()
        answer = httpx.post(f"http://{url}/predict?model=tiny", files=upload(DATA / "7.png"), timeout=30)
        assert answer.status_code == 200, answer.text
        # A head that arrives in pieces, within the deadline, is served.
        patient = stack.enter_context(_connect(url))
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: test\r\n", b"\r\n"):
            patient.sendall(piece)
            time.sleep(0.5)
        assert _read_response(patient).startswith(b"HTTP/1.1 200")
        for connection in slow:
            reply = _read_until_closed(connection)  # closed by the server after its answer
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), reply
            error = json.loads(body)["error"]
            assert error["code"] == "request_timeout" and "HEADER_TIMEOUT_SECONDS" in error["message"]
        assert time.monotonic() - started < 20
        assert _heads_refused(url, "timeout") == 20


def test_the_next_head_on_a_kept_alive_connection_has_the_same_deadline(tiny_store: Path) -> None:
    # As the container image starts it: uvicorn's command line with the protocol named.
    server = serve(tiny_store, "--http", "app.protocol:HeadLimitsProtocol", HEADER_TIMEOUT_SECONDS="1")
    with server as (url, _), _connect(url) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert _read_response(connection).startswith(b"HTTP/1.1 200")
        connection.sendall(PARTIAL_HEAD)
        assert _read_until_closed(connection).startswith(b"HTTP/1.1 408")


def test_a_head_over_max_header_bytes_gets_431_and_a_large_one_under_it_is_served(tiny_store: Path) -> None:
    server = serve(tiny_store, "--workers", "1", launcher="app.serve", MAX_HEADER_BYTES="16384")
    with server as (url, _), _connect(url) as endless, _connect(url) as large:
        # 20 kB of a head that has not ended: the server reads it all, answers, and closes.
        endless.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nCookie: " + b"a" * 20000)
        reply = _read_until_closed(endless)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431"), reply[:200]
        error = json.loads(body)["error"]
        assert error["code"] == "header_too_large" and "MAX_HEADER_BYTES" in error["message"]
        large.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nCookie: " + b"a" * 12000 + b"\r\n\r\n")
        assert _read_response(large).startswith(b"HTTP/1.1 200")
        assert _heads_refused(url, "too_large") == 1


def test_uvicorns_private_protocol_still_has_what_head_limits_builds_on() -> None:
    # HeadLimitsProtocol subclasses uvicorn's HttpToolsProtocol, which is not public API:
    # pyproject pins uvicorn to the minor version this checks, and an upgrade that changes
    # the methods or attributes it overrides or reads fails here, not in production.
    import inspect

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

    overridden = {
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "data_received": ["self", "data"],
        "on_message_begin": ["self"],
        "on_headers_complete": ["self"],
    }
    for name, parameters in overridden.items():
        assert list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters) == parameters, name
    constructor = inspect.getsource(HttpToolsProtocol.__init__)
    for attribute in ("loop", "app_state", "connections", "transport", "cycle"):
        assert re.search(rf"self\.{attribute}\b\s*[:=]", constructor), attribute
    assert "self.connections.add(self)" in inspect.getsource(HttpToolsProtocol.connection_made)
    assert "self.response_complete" in inspect.getsource(RequestResponseCycle.__init__)
