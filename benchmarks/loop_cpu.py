r"""Event-loop CPU per request: the ASGI app driven in-process, no sockets, no uvicorn.

`--concurrency` coroutines post `tests/data/7.png` as multipart to `/predict?model=...`
until `--requests` answers, with the app's lifespan (every model of `MODELS_DIR` loaded)
and uvloop; prints the answers by status and the loop thread's CPU time per request (the
model's thread is not counted). `--profile` adds a cProfile of the loop sorted by
cumulative time. With `MAX_REQUESTS_IN_FLIGHT=1` nearly every request is refused, which
gives the app's cost of a 503:

    MODELS_DIR=/tmp/one-model .venv/bin/python benchmarks/loop_cpu.py --concurrency 16 --requests 1600
    MODELS_DIR=/tmp/one-model MAX_REQUESTS_IN_FLIGHT=1 \
        .venv/bin/python benchmarks/loop_cpu.py --concurrency 16 --requests 3200
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = b"loop-cpu-boundary"


def multipart_body(image: bytes) -> bytes:
    """A multipart/form-data body with `image` in the `image` field (BOUNDARY)."""
    head = b'Content-Disposition: form-data; name="image"; filename="7.png"\r\nContent-Type: image/png\r\n\r\n'
    return b"--" + BOUNDARY + b"\r\n" + head + image + b"\r\n--" + BOUNDARY + b"--\r\n"


async def post(app: Any, state: dict[str, Any], body: bytes, query: bytes) -> int:
    """One POST /predict through the ASGI app; its status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/predict", "raw_path": b"/predict", "query_string": query, "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": state,
    }  # fmt: skip
    delivered = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def run(args: argparse.Namespace) -> None:
    from app.main import app

    body = multipart_body((ROOT / "tests" / "data" / "7.png").read_bytes())
    query = f"model={args.model}".encode()
    async with app.router.lifespan_context(app) as lifespan_state:
        state = dict(lifespan_state or {})
        for _ in range(200):  # warm-up
            await post(app, state, body, query)
        left = args.requests
        counts: dict[int, int] = {}

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                status = await post(app, state, body, query)
                counts[status] = counts.get(status, 0) + 1

        profile = cProfile.Profile() if args.profile else None
        started = time.thread_time()
        if profile:
            profile.enable()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        if profile:
            profile.disable()
        cpu = time.thread_time() - started
    print(f"answers by status {counts}; loop CPU per request {cpu / args.requests * 1e6:.0f} us")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="custom2")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import uvloop

    uvloop.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
