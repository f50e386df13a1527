"""A wrk run over a list of prepared requests, counting the answers by status (`mixed.lua`).

Shared by the soak (`soak.py`) and the overload benchmark (`overload.py`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "mixed.lua"
BOUNDARY = "benchmarkboundary7MA4YWxkTrZu0gW"


def multipart(data: bytes, content_type: str) -> tuple[str, bytes]:
    """(content type, body) of a multipart upload with `data` as the `image` file."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="upload"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return f"multipart/form-data; boundary={BOUNDARY}", head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def write_manifest(entries: list[tuple[str, str, bytes]], folder: Path) -> Path:
    """Write each (path, content type, body) for `mixed.lua`; return the manifest file."""
    lines = []
    for number, (path, content_type, body) in enumerate(entries):
        body_file = folder / f"body-{number}"
        body_file.write_bytes(body)
        lines.append(f"{path}\t{content_type}\t{body_file}")
    manifest = folder / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run(base_url: str, manifest: Path, concurrency: int, seconds: float, *, delay_ms: float = 0.0) -> dict[str, Any]:
    """One wrk run cycling through the manifest; latency summary, answers per status, rate.

    Args:
        delay_ms: Pause of each connection before its next request (0: closed loop).
    """
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{round(seconds)}s", "--timeout", "10s", "-s", str(LUA), base_url]
    output = subprocess.run(
        [*command, "--", str(manifest), f"{delay_ms:.1f}"], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(next(line for line in output.splitlines() if line.startswith("JSON "))[5:])
    result["statuses"] = json.loads(next(line for line in output.splitlines() if line.startswith("STATUSES "))[9:])
    result["requests_per_second"] = result["requests"] / (result["duration_us"] / 1e6)
    return result
