"""What a training run is and the steps every trainer shares: its configuration and
result, the validation split, the input pipeline and the evaluation. A leaf of the
package: `training.train` (Keras `fit`) and `training.airbench_train` (airbench's loop)
both import it, and it imports neither."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    from training.architectures import Recipe

__all__ = [
    "MIRRORED_DATASETS",
    "QUICK_TEST_IMAGES",
    "QUICK_TRAIN_IMAGES",
    "TrainConfig",
    "TrainResult",
    "evaluate_splits",
    "make_pipeline",
    "split_validation",
]

logger = logging.getLogger(__name__)

QUICK_TRAIN_IMAGES = 512
"""Training images of a `--quick` run (tests)."""
QUICK_TEST_IMAGES = 256
"""Test images of a `--quick` run."""
MIRRORED_DATASETS = frozenset({"cifar10", "fashion_mnist"})
"""Datasets whose classes survive a left-right mirror: flipped by augmentation and, in both
trainers, averaged over at test time by `--flip-average`. A mirrored shoe or shirt is still
a shoe or a shirt (the Fashion-MNIST benchmarks train with flips); a mirrored digit is not
a digit."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs besides the data.

    Attributes:
        arch: Architecture name, a key of `training.architectures.ARCHITECTURES`.
        recipe: The recipe, the architecture's default with command-line overrides.
        seed: Seed for the shuffle, the validation split, weight init and dropout.
        name: The store name (`<dataset>/<name>/<version>`) when it must differ from
            `arch`: a second network of one architecture that is not a new release of the
            first (an ensemble member from another seed). None: `arch`.
        split_seed: Seed for the validation split alone, when it must differ from `seed`:
            networks trained from several seeds on the same held-out images, so that
            an ensemble of them can be chosen on those images. None: `seed`.
        run_dir: Folder for checkpoints, the backup used by `resume` and the epoch log.
        resume: Continue from the last epoch backed up in `run_dir` instead of starting over.
        class_weight: Class index -> loss weight, or None for equal weights.
        steps_per_execution: Training steps run per call into the TensorFlow graph.
        quick: Train for one epoch (tests; the CLI also takes 512 train / 256 test images).
        initial_weights: Start from these weights instead of a random initialisation: a
            SavedModel version folder of the same architecture and input shape (for
            example `models_store/cifar10/custom2/1`) or a Keras `.weights.h5` file.
        flip_average: Evaluate and export the model wrapped by
            `training.architectures.with_flip_average` (test-time augmentation with
            horizontal flips); only for `MIRRORED_DATASETS`.
    """

    arch: str
    recipe: Recipe
    seed: int = 42
    split_seed: int | None = None
    name: str | None = None
    run_dir: Path = Path("runs/default")
    resume: bool = False
    class_weight: dict[int, float] | None = None
    steps_per_execution: int = 1
    quick: bool = False
    initial_weights: Path | None = None
    flip_average: bool = False

    @property
    def store_name(self) -> str:
        """The model's folder in the store: `name`, or `arch` when it is None."""
        return self.name or self.arch

    @property
    def validation_seed(self) -> int:
        """The seed of the validation split: `split_seed`, or `seed` when it is None."""
        return self.seed if self.split_seed is None else self.split_seed


@dataclass
class TrainResult:
    """A trained model and what its run measured.

    Attributes:
        model: The Keras model with the best weights (by val_accuracy) restored, wrapped
            by `with_flip_average` if the config asks for it.
        history: Per-epoch metrics as Keras records them (`loss`, `accuracy`,
            `val_loss`, `val_accuracy`, `learning_rate`), one float per epoch.
        epoch_seconds: Wall time of each epoch in seconds.
        metrics: `{split: {"loss": float, "accuracy": float}}` for train, val and test.
        test_probabilities: float32 (N_test, classes) softmax outputs on the test set.
        training_seconds: Wall time of `fit` in this process, in seconds (after a resume,
            only the resumed part; `epoch_seconds` covers every epoch).
        train_size: Images used for training (after the validation split).
        val_size: Images held out for validation.
    """

    model: keras.Model
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    metrics: dict[str, dict[str, float]]
    test_probabilities: np.ndarray
    training_seconds: float
    train_size: int
    val_size: int
    best_epoch: int = field(default=0)


def split_validation(
    x: np.ndarray, y: np.ndarray, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with a fixed seed and hold out the last `fraction` for validation.

    Returns:
        (x_train, y_train, x_val, y_val); the validation set has round(N * fraction) images.
    """
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = round(len(x) * fraction)
    train_idx, val_idx = order[: len(x) - n_val], order[len(x) - n_val :]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def make_pipeline(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    shuffle_seed: int | None = None,
    augmentation: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 1], int64 labels) for `fit` and `evaluate`.

    Args:
        x: uint8 (N, H, W, C) images.
        y: int64 (N,) class indices.
        batch_size: Images per batch.
        shuffle_seed: Reshuffle every epoch with this seed; None keeps the order.
        augmentation: Applied to training batches only.
    """
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        data = data.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(
        lambda images, labels: (tf.cast(images, tf.float32) / 255.0, labels),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augmentation is not None:
        # A label-aware augmentation (`HandwritingAugmentation(flagged_ones=...)`) takes the labels too.
        with_labels = getattr(augmentation, "uses_labels", False)
        data = data.map(
            lambda images, labels: (augmentation(images, labels) if with_labels else augmentation(images), labels),  # type: ignore[call-arg]
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


def evaluate_splits(
    model: keras.Model, splits: dict[str, tuple[np.ndarray, np.ndarray]], *, batch_size: int = 256
) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """Loss and accuracy of a compiled model on each split, and its test probabilities.

    Args:
        model: Compiled with a loss and the `accuracy` metric.
        splits: Split name -> (uint8 (N, H, W, C) images, int64 (N,) class indices);
            must include `test`.
        batch_size: Images per evaluation batch.

    Returns:
        `{split: {"loss": float, "accuracy": float}}` and float32 (N_test, classes)
        probabilities on the test split.
    """
    metrics = {}
    for split, (x, y) in splits.items():
        loss, accuracy = model.evaluate(make_pipeline(x, y, batch_size=batch_size), verbose=0)
        metrics[split] = {"loss": float(loss), "accuracy": float(accuracy)}
        logger.info("%s: loss %.4f accuracy %.4f", split, loss, accuracy)
    x_test, y_test = splits["test"]
    probabilities = model.predict(make_pipeline(x_test, y_test, batch_size=batch_size), verbose=0)
    return metrics, np.asarray(probabilities, dtype=np.float32)
