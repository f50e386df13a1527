"""`python -m app.serve` (what `scripts/serve.sh` runs): several workers, a socket each."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx

from benchmarks.run import children_by_parent
from tests.conftest import DATA, serve, upload

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
