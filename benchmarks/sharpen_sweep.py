"""How much to sharpen a CIFAR-10 upload after shrinking it to 32 px, chosen on validation images.

`--count` images of the validation split that training holds out of the CIFAR-10 train set
(the last 10% after a shuffle with seed 42, as `training.runs.split_validation` does) are
re-saved as people upload them (`benchmarks/uploads.py`: 128 px JPEG, a wider "photo" JPEG,
a 64 px RGBA PNG), decoded as the service decodes them, preprocessed with
`preprocess_cifar` and each unsharp mask of the grid, and classified by each SavedModel
given (its `serving_default` signature, flip averaging included where it was exported).
It prints each model's accuracy on the images as the dataset has them, then one line per
setting; the best total is what a model's `sharpen` in metadata.json records.

    .venv/bin/python benchmarks/sharpen_sweep.py models_store/cifar10/airbench/2 models_store/cifar10/airbench/3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.inference.decoding import load_image, open_image  # noqa: E402
from app.inference.preprocessing import preprocess_cifar  # noqa: E402
from benchmarks.uploads import CIFAR_VARIANTS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="SavedModel folders of CIFAR-10 models")
    parser.add_argument("--count", type=int, default=2000, help="validation images (at most 5,000)")
    parser.add_argument("--radius", type=float, nargs="+", default=[0.5, 0.7], help="pixels")
    parser.add_argument("--percent", type=int, nargs="+", default=[25, 50, 75])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from training.datasets import load_dataset
    from training.runs import split_validation

    dataset = load_dataset("cifar10", args.data_dir)
    _, _, images, labels = split_validation(dataset.x_train, dataset.y_train, fraction=0.1, seed=42)
    images, labels = images[: args.count], labels[: args.count]
    signatures = {path.as_posix(): tf.saved_model.load(str(path)).signatures["serving_default"] for path in args.models}

    def accuracy(signature: object, inputs: np.ndarray) -> float:
        predicted = [
            next(iter(signature(tf.constant(inputs[start : start + 250])).values())).numpy().argmax(-1)  # type: ignore[operator]
            for start in range(0, len(inputs), 250)
        ]
        return float((np.concatenate(predicted) == labels).mean())

    for name, signature in signatures.items():
        print(f"{name}: {accuracy(signature, images.astype(np.float32) / 255.0):.1%} as the dataset has them")
    decoded = {
        variant: [load_image(open_image(encode(pixels)[0], max_pixels=1 << 24)) for pixels in images]
        for variant, encode in CIFAR_VARIANTS.items()
    }
    grid = [(0.0, 0)] + [(radius, percent) for radius in args.radius for percent in args.percent]
    for radius, percent in grid:
        sharpen = ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=0) if percent else None
        scores = [
            accuracy(signature, np.stack([preprocess_cifar(image, sharpen=sharpen) for image in uploads]))
            for uploads in decoded.values()
            for signature in signatures.values()
        ]
        cells = "  ".join(f"{score:.1%}" for score in scores)
        print(f"radius {radius:.1f} px, {percent:3d}%: total {sum(scores):.3f}  {cells}")
    print("columns:", ", ".join(f"{variant} x {name}" for variant in decoded for name in signatures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
