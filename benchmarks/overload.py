"""Overload benchmark: load well past saturation is shed at once, the accepted requests
stay fast, memory stays flat.

1. Saturation: wrk at `--concurrency` connections (the level where custom2's throughput
   stops growing) measures the sustainable rate and its p99, on a server whose in-flight
   bound is far above that level, so that nothing is refused: every answer must be a 200.
2. Overload: the server started again with `MAX_REQUESTS_IN_FLIGHT` set to the saturation
   concurrency; wrk offers `--factor` times the sustainable rate over `--connections`
   connections (each waits between its requests, so the offered rate stays bounded as in
   an open loop), while a probe client posts the same upload at a steady rate and records
   each answer's status and latency. The probe's figures give the p99 of accepted
   requests and how fast the shed ones get their 503; wrk gives the totals. Resident
   memory (of every worker) is read before and after.

With `--workers N`, N uvicorn workers share the port and the bound: each admits
`--concurrency / N` requests in flight in the overload phase. (Measuring saturation with
that bound in place would let the kernel's uneven spread of the connections over the
workers refuse some of them, and count the fast 503s in the sustainable rate.)

    .venv/bin/python benchmarks/overload.py [--model custom2] [--duration 30] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import mixed
from benchmarks.run import ROOT, Server, rss_bytes, run_wrk


def probe(url: str, image: bytes, rate: float, stop: threading.Event) -> list[tuple[int, float]]:
    """Post `image` `rate` times a second until `stop`; (status, seconds) of each answer."""
    results: list[tuple[int, float]] = []
    with httpx.Client(timeout=30) as client:
        next_at = time.perf_counter()
        while not stop.is_set():
            started = time.perf_counter()
            response = client.post(url, files={"image": ("7.png", image, "image/png")})
            results.append((response.status_code, time.perf_counter() - started))
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.perf_counter()))
    return results


def offered_load(url: str, image: Path, connections: int, seconds: float, rate: float) -> dict[str, Any]:
    """wrk offering about `rate` uploads of `image` a second over `connections`, answers counted by status."""
    base, _, path = url.partition("/predict")
    with tempfile.TemporaryDirectory() as folder:
        manifest = mixed.write_manifest(
            [("/predict" + path, *mixed.multipart(image.read_bytes(), "image/png"))], Path(folder)
        )
        return mixed.run(base, manifest, connections, seconds, delay_ms=1000 * connections / rate)


def start_server(args: argparse.Namespace, *, max_in_flight: int) -> tuple[Server, tempfile.TemporaryDirectory[str]]:
    """The service with `args.workers` workers, each admitting `max_in_flight` requests,
    ready; and its metrics folder (prometheus-client's multiprocess mode, as
    scripts/serve.sh sets it), to clean up after it stops."""
    env = {"MAX_REQUESTS_IN_FLIGHT": str(max_in_flight), "LOG_LEVEL": "WARNING"}
    metrics_dir = tempfile.TemporaryDirectory()
    if args.workers > 1:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
    server = Server("app.main:app", args.port, env=env, workers=args.workers)
    server.start("/readyz")
    return server, metrics_dir


def measure_saturation(args: argparse.Namespace) -> dict[str, Any]:
    """wrk's figures at `args.concurrency` connections, on a server that admits 100 times
    that many requests per worker (no refusals whatever the spread over workers)."""
    server, metrics_dir = start_server(args, max_in_flight=100 * args.concurrency)
    url = f"{server.url}/predict?model={args.model}"
    try:
        run_wrk(url, args.image, args.concurrency, 2)  # warm-up
        return run_wrk(url, args.image, args.concurrency, args.duration)
    finally:
        server.stop()
        metrics_dir.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="custom2")
    parser.add_argument("--concurrency", type=int, default=32, help="saturation level")
    parser.add_argument("--factor", type=int, default=4, help="offered rate, in multiples of the sustainable rate")
    parser.add_argument("--connections", type=int, default=256, help="wrk connections offering it")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--probe-rate", type=float, default=20.0, help="probe requests per second")
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "7.png")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "overload.json")
    args = parser.parse_args()

    per_worker = max(1, args.concurrency // args.workers)
    saturation = measure_saturation(args)
    if saturation["non_2xx"] or saturation["socket_errors"]:
        raise SystemExit(f"the saturation run was not all 200s: {saturation}")
    rate, p99 = saturation["requests_per_second"], saturation["p99_ms"]
    print(f"saturation c={args.concurrency}: {rate:.0f} req/s, p99 {p99:.1f} ms, every answer a 200")
    server, metrics_dir = start_server(args, max_in_flight=per_worker)
    url = f"{server.url}/predict?model={args.model}"
    try:
        run_wrk(url, args.image, args.concurrency, 2)  # warm-up
        rss_before = rss_bytes(server.process.pid)  # type: ignore[union-attr]
        stop = threading.Event()
        probed: list[tuple[int, float]] = []
        thread = threading.Thread(
            target=lambda: probed.extend(probe(url, args.image.read_bytes(), args.probe_rate, stop))
        )
        thread.start()
        offered = args.factor * saturation["requests_per_second"]
        overload = offered_load(url, args.image, args.connections, args.duration, offered)
        overload["offered_per_second"] = offered
        stop.set()
        thread.join()
        rss_after = rss_bytes(server.process.pid)  # type: ignore[union-attr]
    finally:
        server.stop()
        metrics_dir.cleanup()

    accepted = [seconds for status, seconds in probed if status == 200]
    shed = [seconds for status, seconds in probed if status == 503]
    other = sorted({status for status, _ in probed} - {200, 503})
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "workers": args.workers,
        "max_requests_in_flight_per_worker": per_worker,
        "saturation": saturation,
        "overload": overload,
        "connections": args.connections,
        "probe": {
            "accepted": len(accepted),
            "shed": len(shed),
            "other_statuses": other,
            "accepted_p99_ms": float(np.percentile(accepted, 99) * 1000) if accepted else None,
            "shed_p99_ms": float(np.percentile(shed, 99) * 1000) if shed else None,
            "shed_max_ms": float(max(shed) * 1000) if shed else None,
        },
        "rss_mib_before": rss_before / 2**20,
        "rss_mib_after": rss_after / 2**20,
    }
    statuses = overload["statuses"]
    print(
        f"overload c={args.connections}, offered {overload['offered_per_second']:.0f}/s: "
        f"{overload['requests_per_second']:.0f} answers/s "
        f"({statuses.get('200', 0)} x 200, {statuses.get('503', 0)} x 503, "
        f"other {set(statuses) - {'200', '503'} or 'none'})"
    )
    probe_summary = result["probe"]
    print(
        f"probe: {len(accepted)} accepted, p99 {probe_summary['accepted_p99_ms']} ms "
        f"(saturation p99 {saturation['p99_ms']:.1f} ms); {len(shed)} shed, 503 p99 {probe_summary['shed_p99_ms']} ms, "
        f"max {probe_summary['shed_max_ms']} ms"
    )
    print(f"resident memory {result['rss_mib_before']:.0f} -> {result['rss_mib_after']:.0f} MiB")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
