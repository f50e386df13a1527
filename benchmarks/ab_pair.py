"""Paired A/B of two checkouts of this service: both servers up at once, wrk runs alternating
in random order, and the no-model floor beside them; throughput, latency and the server
process's CPU time per request.

On a shared machine the throughput of one server start drifts by a third from the next;
running both servers side by side and alternating short runs lets the drift hit both
alike, so the paired ratios (after / before, run next to each other) are what to read.

    git worktree add ../before 9f57c9e && ln -s "$PWD/.venv" ../before/.venv
    .venv/bin/python benchmarks/ab_pair.py --before ../before --output benchmarks/results/ab_pair.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import ROOT, run_wrk

IMAGE = ROOT / "tests" / "data" / "7.png"
MODELS = ("custom2", "mlp")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and all its threads, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(folder: Path, port: int, target: str, ready: str) -> subprocess.Popen[bytes]:
    """uvicorn serving `target` from `folder` (with its own .venv) on 127.0.0.1:`port`,
    waited for until `ready` answers 200."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "LOG_LEVEL": "WARNING"}
    command = [str(folder / ".venv" / "bin" / "python"), "-m", "uvicorn", target, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=folder, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"{target} in {folder} not ready after 180 s")


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Per model and level: medians of each side and of the paired ratios."""
    runs = collections.defaultdict(list)
    for row in rows:
        runs[(row["model"], row["concurrency"], row["server"])].append(row)
    lines = []
    for (model, level, server), before in sorted(runs.items()):
        if server != "before":
            continue
        after = runs[(model, level, "after")]
        ratios = [a["rps"] / b["rps"] for b, a in zip(before, after, strict=True)]
        lines.append(
            f"{model:<8} c={level:<3} before {statistics.median(r['rps'] for r in before):6.0f} req/s  "
            f"after {statistics.median(r['rps'] for r in after):6.0f} req/s  "
            f"paired after/before median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})  "
            f"CPU ms/request {statistics.median(r['cpu_ms_per_request'] for r in before):.2f} -> "
            f"{statistics.median(r['cpu_ms_per_request'] for r in after):.2f}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout, with a .venv")
    parser.add_argument("--starts", type=int, default=2, help="times both servers are started")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per start")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 32])
    parser.add_argument("--seconds", type=float, default=4.0, help="per wrk run")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "ab_pair.json")
    args = parser.parse_args()

    servers = {
        "before": (args.before.resolve(), 8201, "app.main:app", "/readyz"),
        "after": (ROOT, 8202, "app.main:app", "/readyz"),
        "floor": (ROOT, 8203, "benchmarks.floor_app:app", "/healthz"),
    }

    def url(server: str, model: str) -> str:
        port = servers[server][1]
        return (
            f"http://127.0.0.1:{port}/floor" if server == "floor" else f"http://127.0.0.1:{port}/predict?model={model}"
        )

    rows: list[dict[str, Any]] = []
    for started in range(args.starts):
        processes = {name: start(*spec) for name, spec in servers.items()}
        try:
            for name in servers:
                for model in MODELS:
                    run_wrk(url(name, model), IMAGE, 16, 2)  # warm-up
            for repeat in range(args.repeats):
                for model in MODELS:
                    for level in args.concurrency:
                        order = ["before", "after"] + (["floor"] if model == MODELS[0] else [])
                        random.shuffle(order)
                        for name in order:
                            pid = processes[name].pid
                            cpu = cpu_seconds(pid)
                            result = run_wrk(url(name, model), IMAGE, level, args.seconds)
                            cpu = cpu_seconds(pid) - cpu
                            row = {
                                "start": started,
                                "repeat": repeat,
                                "server": name,
                                "model": "floor" if name == "floor" else model,
                                "concurrency": level,
                                "rps": result["requests_per_second"],
                                "p50_ms": result["p50_ms"],
                                "p99_ms": result["p99_ms"],
                                "cpu_ms_per_request": 1000 * cpu / max(1, result["requests"]),
                                "errors": result["non_2xx"] + result["socket_errors"],
                            }
                            rows.append(row)
                            print(json.dumps(row), flush=True)
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(30)
    print("\n".join(summary(rows)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
