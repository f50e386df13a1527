"""`python -m app.serve` (what `scripts/serve.sh` runs): several workers, a socket each."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.serve import (
    WORKER_BASE_BYTES,
    auto_workers,
    available_memory_bytes,
    main,
    usable_cpus,
    worker_memory_bytes,
)
from benchmarks.run import children_by_parent
from tests.conftest import DATA, serve, upload

GIB = 2**30

LISTEN, ESTABLISHED = "0A", "01"


def _tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of the IPv4 TCP sockets on local port `port` in `state` (/proc/net/tcp's hex code)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(int(fields[9]))
    return inodes


def _socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def test_workers_each_listen_and_share_connections_opened_together(tiny_store: Path, tmp_path: Path) -> None:
    with serve(tiny_store, "--workers", "2", launcher="app.serve", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)) as (
        url,
        process,
    ):
        port = int(url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120  # the first worker up answered; the other may still load
        while len(_tcp_sockets(port, LISTEN)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_tcp_sockets(port, LISTEN)) == 2  # one listening socket per worker, none in the parent
        # 24 connections opened at once, as a load generator or a proxy's pool opens them.
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
        try:
            for connection in connections:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            for connection in connections:
                assert connection.recv(4096).startswith(b"HTTP/1.1 200")
            established = _tcp_sockets(port, ESTABLISHED)
            held = [len(_socket_inodes(child) & established) for child in children_by_parent().get(process.pid, [])]
            assert sum(held) == 24 and len([count for count in held if count]) == 2, held  # both workers serve
        finally:
            for connection in connections:
                connection.close()
        answer = httpx.post(f"http://{url}/predict?model=tiny", files=upload(DATA / "7.png"), timeout=30)
        assert answer.status_code == 200 and answer.json()["class_index"] in range(10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0


def test_one_worker_with_json_logs(tiny_store: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with serve(tiny_store, "--workers", "1", launcher="app.serve", stderr=str(log), LOG_FORMAT="json") as (
        url,
        process,
    ):
        answer = httpx.post(f"http://{url}/predict?model=tiny", files=upload(DATA / "7.png"), timeout=30)
        assert answer.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it stopped on
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(entry["logger"] == "app.access" and entry.get("status") == 200 for entry in entries)
    assert any(entry["logger"].startswith("uvicorn") for entry in entries)  # the server's own lines too


def test_auto_workers_one_per_cpu_as_half_the_free_memory_holds() -> None:
    assert auto_workers(8, 64 * GIB, 2 * GIB) == 8
    assert auto_workers(8, 12 * GIB, 2 * GIB) == 3  # half of 12 GiB holds three
    assert auto_workers(2, GIB, 2 * GIB) == 1  # never none
    assert auto_workers(4, None, 2 * GIB) == 4  # memory unknown: by the CPUs
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "100000 100000\n"}, 1),  # cgroup v2, `--cpus 1`
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs round up
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),  # no cgroup
    ],
)
def test_usable_cpus_honour_a_cgroup_quota_v1_or_v2(files: dict[str, str], limit: int | None, tmp_path: Path) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (affinity if limit is None else min(affinity, limit))


@pytest.mark.parametrize(
    ("files", "free"),
    [
        ({"memory.max": "2147483648\n", "memory.current": "536870912\n"}, 1536 * 2**20),  # cgroup v2
        ({"memory.max": "max\n", "memory.current": "536870912\n"}, None),
        ({"memory/memory.limit_in_bytes": "2147483648\n", "memory/memory.usage_in_bytes": "536870912\n"}, 1536 * 2**20),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": "1\n"}, None),
        ({}, None),
    ],
)
def test_available_memory_honours_a_cgroup_limit_v1_or_v2(
    files: dict[str, str], free: int | None, tmp_path: Path
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    unbounded = available_memory_bytes(tmp_path / "none")  # MemAvailable alone, on Linux
    bounded = available_memory_bytes(tmp_path)
    assert unbounded is not None and bounded is not None
    if free is None:
        assert abs(bounded - unbounded) < 256 * 2**20  # MemAvailable moves between two reads
    else:
        assert bounded == free or (bounded < free and unbounded < 2 * free)


def test_worker_memory_estimate_grows_with_each_version(tiny_store: Path, tmp_path: Path) -> None:
    version = tiny_store / "mnist" / "tiny" / "1"
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(version, one / "mnist" / "tiny" / "1")
    shutil.copytree(version, two / "mnist" / "tiny" / "1")
    shutil.copytree(version, two / "mnist" / "tiny" / "2")
    (tmp_path / "empty").mkdir()
    assert worker_memory_bytes(tmp_path / "empty") == WORKER_BASE_BYTES
    per_version = worker_memory_bytes(one) - WORKER_BASE_BYTES
    assert per_version > 3 * (version / "saved_model.pb").stat().st_size
    assert worker_memory_bytes(two) == WORKER_BASE_BYTES + 2 * per_version


@pytest.mark.parametrize("workers", ["0", "two", "-1"])
def test_workers_option_refuses_what_is_not_a_count(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--workers", workers])
    assert exit_info.value.code == 2
    assert "--workers" in capsys.readouterr().err


def _worker_pids(pid: int) -> list[int]:
    """The worker processes of the server `pid` (not multiprocessing's resource tracker)."""
    children = children_by_parent().get(pid, [])
    return [child for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def _environment(pid: int) -> dict[str, str]:
    """The environment process `pid` started with."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


@pytest.mark.slow
def test_auto_workers_by_default_share_metrics_and_cores(tiny_store: Path, tmp_path: Path) -> None:
    """Without `--workers` or `WORKERS`, as `scripts/serve.sh` starts it: `auto_workers`'
    count, each worker with its share of the CPUs for TensorFlow, their metrics added up in
    a folder the parent makes and removes."""
    expected = auto_workers(usable_cpus(), available_memory_bytes(), worker_memory_bytes(tiny_store))
    log = tmp_path / "server.log"
    with serve(tiny_store, launcher="app.serve", stderr=str(log)) as (url, process):
        workers = [process.pid]  # one worker is the server process itself
        if expected > 1:
            deadline = time.monotonic() + 120
            while len(workers := _worker_pids(process.pid)) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(workers) == expected
        for _ in range(12):
            with httpx.Client() as fresh:  # a new connection each time, so every worker may serve
                answer = fresh.post(f"http://{url}/predict?model=tiny", files=upload(DATA / "7.png"), timeout=30)
                assert answer.status_code == 200
        scrape = text_string_to_metric_families(httpx.get(f"http://{url}/metrics").text)
        served = sum(
            sample.value
            for family in scrape
            for sample in family.samples
            if sample.name == "http_requests_total" and sample.labels.get("route") == "/predict"
        )
        assert served == 12  # every worker's requests, whichever answered the scrape
        environments = [_environment(pid) for pid in workers]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
    assert f"WORKERS=auto: {expected} worker(s)" in log.read_text()
    if expected > 1:
        metrics_dirs = {environment["PROMETHEUS_MULTIPROC_DIR"] for environment in environments}
        assert len(metrics_dirs) == 1 and not Path(metrics_dirs.pop()).exists()  # removed at exit
        assert {environment["INTRA_OP_THREADS"] for environment in environments} == {
            str(max(1, usable_cpus() // expected))
        }


def test_threads_follow_the_cpus_the_process_may_use(tiny_store: Path, tmp_path: Path) -> None:
    """A server on one CPU (its affinity, as `--cpus 1` or a Kubernetes limit of 1 gives
    through the cgroup quota) sizes every pool from that CPU, not from the machine's count,
    and says so at start-up; a named, missing metrics folder is made (a Kubernetes emptyDir)."""
    log = tmp_path / "server.log"
    metrics = tmp_path / "metrics" / "nested"
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})  # the server process inherits it
    try:
        with serve(tiny_store, launcher="app.serve", stderr=str(log), PROMETHEUS_MULTIPROC_DIR=str(metrics)) as (
            url,
            process,
        ):
            assert httpx.post(f"http://{url}/predict?model=tiny", files=upload(DATA / "7.png"), timeout=30).is_success
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=90)
    finally:
        os.sched_setaffinity(0, allowed)
    text = log.read_text()
    assert "WORKERS=auto: 1 worker(s) for 1 usable CPU(s)" in text
    assert "threads: 1 usable CPU(s), intra_op_threads=1 inter_op_threads=1 preprocess_threads=1" in text
    assert metrics.is_dir()
