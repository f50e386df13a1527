"""Do the explanations mean something? The model-randomisation test of Adebayo et al. (2018,
"Sanity Checks for Saliency Maps", arXiv:1810.03292) on MNIST test digits:

    .venv/bin/python benchmarks/explain_sanity.py [--model custom2] [--digits 100]

For each digit (`tests/data/mnist_test`), the integrated-gradients map of its true class
from the served SavedModel is compared with the map of the same architecture freshly
initialised (`training.architectures.build_model`, seed 0) and with the trained model's map
of another class: Spearman rank correlation of the signed maps and of their magnitudes.
Also the share of the positive attribution on the strokes (pixels above 0.3). Prints the
medians and ranges; `tests/service/test_explain.py` asserts the same on 20 digits.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def spearman(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties broken by position)."""
    ranks = [np.argsort(np.argsort(values.ravel())) for values in (first, second)]
    return float(np.corrcoef(*ranks)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="custom2", help="an MNIST architecture in the store (version 1)")
    parser.add_argument("--digits", type=int, default=100, help="MNIST test digits to explain")
    args = parser.parse_args()

    import keras

    from app.config import Settings
    from app.inference.decoding import load_image, open_image
    from app.inference.explain import explain
    from app.inference.model import ServedModel
    from app.inference.preprocessing import preprocess
    from training.architectures import build_model

    settings = Settings()
    folder = ROOT / "models_store" / "mnist" / args.model / "1"
    trained = ServedModel.load(folder, batching=settings.batching, limits=settings.input_limits, warm_up=False)
    keras.utils.set_random_seed(0)
    network = build_model(trained.metadata.architecture or args.model, (28, 28, 1), 10)
    random = SimpleNamespace(
        function=lambda images: {"probabilities": network(images, training=False)},
        metadata=SimpleNamespace(input_name="images", output_name="probabilities"),
        predict_batch=lambda batch: np.asarray(network(batch, training=False)),
    )
    found: dict[str, list[float]] = {
        key: [] for key in ("signed", "magnitude", "other class", "on strokes", "random on strokes")
    }
    for path in sorted((ROOT / "tests" / "data" / "mnist_test").glob("*.png"))[: args.digits]:
        image = preprocess(load_image(open_image(path.read_bytes(), max_pixels=10**6)), "mnist", (28, 28, 1))
        label = int(path.stem.split("_")[1])
        mine = explain(trained, image, label).attribution
        theirs = explain(random, image, label).attribution
        found["signed"].append(spearman(mine, theirs))
        found["magnitude"].append(spearman(np.abs(mine), np.abs(theirs)))
        found["other class"].append(spearman(mine, explain(trained, image, (label + 1) % 10).attribution))
        strokes = image[..., 0] > 0.3
        for key, attribution in (("on strokes", mine), ("random on strokes", theirs)):
            positive = np.clip(attribution, 0, None)
            found[key].append(float(positive[strokes].sum() / max(positive.sum(), 1e-12)))
    print(f"{args.model}, {len(found['signed'])} MNIST test digits, integrated gradients (black and blurred baselines)")
    names = {
        "signed": "Spearman, trained vs random weights, signed maps",
        "magnitude": "Spearman, trained vs random weights, |maps|",
        "other class": "Spearman, true class vs the next class, signed",
        "on strokes": "positive attribution on the strokes, trained",
        "random on strokes": "positive attribution on the strokes, random weights",
    }
    for key, values in found.items():
        print(f"  {names[key]:<55} median {np.median(values):6.3f}  range {min(values):6.3f} to {max(values):6.3f}")


if __name__ == "__main__":
    main()
