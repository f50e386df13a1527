"""Train one architecture on one dataset with its recipe, then evaluate it.

The MNIST article's recipe (the default `Recipe`): shuffle the training images with a
fixed seed, hold out 15% for validation, batch 32, Adam(1e-3), sparse categorical
cross-entropy, up to 20 epochs with ModelCheckpoint (best val_accuracy),
ReduceLROnPlateau(val_loss, factor 0.5, patience 4, min_lr 1e-4) and
EarlyStopping(val_accuracy, patience 6), then restore the best weights and evaluate on
the train, validation and test sets.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.airbench import train_airbench
from training.architectures import Recipe, build_model, with_flip_average
from training.datasets import Dataset
from training.handwriting import HandwritingAugmentation

logger = logging.getLogger(__name__)

QUICK_TRAIN_IMAGES = 512
MIRRORED_DATASETS = frozenset({"cifar10", "fashion_mnist"})
"""Datasets whose classes survive a left-right mirror: flipped by augmentation and `flip_average`.
A mirrored shoe or shirt is still a shoe or a shirt (the Fashion-MNIST benchmarks train with
flips); a mirrored digit is not a digit."""
QUICK_TEST_IMAGES = 256


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


class EpochStats(keras.callbacks.Callback):
    """Adds the epoch's wall time in seconds (`epoch_seconds`) and the learning rate at
    its end (`learning_rate`, also under a schedule) to the epoch logs.

    Placed before CSVLogger, so the per-epoch log line carries them too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start
            logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def read_epoch_log(path: Path) -> dict[str, list[float]]:
    """The per-epoch metrics CSVLogger wrote, as {metric: [value per epoch]}.

    Covers every epoch of a run, including those before a `--resume`.
    """
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = [key for key in (rows[0] if rows else {}) if key != "epoch"]
    return {key: [float(row[key]) for row in rows if row.get(key) not in (None, "")] for key in keys}


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


def load_initial_weights(model: keras.Model, source: Path) -> None:
    """Copy weights into `model` from a store version folder or a `.weights.h5` file.

    A SavedModel exported by `training.export` keeps the model's variables in the order of
    `model.variables` (`model_variables`; `variables` in versions written by `model.export()`),
    so they are matched by position; each pair must agree in shape and
    in the last part of the name (`kernel`, `bias`, `gamma`, ...). Layer names are not
    compared: Keras numbers them per process (`conv2d_2`).

    Raises:
        ValueError: The source's variables differ in number, shape or kind (another
            architecture, input shape or class count).
        OSError: The source cannot be read.
    """
    if source.suffix == ".h5":
        model.load_weights(source)
        return
    loaded = tf.saved_model.load(str(source))
    saved = list(getattr(loaded, "model_variables", None) or loaded.variables)
    if len(saved) != len(model.variables):
        raise ValueError(f"{source} has {len(saved)} variables, {model.name} has {len(model.variables)}")
    for variable, match in zip(model.variables, saved, strict=True):
        kind = match.name.removesuffix(":0").rsplit("/", 1)[-1]
        if kind != variable.name or tuple(match.shape) != tuple(variable.shape):
            raise ValueError(
                f"{source} does not fit {model.name}: {variable.path} {tuple(variable.shape)}"
                f" vs {match.name} {tuple(match.shape)}"
            )
        variable.assign(match)
    logger.info("initial weights: %d variables from %s", len(model.variables), source)


