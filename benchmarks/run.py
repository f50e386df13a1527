"""Load benchmark of the service against a floor and the naive `model.predict` server.

In one run, on loopback, with wrk (Debian package `wrk`) as the separate load-generator
process posting the same 28x28 PNG as multipart:

1. ours: `uvicorn app.main:app` with every shipped model; start-up time to `/readyz`
   and resident memory; `/predict` for each model at each concurrency.
2. floor: the same app's upload route that decodes and preprocesses but runs no model
   (`benchmarks/floor_app.py`).
3. naive: `model.predict` per request in the handler (`benchmarks/naive_app.py`).

It prints requests/s and p50/p90/p99 latency for each, the ratios ours/floor and
ours/naive, and writes everything to `--output` as JSON.

    .venv/bin/python benchmarks/run.py                      # defaults below
    .venv/bin/python benchmarks/run.py --duration 5 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
LUA = Path(__file__).resolve().parent / "multipart.lua"


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, by the parent's pid (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def rss_bytes(pid: int) -> int:
    """Resident memory in bytes of a process and all its descendants (from /proc)."""
    children = children_by_parent()
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


class Server:
    """A uvicorn process on 127.0.0.1, started and waited for until a URL answers 200."""

    def __init__(self, target: str, port: int, *, env: dict[str, str], workers: int = 1) -> None:
        self.target, self.port, self.workers = target, port, workers
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "LOG_LEVEL": "WARNING", **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str, timeout: float = 120.0) -> None:
        """Start the server and wait until `ready_path` answers 200: with several workers,
        20 times in a row on new connections (each may reach any worker, and each worker
        loads its models on its own).

        Raises:
            RuntimeError: The process exited.
            TimeoutError: Not ready within `timeout` seconds.
        """
        command = [sys.executable, "-m", "uvicorn", self.target, "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self.workers), "--no-access-log", "--log-level", "warning"]
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env)
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited with {self.process.returncode}")
            try:
                in_a_row = 0
                while httpx.get(self.url + ready_path, timeout=1).status_code == 200:
                    in_a_row += 1
                    if in_a_row >= (1 if self.workers == 1 else 20):
                        self.startup_seconds = time.perf_counter() - started
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.target} not ready after {timeout} s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


def run_wrk(url: str, image: Path, concurrency: int, duration: float) -> dict[str, Any]:
    """One wrk run with one thread and `concurrency` connections; its JSON summary."""
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    output = subprocess.run([*command, "--", str(image)], capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("JSON "))
    result = json.loads(line[5:])
    result["requests_per_second"] = result["requests"] / (result["duration_us"] / 1e6)
    result["concurrency"] = concurrency
    return result


def measure(url: str, image: Path, levels: list[int], duration: float, label: str) -> list[dict[str, Any]]:
    """wrk at each concurrency after a one-second warm-up; prints one line per level."""
    run_wrk(url, image, max(levels), 1)
    results = []
    for concurrency in levels:
        result = run_wrk(url, image, concurrency, duration)
        result["label"] = label
        bad = result["non_2xx"] + result["socket_errors"]
        print(
            f"{label:<18} c={concurrency:<3} {result['requests_per_second']:>8.0f} req/s   "
            f"p50 {result['p50_ms']:>7.2f} ms  p90 {result['p90_ms']:>7.2f} ms  p99 {result['p99_ms']:>7.2f} ms"
            + (f"  ({bad} errors)" if bad else ""),
            flush=True,
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "custom2"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 16, 32])
    parser.add_argument("--naive-concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes for ours and floor")
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "7.png")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models_store")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "benchmark.json")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is required: apt-get install wrk", file=sys.stderr)
        return 2
    env = {"MODELS_DIR": str(args.models_dir)}
    report: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "workers": args.workers}
    print(f"cpus: {os.cpu_count()}, image: {args.image.name}, {args.duration:g} s per level", flush=True)

    ours = Server("app.main:app", args.port, env=env, workers=args.workers)
    ours.start("/readyz")
    time.sleep(1.0)
    report["startup_seconds"] = ours.startup_seconds
    report["rss_bytes"] = rss_bytes(ours.process.pid)  # type: ignore[union-attr]
    models = httpx.get(ours.url + "/models").json()["models"]
    report["models_loaded"] = len(models)
    print(
        f"ours: ready in {ours.startup_seconds:.1f} s with {len(models)} models, "
        f"resident memory {report['rss_bytes'] / 2**20:.0f} MiB",
        flush=True,
    )
    try:
        report["ours"] = {
            model: measure(f"{ours.url}/predict?model={model}", args.image, args.concurrency, args.duration, model)
            for model in args.models
        }
    finally:
        ours.stop()

    floor = Server("benchmarks.floor_app:app", args.port, env=env, workers=args.workers)
    floor.start("/readyz")
    try:
        report["floor"] = measure(f"{floor.url}/floor", args.image, args.concurrency, args.duration, "floor")
    finally:
        floor.stop()

    report["naive"] = {}
    for model in [] if args.skip_naive else args.models:
        path = next(iter(sorted((args.models_dir / "mnist" / model).glob("[0-9]*"), key=lambda p: int(p.name))))
        naive = Server("benchmarks.naive_app:app", args.port, env={**env, "NAIVE_MODEL": str(path)})
        naive.start("/docs")
        try:
            report["naive"][model] = measure(
                f"{naive.url}/predict", args.image, args.naive_concurrency, args.duration, f"naive {model}"
            )
        finally:
            naive.stop()

    floor_rps = {item["concurrency"]: item["requests_per_second"] for item in report["floor"]}
    print("\nratios (requests/s)")
    for model, results in report["ours"].items():
        naive_rps = {item["concurrency"]: item["requests_per_second"] for item in report["naive"].get(model, [])}
        for item in results:
            c = item["concurrency"]
            parts = [f"{model:<8} c={c:<3} ours/floor {item['requests_per_second'] / floor_rps[c]:.2f}"]
            if c in naive_rps:
                parts.append(f"ours/naive {item['requests_per_second'] / naive_rps[c]:.1f}x")
            print("   ".join(parts))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
