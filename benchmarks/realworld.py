"""Accuracy on real-world uploads through the HTTP API, per kind of image.

Every file in a folder named `<label>_<kind>_<index>.<ext>` (label = class index) is
posted to `/predict`; the script prints the accuracy per kind and overall for
`preprocess=auto` (the model's procedure) and, with `--none`, `preprocess=none` (resize
only). The digit sets are `tests/data/realworld/digits/tune` (choices are made there) and
`.../test` (only reported), made by `tools/make_realworld_digits.py`.

    .venv/bin/python benchmarks/realworld.py --model custom2 --split test
    .venv/bin/python benchmarks/realworld.py --model mnist/lenet mnist/mlp --split test   # several, one table each
    .venv/bin/python benchmarks/realworld.py --model mnist --split tune --url http://127.0.0.1:8000
    .venv/bin/python benchmarks/realworld.py --model ensemble --version 2 --none

Without `--url` the real app runs in this process over the shipped store (httpx through
ASGI, the same requests and responses as over a socket).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "tests" / "data" / "realworld" / "digits"
DEFAULT_IMAGES = DIGITS / "test"
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@contextlib.contextmanager
def open_client(url: str | None, models_dir: Path) -> Iterator[httpx.Client]:
    """An httpx client to a live server at `url`, or to the app run in this process."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    if url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
        return
    sys.path.insert(0, str(ROOT))
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app

    app = create_app(Settings(models_dir=models_dir))
    with TestClient(app) as client:
        yield client


def evaluate(
    client: httpx.Client, images: Path, *, model: str, preprocess: str, version: int | None = None
) -> dict[str, tuple[int, int]]:
    """Post every image; return {kind: (correct, total)} plus an `all` entry.

    Raises:
        RuntimeError: A request did not answer 200.
    """
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in CONTENT_TYPES:
            continue
        label, kind = path.stem.split("_")[:2]
        files = {"image": (path.name, path.read_bytes(), CONTENT_TYPES[path.suffix.lower()])}
        params = {"model": model, "preprocess": preprocess} | ({"version": version} if version else {})
        response = client.post("/predict", params=params, files=files)
        if response.status_code != 200:
            raise RuntimeError(f"{path.name}: HTTP {response.status_code} {response.text}")
        correct = response.json()["class_index"] == int(label)
        for key in (kind, "all"):
            counts[key][0] += correct
            counts[key][1] += 1
    return {key: (value[0], value[1]) for key, value in counts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["custom2"], help="arch or dataset/arch, one or more")
    parser.add_argument("--version", type=int, help="a version label; default: the newest")
    parser.add_argument("--split", choices=("tune", "test"), default="test", help="which digit set")
    parser.add_argument("--images", type=Path, help="another folder of labelled images instead of --split")
    parser.add_argument("--none", action="store_true", help="also with preprocess=none")
    parser.add_argument("--url", help="a running server; default: the app in this process")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models_store")
    args = parser.parse_args(argv)
    images = args.images or DIGITS / args.split
    modes = ("auto", "none") if args.none else ("auto",)
    shown = images.relative_to(ROOT) if images.is_relative_to(ROOT) else images
    with open_client(args.url, args.models_dir) as client:
        for model in args.model:
            results = {
                mode: evaluate(client, images, model=model, preprocess=mode, version=args.version) for mode in modes
            }
            label = f"{model} v{args.version}" if args.version else model
            print(f"{label} on {shown}")
            print(f"{'kind':<10}{'images':>8}" + "".join(f"{'preprocess=' + mode:>18}" for mode in modes))
            for kind in sorted(results["auto"], key=lambda key: (key == "all", key)):
                total = results["auto"][kind][1]
                print(f"{kind:<10}{total:>8}" + "".join(f"{results[mode][kind][0] / total:>18.1%}" for mode in modes))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
