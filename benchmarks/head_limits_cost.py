"""What the limits on request heads and slow uploads add to a request, timed alone on uvloop.

`app.protocol.HeadLimitsProtocol` arms and cancels a timer per request head;
`app.middleware.AdmissionMiddleware` wraps `receive` to see the body's end. Both are too
small to show in a benchmark under load on a noisy machine (docs/performance.md,
2026-12-06), so they are timed here in a tight loop, CPU time per request:

    .venv/bin/python benchmarks/head_limits_cost.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import uvloop

REPEATS = 200_000


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"x", "more_body": False}


async def _timed() -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    started = time.process_time()
    for _ in range(REPEATS):
        loop.call_later(10.0, print).cancel()
    timer = (time.process_time() - started) / REPEATS

    started = time.process_time()
    for _ in range(REPEATS):
        reading = True

        async def receive_body() -> dict[str, Any]:
            nonlocal reading
            message = await _receive()
            if reading and not (message["type"] == "http.request" and message.get("more_body", False)):
                reading = False
            return message

        await receive_body()
    wrapped = (time.process_time() - started) / REPEATS
    started = time.process_time()
    for _ in range(REPEATS):
        await _receive()
    bare = (time.process_time() - started) / REPEATS
    return timer, wrapped - bare


def main() -> None:
    """Print the CPU us per request of each addition."""
    timer, wrapper = uvloop.run(_timed())
    print(f"timer armed and cancelled: {timer * 1e6:.2f} us; receive wrapped: {wrapper * 1e6:.2f} us")


if __name__ == "__main__":
    main()
