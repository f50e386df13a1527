"""Structured logs: with LOG_FORMAT=json every line is JSON, lines of a request carry its
request id, and each request writes one access line without the upload's content."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx

from tests.conftest import DATA, serve, upload

SEVEN = (DATA / "7.png").read_bytes()


def test_json_logs_with_request_ids_and_access_lines(tiny_store: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    config = "app/log_config.json"
    with serve(tiny_store, "--log-config", config, "--no-access-log", LOG_FORMAT="json", stderr=str(log)) as (url, _):
        headers = {"X-Request-ID": "logged-1"}
        assert httpx.post(f"http://{url}/predict?model=tiny", files=upload(SEVEN), headers=headers).status_code == 200
        body = {"instances": [{"b64": base64.b64encode(b"not an image").decode()}]}
        httpx.post(f"http://{url}/v1/models/mnist-tiny:predict", json=body, headers={"X-Request-ID": "logged-2"})
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON
    access = {entry["request_id"]: entry for entry in entries if entry["logger"] == "app.access"}
    assert access["logged-1"] | {"latency_ms": 0} == access["logged-1"] | {
        "method": "POST",
        "route": "/predict",
        "status": 200,
        "model": "mnist/tiny",
        "version": 2,
        "images": 1,
        "latency_ms": 0,
    }
    assert access["logged-2"]["status"] == 415 and access["logged-2"]["route"] == "/v1/models/{name:model_name}:predict"
    assert any(entry["logger"].startswith("uvicorn") for entry in entries)  # the server's own lines too
    assert not [entry for entry in entries if entry["logger"] == "uvicorn.access"]  # one access line a request


def test_one_access_line_per_request_whatever_uvicorn_is_told(tiny_store: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with serve(tiny_store, stderr=str(log)) as (url, _):  # uvicorn's access log left on
        for _ in range(3):
            assert httpx.post(f"http://{url}/predict?model=tiny", files=upload(SEVEN)).status_code == 200
    lines = [line for line in log.read_text().splitlines() if "POST" in line]
    assert len(lines) == 3 and all(" app.access " in line for line in lines), lines
    assert base64.b64encode(SEVEN).decode()[:40] not in log.read_text()
