"""Cost of explanations: `/explain` answers per second at c=1 and c=4 for a model, and
`/predict` throughput with and without explanations running beside it, on a running server.

    HOST=127.0.0.1 bash scripts/serve.sh &
    .venv/bin/python benchmarks/explain_cost.py --models custom2 cifar10/airbench --seconds 20

The explanations post `tests/data/7.png` (digits) or a 32x32 colour photo (CIFAR-10) with
httpx from threads; `/predict` is loaded by wrk at `--predict-concurrency` connections with
the 28x28 PNG (`benchmarks/multipart.lua`), first alone, then while `--beside` clients keep
asking for explanations. Prints one line per measurement and writes `runs/explain_cost.json`.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DIGIT = ROOT / "tests" / "data" / "7.png"
LUA = ROOT / "benchmarks" / "multipart.lua"


def _photo() -> bytes:
    """A 32x32 colour photo-like JPEG (a grey hull on a blue sky)."""
    pixels = np.zeros((32, 32, 3), np.uint8) + np.array([90, 140, 230], np.uint8)
    pixels[20:26, 4:28] = (110, 110, 115)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def explanations(url: str, model: str, clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads asking for explanations for `seconds`: answers per second, p50/p99 ms."""
    body = DIGIT.read_bytes() if not model.startswith("cifar10") else _photo()
    latencies: list[float] = []
    failures = [0]
    stop = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=120) as session:
            while time.monotonic() < stop:
                started = time.perf_counter()
                answer = session.post(f"{url}/explain", params={"model": model}, files={"image": ("x", body)})
                if answer.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[0] += 1
                    time.sleep(float(answer.headers.get("retry-after", "1")) / 10)  # refused: back off

    with httpx.Client(timeout=120) as warm:  # the first explanation of a model traces its gradient
        warm.post(f"{url}/explain", params={"model": model}, files={"image": ("x", body)})
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    values = np.asarray(latencies) * 1000
    return {
        "per_second": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(values, 50)) if len(values) else 0.0,
        "p99_ms": float(np.percentile(values, 99)) if len(values) else 0.0,
        "refused": failures[0],
    }


def predict_throughput(url: str, concurrency: int, seconds: float) -> float:
    """wrk's requests per second on `/predict?model=custom2` with the 28x28 PNG."""
    output = subprocess.run(
        ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{seconds:g}s", "-s", str(LUA),
         f"{url}/predict?model=custom2", "--", str(DIGIT)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(line for line in output.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
    parser.add_argument("--models", nargs="+", default=["custom2", "cifar10/airbench"], help="models to explain")
    parser.add_argument("--seconds", type=float, default=20, help="seconds per measurement")
    parser.add_argument("--predict-concurrency", type=int, default=16, help="wrk connections on /predict")
    parser.add_argument("--beside", type=int, default=2, help="clients asking for explanations beside /predict")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "explain_cost.json", help="results file")
    args = parser.parse_args()
    results: dict[str, object] = {}
    for model in args.models:
        for clients in (1, 4):
            measured = explanations(args.url, model, clients, args.seconds)
            results[f"{model} c={clients}"] = measured
            rate, p50, p99 = measured["per_second"], measured["p50_ms"], measured["p99_ms"]
            print(f"{model:<20} c={clients}  {rate:6.2f} explanations/s  p50 {p50:7.0f} ms  p99 {p99:7.0f} ms  "
                  f"refused {measured['refused']}")  # fmt: skip
    alone = predict_throughput(args.url, args.predict_concurrency, args.seconds)
    beside: dict[str, float] = {}
    thread = threading.Thread(
        target=lambda: beside.update(explanations(args.url, args.models[0], args.beside, args.seconds + 4))
    )
    thread.start()
    time.sleep(2)
    during = predict_throughput(args.url, args.predict_concurrency, args.seconds)
    thread.join()
    results["predict"] = {"alone": alone, "beside_explanations": during, "explanations_beside": beside}
    print(f"/predict custom2 c={args.predict_concurrency}: {alone:,.0f} req/s alone, {during:,.0f} with {args.beside} "
          f"clients explaining {args.models[0]} beside ({during / alone:.2f}); {beside.get('per_second', 0):.2f} "
          "explanations/s meanwhile")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
