"""Soak: a mixed stream at c=32 for 10 minutes; no 5xx, flat memory, a steady p99.

The stream cycles through valid uploads for all three datasets (multipart, TF Serving b64
and v2 JSON), invalid inputs (text, a truncated JPEG, a wrong tensor) and large photos
(a 3000x2000 JPEG). wrk runs one minute at a time; after each minute the server's resident
memory is read. Memory growth is measured from the end of the first minute (warm-up).

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import mixed
from benchmarks.mixed import multipart, write_manifest
from benchmarks.run import ROOT, Server, rss_bytes


def _jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def build_requests(folder: Path) -> Path:
    """Write the bodies of the mixed stream and its manifest; return the manifest."""
    seven = (ROOT / "tests" / "data" / "7.png").read_bytes()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:2000, 0:3000]
    photo = _jpeg(np.stack([x * 255 // 3000, y * 255 // 2000, (x + y) * 255 // 5000], -1).astype(np.uint8))
    small_photo = _jpeg(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    shirt = _jpeg(np.pad(np.full((60, 40), 40, np.uint8), 20, constant_values=235))
    b64 = base64.b64encode(seven).decode()
    v2 = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [b64]}]}
    entries = [
        ("/predict?model=custom2", *multipart(seven, "image/png")),
        ("/predict?model=mlp", *multipart(seven, "image/png")),
        ("/predict?model=fashion_mnist/custom2", *multipart(shirt, "image/jpeg")),
        ("/predict?model=cifar10/vgg_bn", *multipart(small_photo, "image/jpeg")),
        ("/predict?model=cifar10/custom2", *multipart(photo, "image/jpeg")),
        ("/v1/models/mnist-custom2:predict", "application/json", json.dumps({"instances": [{"b64": b64}]}).encode()),
        ("/v2/models/mnist-lenet/infer", "application/json", json.dumps(v2).encode()),
        ("/predict?model=custom2", *multipart(b"hello, not an image\n", "text/plain")),
        ("/predict?model=custom2", *multipart(photo[: len(photo) // 3], "image/jpeg")),
        ("/v1/models/mnist-custom2:predict", "application/json", b'{"instances": [[1, 2, 3]]}'),
        ("/v2/models/mnist-custom2/infer", "application/json", b'{"inputs": [{"oops": 1}]}'),
        ("/predict?model=custom2", *multipart(seven, "image/png")),
    ]
    return write_manifest(entries, folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--seconds-per-minute", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "soak.json")
    args = parser.parse_args()
    server = Server("app.main:app", args.port, env={"LOG_LEVEL": "WARNING"})
    server.start("/readyz")
    minutes = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            manifest = build_requests(Path(folder))
            for number in range(1, args.minutes + 1):
                result = mixed.run(server.url, manifest, args.concurrency, args.seconds_per_minute)
                result["rss_mib"] = rss_bytes(server.process.pid) / 2**20  # type: ignore[union-attr]
                minutes.append(result)
                server_errors = sum(count for status, count in result["statuses"].items() if status.startswith("5"))
                print(
                    f"minute {number:>2}: {result['requests_per_second']:>6.0f} req/s p50 {result['p50_ms']:>6.1f} ms  "
                    f"p99 {result['p99_ms']:>6.1f} ms  statuses {result['statuses']}  5xx {server_errors}  "
                    f"socket errors {result['socket_errors']}  rss {result['rss_mib']:.0f} MiB",
                    flush=True,
                )
    finally:
        server.stop()
    warm = minutes[0]["rss_mib"]
    growth = (minutes[-1]["rss_mib"] - warm) / warm
    total_5xx = sum(
        count for item in minutes for status, count in item["statuses"].items() if str(status).startswith("5")
    )
    p99s = [item["p99_ms"] for item in minutes]
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "concurrency": args.concurrency,
        "minutes": minutes,
        "total_5xx": total_5xx,
        "rss_growth_after_warmup": growth,
        "p99_ms_min_max": [min(p99s), max(p99s)],
    }
    print(
        f"5xx: {total_5xx}; memory after the first minute {warm:.0f} -> {minutes[-1]['rss_mib']:.0f} MiB "
        f"({growth:+.1%}); p99 per minute {min(p99s):.1f}-{max(p99s):.1f} ms"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
