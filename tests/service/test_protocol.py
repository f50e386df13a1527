"""`app.protocol.HeadTimeoutProtocol`: a client that sends request heads slowly gets 408 and
never turns other clients away (real server processes on 127.0.0.1)."""

from __future__ import annotations

import json
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


def _head_timeouts(url: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"http://{url}/metrics").text):
        if family.name == "http_request_head_timeouts":
            return sum(sample.value for sample in family.samples)
    raise AssertionError("no http_request_head_timeouts_total in /metrics")


def test_slow_heads_get_408_and_never_turn_others_away(tiny_store: Path) -> None:
    # As `scripts/serve.sh` starts it, with room for 8 connections: 20 slow clients would
    # have every other request answered 503 if half-sent heads counted.
    with serve(
        tiny_store, "--workers", "1", "--limit-concurrency", "8", launcher="app.serve", HEADER_TIMEOUT_SECONDS="3"
    ) as (url, _):
        slow = [_connect(url) for _ in range(20)]
        for connection in slow:
            connection.sendall(PARTIAL_HEAD)
        started = time.monotonic()
        answer = httpx.post(f"http://{url}/predict?model=tiny", files=upload(DATA / "7.png"), timeout=30)
        assert answer.status_code == 200, answer.text
        # A head that arrives in pieces, within the deadline, is served.
        patient = _connect(url)
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: test\r\n", b"\r\n"):
            patient.sendall(piece)
            time.sleep(0.5)
        assert patient.recv(4096).startswith(b"HTTP/1.1 200")
        patient.close()
        for connection in slow:
            reply = _read_until_closed(connection)  # closed by the server after its answer
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), reply
            error = json.loads(body)["error"]
            assert error["code"] == "request_timeout" and "HEADER_TIMEOUT_SECONDS" in error["message"]
            connection.close()
        assert time.monotonic() - started < 20
        assert _head_timeouts(url) == 20


def test_the_next_head_on_a_kept_alive_connection_has_the_same_deadline(tiny_store: Path) -> None:
    # As the container image starts it: uvicorn's command line with the protocol named.
    with serve(tiny_store, "--http", "app.protocol:HeadTimeoutProtocol", HEADER_TIMEOUT_SECONDS="1") as (url, _):
        connection = _connect(url)
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        connection.sendall(PARTIAL_HEAD)
        assert _read_until_closed(connection).startswith(b"HTTP/1.1 408")
        connection.close()