def make_augmentation(dataset_name: str, seed: int, kind: str = "standard") -> Callable[[tf.Tensor], tf.Tensor]:
    """A map of float32 (N, H, W, C) training batches in [0, 1] to augmented ones.

    `standard`: random shifts (10%) and rotations (about 8 degrees), and horizontal flips
    for `MIRRORED_DATASETS` only. `handwriting`: `HandwritingAugmentation` (digits);
    `uploads`: the same with a quarter of the images at low resolution.
    """
    if kind == "handwriting":
        return HandwritingAugmentation(seed)
    if kind == "uploads":
        return HandwritingAugmentation(seed, low_resolution_fraction=0.25)
    augmentation: list[keras.layers.Layer] = [
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
        keras.layers.RandomRotation(0.022, fill_mode="constant", seed=seed),
    ]
    if dataset_name in MIRRORED_DATASETS:
        augmentation.insert(0, keras.layers.RandomFlip("horizontal", seed=seed))
    sequential = keras.Sequential(augmentation, name="augmentation")
    return lambda images: sequential(images, training=True)


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
        data = data.map(
            lambda images, labels: (augmentation(images), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


def make_optimizer(recipe: Recipe, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam or SGD with the recipe's learning rate, or its exponential decay schedule.

    The exponential schedule is staircase: the rate is multiplied by `decay_rate` every
    `decay_epochs * steps_per_epoch` optimizer steps.
    """
    default_rate = 1e-3 if recipe.optimizer == "adam" else 1e-2
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = recipe.learning_rate or default_rate
    if recipe.lr_schedule == "exponential":
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            initial_learning_rate=learning_rate,
            decay_steps=max(1, int(recipe.decay_epochs * steps_per_epoch)),
            decay_rate=recipe.decay_rate,
            staircase=True,
        )
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=recipe.momentum)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def make_callbacks(recipe: Recipe, run_dir: Path, *, resume: bool) -> list[keras.callbacks.Callback]:
    """Checkpoint, schedule, early-stopping, backup and log callbacks of the recipe."""
    callbacks: list[keras.callbacks.Callback] = [
        EpochStats(),
        keras.callbacks.ModelCheckpoint(
            run_dir / "best.weights.h5",
            monitor="val_accuracy",
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.BackupAndRestore(run_dir / "backup"),
        keras.callbacks.CSVLogger(run_dir / "epochs.csv", append=resume),
    ]
    if recipe.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=4, min_lr=1e-4, verbose=1)
        )
    if recipe.early_stopping_patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=recipe.early_stopping_patience, verbose=1)
        )
    return callbacks


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


def train(dataset: Dataset, config: TrainConfig, *, callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Train `config.arch` on `dataset` with `config.recipe` and evaluate it.

    Args:
        dataset: The data (in quick mode, pass a small `Dataset.take()` of it).
        config: Architecture, recipe, seed, run folder and options.
        callbacks: Extra Keras callbacks, run after the recipe's.

    Returns:
        The model with its best weights and the metrics measured in this run.

    Raises:
        ValueError: Unknown architecture or a builder option it does not take; flip
            averaging asked for a dataset outside `MIRRORED_DATASETS`.
    """
    if config.flip_average and dataset.name not in MIRRORED_DATASETS:
        raise ValueError(f"flip averaging does not fit {dataset.name}: its mirrored images may change class")
    recipe = config.recipe
    if recipe.trainer == "airbench":
        return train_airbench(dataset, config)
    epochs = 1 if config.quick else recipe.epochs
    keras.utils.set_random_seed(config.seed)

    x_train, y_train, x_val, y_val = split_validation(
        dataset.x_train, dataset.y_train, fraction=recipe.validation_split, seed=config.validation_seed
    )
    augmentation = make_augmentation(dataset.name, config.seed, recipe.augmentation) if recipe.augment else None
    train_data = make_pipeline(
        x_train, y_train, batch_size=recipe.batch_size, shuffle_seed=config.seed, augmentation=augmentation
    )
    val_data = make_pipeline(x_val, y_val, batch_size=256)
    steps_per_epoch = -(-len(x_train) // recipe.batch_size)

    model = build_model(config.arch, dataset.input_shape, dataset.num_classes, **recipe.options)
    if config.initial_weights is not None:
        load_initial_weights(model, config.initial_weights)
    model.compile(
        optimizer=make_optimizer(recipe, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=config.steps_per_execution,
    )
    run_dir = config.run_dir
    if not config.resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        class_weight=config.class_weight,
        callbacks=[*make_callbacks(recipe, run_dir, resume=config.resume), *callbacks],
        verbose=1,
    )
    training_seconds = time.perf_counter() - started
    history = read_epoch_log(run_dir / "epochs.csv")
    epoch_seconds = history.pop("epoch_seconds", [])
    best_epoch = int(np.argmax(history["val_accuracy"])) if history.get("val_accuracy") else 0
    model.load_weights(run_dir / "best.weights.h5")
    if config.flip_average:
        model = with_flip_average(model)
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    splits = {
        "train": (x_train, y_train),
        "val": (x_val, y_val),
        "test": (dataset.x_test, dataset.y_test),
    }
    metrics, test_probabilities = evaluate_splits(model, splits)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return TrainResult(
        model=model,
        history=history,
        epoch_seconds=epoch_seconds,
        metrics=metrics,
        test_probabilities=test_probabilities,
        training_seconds=training_seconds,
        train_size=len(x_train),
        val_size=len(x_val),
        best_epoch=best_epoch + 1,
    )
