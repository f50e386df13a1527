r"""CPU time per request of a running server, by process and thread, under wrk load.

On a machine where the server and the load generator share every core, requests per
second follow from the CPU each request costs. This script loads a server already running
on 127.0.0.1 (ours, or a peer such as TorchServe) with wrk posting an image as multipart,
and reads the user + system CPU time of every thread of the server's process tree from
`/proc` (Linux only) before and after the run. It prints the requests per second and the
CPU microseconds per request of the server (all its processes), of each process (by its
command line) and of each kind of thread (by its name; `main` is a process's main thread,
which runs the event loop in ours, `python` any other thread started from Python, such as
the model's), and of wrk itself.

    WORKERS=2 bash scripts/serve.sh &
    .venv/bin/python benchmarks/cpu_per_request.py --match "app.serve" \
        --url "http://127.0.0.1:8000/predict?model=custom2"
    .venv/bin/python benchmarks/cpu_per_request.py --match "org.pytorch.serve|model_service_worker" \
        --url http://127.0.0.1:18080/predictions/custom2_b8

`--match` is a pattern for `pgrep -f`; every matching process and all its descendants are
counted once. Needs `wrk` (`apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import children_by_parent, run_wrk

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pattern: str) -> list[int]:
    """The pids matching `pattern` (`pgrep -f`) and all their descendants, each once.

    Raises:
        SystemExit: No process matches.
    """
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    roots = [int(pid) for pid in found if int(pid) != os.getpid()]
    if not roots:
        raise SystemExit(f"no process matches {pattern!r}")
    children = children_by_parent()
    tree: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return sorted(tree)


def thread_times(pids: list[int]) -> dict[tuple[int, int], tuple[str, str, float]]:
    """(pid, tid) -> (process command line, thread name, user + system CPU seconds)."""
    times: dict[tuple[int, int], tuple[str, str, float]] = {}
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:  # exited
            continue
        for task in tasks:
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tid = int(task.name)
            times[(pid, tid)] = (
                command[:80],
                "main" if tid == pid else name,
                (int(fields[11]) + int(fields[12])) / TICKS,
            )
    return times


def measure(url: str, image: Path, pattern: str, concurrency: int, seconds: int) -> dict[str, Any]:
    """One warm-up and one measured wrk run; CPU per request of the server's threads and of wrk."""
    pids = process_tree(pattern)
    run_wrk(url, image, concurrency, max(2, seconds // 3))  # warm-up
    before = thread_times(pids)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_wrk(url, image, concurrency, seconds)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = thread_times(pids)
    requests = result["requests"]
    by_process: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    for key, (command, name, cpu) in after.items():
        spent = cpu - before.get(key, (command, name, 0.0))[2]
        by_process[f"{key[0]} {command}"] += spent
        by_thread[name.rstrip("0123456789_-")] += spent
    wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)

    def per_request(counter: Counter[str]) -> dict[str, float]:
        return {key: round(value / requests * 1e6) for key, value in counter.most_common() if value > 0}

    return {
        "url": url,
        "concurrency": concurrency,
        "requests_per_second": round(result["requests_per_second"], 1),
        "p99_ms": result["p99_ms"],
        "errors": result["socket_errors"] + result["non_2xx"],
        "server_cpu_us_per_request": round(sum(by_process.values()) / requests * 1e6),
        "wrk_cpu_us_per_request": round(wrk_cpu / requests * 1e6),
        "by_process": per_request(by_process),
        "by_thread": per_request(by_thread),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the prediction URL, on 127.0.0.1")
    parser.add_argument("--match", required=True, help="pgrep -f pattern of the server's process(es)")
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "7.png")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--output", type=Path, help="append the results as JSON lines")
    args = parser.parse_args()
    if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        parser.error("load only a server on 127.0.0.1")
    for concurrency in args.concurrency:
        result = measure(args.url, args.image, args.match, concurrency, args.seconds)
        print(json.dumps(result))
        if args.output is not None:
            with args.output.open("a") as output:
                output.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
