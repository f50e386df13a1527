r"""Test accuracy and CPU time per image of the store's models with float32 math and with
oneDNN's bfloat16 math mode (`ONEDNN_DEFAULT_FPMATH_MODE=BF16`), one process for each; or
under any two other environments (`--baseline` and `--candidate`).

A question for issue 17: on a CPU with AMX, oneDNN may run float32
convolutions and matrix products with bfloat16 inputs and float32 sums. How much cheaper is
the model, and what does it change in the answers? For each model (the newest version of
each `dataset/arch` given, or of every one in the store), a child process per math mode calls
the SavedModel's `serving_default` signature on the whole test set (images scaled to [0, 1],
as the metadata's test accuracy was measured) and times batches of 1, 4, 8 and 16 (process
CPU time per image, one intra-op thread as the service sets it on 2 cores). The parent
prints, per model: test accuracy in each mode, how many top-1 predictions differ, the
largest difference of a probability, and the CPU per image in each mode.

    .venv/bin/python benchmarks/fpmath.py --output benchmarks/results/fpmath.json
    .venv/bin/python benchmarks/fpmath.py mnist/custom2 mnist/mlp
    .venv/bin/python benchmarks/fpmath.py mnist/custom2 \\
        --baseline TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=0 --candidate TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = ("baseline", "candidate")
BATCH_SIZES = (1, 4, 8, 16)


def newest_versions(names: list[str]) -> list[Path]:
    """The newest version folder of each `dataset/arch` (every model of the store if none)."""
    store = ROOT / "models_store"
    if not names:
        names = sorted(f"{arch.parent.name}/{arch.name}" for arch in store.glob("*/*") if arch.is_dir())
    return [max((store / name).iterdir(), key=lambda path: int(path.name)) for name in names]


def _call(signature: Any, input_name: str, images: np.ndarray) -> np.ndarray:
    """The probabilities (N, classes) of the signature for float32 images (N, H, W, C)."""
    import tensorflow as tf

    return next(iter(signature(**{input_name: tf.constant(images)}).values())).numpy()


def child(folders: list[Path], data_dir: Path, scratch: Path) -> None:
    """Evaluate and time each model in this process's math mode; one JSON line per model.

    The probabilities of the test set go to `scratch/<dataset>_<arch>.npy` for the parent
    to compare (float32, (N, classes)).
    """
    import tensorflow as tf

    from training.datasets import load_dataset

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    datasets = {}
    for folder in folders:
        dataset_name = folder.parent.parent.name
        if dataset_name not in datasets:
            datasets[dataset_name] = load_dataset(dataset_name, data_dir)
        dataset = datasets[dataset_name]
        signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
        input_name = next(iter(signature.structured_input_signature[1]))
        call = partial(_call, signature, input_name)
        images = dataset.x_test.astype(np.float32) / 255.0
        probabilities = np.concatenate([call(images[start : start + 64]) for start in range(0, len(images), 64)])
        np.save(scratch / f"{dataset_name}_{folder.parent.name}.npy", probabilities)
        accuracy = float((probabilities.argmax(axis=1) == dataset.y_test).mean())
        cpu_per_image = {}
        for batch_size in BATCH_SIZES:
            batch = images[:batch_size]
            for _ in range(10):
                call(batch)
            repeats = max(20, 800 // batch_size)
            started = time.process_time()
            for _ in range(repeats):
                call(batch)
            cpu_per_image[batch_size] = round((time.process_time() - started) * 1e6 / repeats / batch_size, 1)
        record = {"model": f"{dataset_name}/{folder.parent.name}", "version": int(folder.name)}
        print(json.dumps({**record, "accuracy": accuracy, "cpu_us_per_image": cpu_per_image}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="dataset/arch of the store (default: all)")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--output", type=Path, help="write the comparison as JSON here")
    parser.add_argument("--baseline", nargs="*", default=["ONEDNN_DEFAULT_FPMATH_MODE=STRICT"], help="NAME=VALUE")
    parser.add_argument("--candidate", nargs="*", default=["ONEDNN_DEFAULT_FPMATH_MODE=BF16"], help="NAME=VALUE")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folders = newest_versions(args.models)
    if args.child:
        child(folders, args.data_dir, args.scratch)
        return 0
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in MODES:
            # oneDNN's math mode and TensorFlow's frozen weights are read once per process.
            settings = dict(item.split("=", 1) for item in getattr(args, mode))
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **settings}
            Path(scratch, mode).mkdir()
            command = [sys.executable, __file__, *args.models, "--data-dir", str(args.data_dir)]
            command += ["--child", mode, "--scratch", str(Path(scratch, mode))]
            lines = subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
            for line in lines.splitlines():
                record = json.loads(line)
                results.setdefault(record["model"], {})[mode] = {"environment": settings, **record}
        print(f"{' '.join(args.baseline)} -> {' '.join(args.candidate)}")
        print("model | accuracy | top-1 changed | largest probability difference | CPU us/image at batch 1/4/8/16")
        for model, modes in results.items():
            first, second = (np.load(Path(scratch, mode, model.replace("/", "_") + ".npy")) for mode in MODES)
            changed = int((first.argmax(axis=1) != second.argmax(axis=1)).sum())
            difference = float(np.abs(first - second).max())
            modes["comparison"] = {"top1_changed": changed, "test_images": len(first), "max_difference": difference}
            baseline, candidate = modes["baseline"], modes["candidate"]
            cpu = " ".join(
                f"{baseline['cpu_us_per_image'][str(b)]:.0f}->{candidate['cpu_us_per_image'][str(b)]:.0f}"
                for b in BATCH_SIZES
            )
            accuracy = f"{baseline['accuracy']:.4f} -> {candidate['accuracy']:.4f}"
            print(f"{model} | {accuracy} | {changed} of {len(first)} | {difference:.4f} | {cpu}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
