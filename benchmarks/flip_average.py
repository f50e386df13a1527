"""Test accuracy of a CIFAR-10 store version alone and with flip averaging.

Flip averaging (`python -m training train --flip-average`) serves the mean of the
probabilities of an image and of its mirror image. This measures what it would add to a
version exported without it, on the whole test set as the dataset has it:

    .venv/bin/python benchmarks/flip_average.py models_store/cifar10/vgg_bn/1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def probabilities(serve: object, images: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
    """float32 (N, classes) from a `serving_default` function, for float32 (N, H, W, C) images."""
    import tensorflow as tf

    batches = [serve(tf.constant(images[start : start + batch_size])) for start in range(0, len(images), batch_size)]
    return np.concatenate([next(iter(batch.values())).numpy() for batch in batches])


def main(argv: list[str] | None = None) -> int:
    import tensorflow as tf

    from training.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", type=Path, help="a store version folder, models_store/cifar10/<arch>/<version>")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args(argv)
    dataset = load_dataset("cifar10", args.data_dir)
    serve = tf.saved_model.load(str(args.version)).signatures["serving_default"]
    images = dataset.x_test.astype(np.float32) / 255.0
    alone = probabilities(serve, images)
    mirrored = probabilities(serve, images[:, :, ::-1])
    for name, values in (("alone", alone), ("mirror image", mirrored), ("flip average", (alone + mirrored) / 2)):
        print(f"{name:<14}{(values.argmax(axis=1) == dataset.y_test).mean():.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
