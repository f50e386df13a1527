"""custom2 through Ray Serve (1 and 2 replicas) against the plain server, with the same wrk load.

    .venv/bin/python benchmarks/ray_serve.py [--concurrency 1 16 32] [--duration 8]

Each server serves a store holding only mnist/custom2 (a temporary folder linking to the
shipped version), so start-up and memory compare like with like. Ray runs locally on the
same 2 cores as wrk and the replicas, with one CPU reserved per replica. Prints one line
per level and writes the results to runs/ray_serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import ROOT, Server, measure

IMAGE = ROOT / "tests" / "data" / "7.png"


def ray_server(store: Path, replicas: int, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """`python -m app.ray_serve` on `port`; returns the process once `/readyz` answers, and the seconds it took."""
    env = {**os.environ, "MODELS_DIR": str(store), "TF_CPP_MIN_LOG_LEVEL": "2", "LOG_LEVEL": "WARNING",
           "MODEL_POLL_SECONDS": "0", "RAY_DEDUP_LOGS": "0"}  # fmt: skip
    command = [sys.executable, "-m", "app.ray_serve", "--replicas", str(replicas), "--num-cpus", "1"]
    command += ["--port", str(port)]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - started < 300:
        if process.poll() is not None:
            raise RuntimeError(f"Ray Serve exited with {process.returncode}")
        try:
            # readiness of every replica: the proxy answers once one is up, so ask until both have
            seen = {httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).headers.get("x-replica") for _ in range(20)}
            if len(seen - {None}) >= replicas:
                return process, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError("Ray Serve not ready after 300 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Interrupt `python -m app.ray_serve` (it shuts Serve and Ray down) and wait for it."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
    subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 32])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--port", type=int, default=8311)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "ray_serve.json")
    args = parser.parse_args(argv)
    url = "/predict?model=custom2"
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder)
        (store / "mnist").mkdir()
        (store / "mnist" / "custom2").symlink_to(ROOT / "models_store" / "mnist" / "custom2")
        plain = Server("app.main:app", args.port, env={"MODELS_DIR": str(store), "MODEL_POLL_SECONDS": "0"})
        plain.start("/readyz")
        try:
            results["plain"] = measure(plain.url + url, IMAGE, args.concurrency, args.duration, "plain, 1 worker")
        finally:
            plain.stop()
        for replicas in (1, 2):
            process, ready = ray_server(store, replicas, args.port)
            try:
                label = f"Ray Serve, {replicas} replica{'s' if replicas > 1 else ''}"
                print(f"{label}: ready in {ready:.0f} s", flush=True)
                base = f"http://127.0.0.1:{args.port}"
                results[f"ray_{replicas}"] = measure(base + url, IMAGE, args.concurrency, args.duration, label)
            finally:
                stop(process)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
