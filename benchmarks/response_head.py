r"""`python -m app.serve` with each response's head written together with its body: an
experiment for issue 17, not the service (docs/performance.md, 2026-12-05).

uvicorn writes a response's status line and headers to the socket when the app sends
`http.response.start`, and the body when it sends `http.response.body`: two `send` system
calls per answer on the event loop. This patches uvicorn's `RequestResponseCycle.send` to
hold the head and write it with the first body bytes (or alone when the response ends
without any), then starts the server as `app.serve` does:

    MODELS_DIR=/tmp/one-model .venv/bin/python -m app.serve --host 127.0.0.1 --port 8106 --workers 1 &
    MODELS_DIR=/tmp/one-model .venv/bin/python benchmarks/response_head.py --host 127.0.0.1 --port 8107 --workers 1 &
    .venv/bin/python benchmarks/cpu_per_request.py --match "port 8107" --url "http://127.0.0.1:8107/predict?model=mlp" \
        --concurrency 16 --seconds 8

The patch is applied at import, so the workers that uvicorn spawns (which import this
module as their main module) are patched too.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http import httptools_impl

_send = httptools_impl.RequestResponseCycle.send


class _HeldHead:
    """A transport that writes `head` before the first bytes written to it."""

    def __init__(self, transport: Any, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        self.transport.write(self.head + data)
        self.head = b""

    def flush(self) -> None:
        if self.head:
            self.transport.write(self.head)
            self.head = b""

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _Capture:
    """A transport that keeps what is written to it."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def send_with_held_head(self: Any, message: dict[str, Any]) -> None:
    """uvicorn's `send`, with the head held back until the body's first write."""
    transport = self.transport
    if message["type"] == "http.response.start" and not self.response_started:
        capture = _Capture(transport)
        self.transport = capture
        try:
            await _send(self, message)
        finally:
            self.transport = transport
        self._held_head = b"".join(capture.written)
        return
    head = getattr(self, "_held_head", b"")
    if not head:
        await _send(self, message)
        return
    held = _HeldHead(transport, head)
    self.transport, self._held_head = held, b""
    try:
        await _send(self, message)
    finally:
        self.transport = transport
        held.flush()


httptools_impl.RequestResponseCycle.send = send_with_held_head  # type: ignore[method-assign]

if __name__ == "__main__":
    from app.serve import main

    main()
