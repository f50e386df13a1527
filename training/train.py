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
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.airbench_train import train_airbench
from training.architectures import Recipe, build_model, with_flip_average
from training.datasets import Dataset
from training.handwriting import HandwritingAugmentation
from training.runs import MIRRORED_DATASETS, TrainConfig, TrainResult, evaluate_splits, make_pipeline, split_validation

logger = logging.getLogger(__name__)


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


def load_initial_weights(model: keras.Model, source: Path) -> None:
    """Copy weights into `model` from a store version folder or a `.weights.h5` file.

    A SavedModel exported by `training.export` keeps the model's variables in the order of
    `model.variables` (`model_variables`; `variables` in versions written by `model.export()`;
    in the oldest versions, only the serving signature's captured variables, in layer order),
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
    targets = list(model.variables)
    saved = list(getattr(loaded, "model_variables", None) or getattr(loaded, "variables", None) or [])
    if not saved:  # the serving graph captures the weights only, not dropout's random state
        saved = list(loaded.signatures["serving_default"].variables)
        targets = [variable for variable in targets if variable.name != "seed_generator_state"]
    if len(saved) != len(targets):
        raise ValueError(f"{source} has {len(saved)} variables, {model.name} has {len(targets)}")
    for variable, match in zip(targets, saved, strict=True):
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
    `uploads`: the same with a quarter of the images at low resolution; `flagged`: `uploads`
    with 40% of the ones given a flag (the batches' labels go to the augmentation too).
    """
    if kind == "handwriting":
        return HandwritingAugmentation(seed)
    if kind == "uploads":
        return HandwritingAugmentation(seed, low_resolution_fraction=0.25)
    if kind == "flagged":
        return HandwritingAugmentation(seed, low_resolution_fraction=0.25, flagged_ones=0.4)
    augmentation: list[keras.layers.Layer] = [
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
        keras.layers.RandomRotation(0.022, fill_mode="constant", seed=seed),
    ]
    if dataset_name in MIRRORED_DATASETS:
        augmentation.insert(0, keras.layers.RandomFlip("horizontal", seed=seed))
    sequential = keras.Sequential(augmentation, name="augmentation")
    return lambda images: sequential(images, training=True)


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
