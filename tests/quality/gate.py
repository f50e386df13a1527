"""The accuracy regression gate: accuracy per kind of upload, against floors recorded in
`floors.json` next to this file.

Each entry is a model (as `/predict` names it) on a set of uploads:

- `digits`: the test split of the real-world digits (`tests/data/realworld/digits/test`,
  kinds from `tools/make_realworld_digits.py`); no choice of preprocessing or model was made
  on it, so its figures are the ones reported in docs/models.md.
- `uploads`: `COUNT` test images of Fashion-MNIST or CIFAR-10 re-saved as people upload
  them (`benchmarks/uploads.py`'s variants), each variant a kind, and `dataset_as_is`.

A change fails the gate when a kind drops more than `KIND_DROP` below its floor or the
whole set more than `TOTAL_DROP` (fractions). After a change that moves a figure on
purpose, measure and record the new floors, and say why in the commit:

    .venv/bin/python -m tests.quality.gate --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FLOORS = Path(__file__).with_name("floors.json")
KIND_DROP = 0.02
TOTAL_DROP = 0.01
COUNT = 300
"""Test images of each upload set (seed 0 of `benchmarks.uploads.load_test_images`)."""

ENTRIES: dict[str, dict[str, str]] = {
    "mnist (default) on real-world digits": {"model": "mnist", "set": "digits"},
    "mnist/custom2 on real-world digits": {"model": "mnist/custom2", "set": "digits"},
    "fashion_mnist (default) on uploads": {"model": "fashion_mnist", "set": "uploads", "dataset": "fashion_mnist"},
    "cifar10 (default) on uploads": {"model": "cifar10", "set": "uploads", "dataset": "cifar10"},
}
"""Every gated model and set, by the name its floors are recorded under."""


def measure(client: Any, entry: dict[str, str], data_dir: Path) -> dict[str, float]:
    """Accuracy (fraction) per kind of `entry`'s set, plus `all` for the whole set.

    Args:
        client: An httpx-compatible client of the app (a `TestClient` or `httpx.Client`).
        entry: One of `ENTRIES`.
        data_dir: The offline datasets (for the `uploads` sets).

    Raises:
        RuntimeError: A request did not answer 200.
    """
    from benchmarks.realworld import DEFAULT_IMAGES, evaluate
    from benchmarks.uploads import CIFAR_VARIANTS, FASHION_VARIANTS, load_test_images, score

    if entry["set"] == "digits":
        counts = evaluate(client, DEFAULT_IMAGES, model=entry["model"], preprocess="auto")
        return {kind: correct / total for kind, (correct, total) in counts.items()}
    variants = FASHION_VARIANTS if entry["dataset"] == "fashion_mnist" else CIFAR_VARIANTS
    images, labels = load_test_images(entry["dataset"], data_dir, COUNT)
    results = score(client, entry["model"], images, labels, variants)
    uploads = [value for name, value in results.items() if name != "dataset_as_is"]
    return results | {"all": sum(uploads) / len(uploads)}


def regressions(floors: dict[str, float], measured: dict[str, float]) -> list[str]:
    """The kinds (and `all`) that fell below their floors by more than the allowed drop."""
    failed = []
    for kind, floor in floors.items():
        allowed = TOTAL_DROP if kind == "all" else KIND_DROP
        if measured.get(kind, 0.0) < floor - allowed - 1e-9:
            failed.append(kind)
    return failed


def table(floors: dict[str, float], measured: dict[str, float]) -> str:
    """A text table of floor, measured and change in points for every kind."""
    lines = [f"{'kind':<20}{'floor':>8}{'now':>8}{'points':>8}"]
    for kind in sorted(set(floors) | set(measured), key=lambda key: (key == "all", key)):
        floor, now = floors.get(kind, float("nan")), measured.get(kind, float("nan"))
        lines.append(f"{kind:<20}{floor:>8.1%}{now:>8.1%}{100 * (now - floor):>+8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the gated accuracies; --write records them as floors.")
    parser.add_argument("--write", action="store_true", help=f"write the measured figures to {FLOORS.name}")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.realworld import open_client

    floors = json.loads(FLOORS.read_text()) if FLOORS.exists() else {}
    measured = {}
    with open_client(None, ROOT / "models_store") as client:
        for name, entry in ENTRIES.items():
            measured[name] = {kind: round(value, 4) for kind, value in measure(client, entry, args.data_dir).items()}
            print(f"{name}\n{table(floors.get(name, {}), measured[name])}\n")
    if args.write:
        FLOORS.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
        print(f"wrote {FLOORS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
