"""airbench's training loop (`training.airbench` has the network and the recipe), in
Keras on a CPU: custom because Keras's `fit` has no lookahead, per-variable learning rates
or biases frozen after N epochs. Follows `airbench/lib_airbench93.py` of
github.com/KellerJordan/cifar10-airbench (arXiv:2404.00498)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from training.airbench import AIRBENCH_RECIPE, whitening_kernel
from training.architectures import ARCHITECTURES, with_flip_average
from training.datasets import Dataset
from training.runs import MIRRORED_DATASETS, TrainConfig, TrainResult, evaluate_splits, make_pipeline, split_validation

__all__ = ["train_airbench", "triangle"]

logger = logging.getLogger(__name__)


def triangle(
    step: np.ndarray | float, total: int, *, start: float = 0.2, peak: float = 0.23, end: float = 0.07
) -> float:
    """airbench's learning-rate multiplier: linear from `start` to 1 at `peak` of the
    `total` steps, then linear to `end`."""
    peak_step = int(peak * total)
    return float(np.interp(step, [0, peak_step, total], [start, 1.0, end]))


class _Augmenter:
    """airbench's translate-and-alternating-flip augmentation of a uint8 training set
    (without the flips where `flip` is false: digits)."""

    def __init__(self, images: np.ndarray, *, translate: int, seed: int, flip: bool = True) -> None:
        self.rng = np.random.default_rng(seed)
        if flip:
            mirrored = self.rng.random(len(images)) < 0.5
            images = np.where(mirrored[:, None, None, None], images[:, :, ::-1], images)
        pad = ((0, 0), (translate, translate), (translate, translate), (0, 0))
        self.padded = np.pad(images, pad, mode="reflect")
        self.translate = translate
        self.flip = flip
        self.size = images.shape[1:3]

    def epoch(self, index: int) -> np.ndarray:
        """uint8 (N, H, W, C): every image shifted by up to `translate` pixels, and all of
        them mirrored on odd epochs if `flip`."""
        n = len(self.padded)
        height, width = self.size
        shifts = self.rng.integers(0, 2 * self.translate + 1, size=(n, 2))
        out = np.empty((n, height, width, self.padded.shape[-1]), dtype=self.padded.dtype)
        for dy in range(2 * self.translate + 1):
            for dx in range(2 * self.translate + 1):
                chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                out[chosen] = self.padded[chosen, dy : dy + height, dx : dx + width]
        return out[:, :, ::-1] if self.flip and index % 2 == 1 else out


@dataclass
class _Run:
    """One airbench run's state: the model, its data, the optimizer and its schedule."""

    model: keras.Model
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    batch_size: int
    epochs: int
    base_rate: float
    optimizer: keras.optimizers.SGD
    augmenter: _Augmenter
    rng: np.random.Generator
    step: int = 0
    lookahead: list[np.ndarray] | None = None
    steps: dict[bool, Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]] = field(default_factory=dict)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.x_train) // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def _set_up(dataset: Dataset, config: TrainConfig) -> _Run:
    """Split off the validation images, build the network (normalised with the training
    set's statistics, its first layer whitening their patches) and the optimizer."""
    hyp = AIRBENCH_RECIPE
    recipe = config.recipe
    epochs = 1 if config.quick else recipe.epochs
    keras.utils.set_random_seed(config.seed)
    x_train, y_train, x_val, y_val = split_validation(
        dataset.x_train, dataset.y_train, fraction=recipe.validation_split, seed=config.validation_seed
    )
    batch_size = min(recipe.batch_size, len(x_train))
    # The training set's statistics: CIFAR-10's are airbench's constants to 3 decimals.
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float32) / 255.0
    mean, std = tuple(pixels.mean(axis=0).tolist()), tuple(pixels.std(axis=0).tolist())
    model = ARCHITECTURES[config.arch].builder(dataset.input_shape, dataset.num_classes, mean=mean, std=std)

    normalize = model.get_layer("normalize")
    sample = normalize(x_train[:5000].astype(np.float32) / 255.0)
    whiten = model.get_layer("whiten")
    whiten.kernel.assign(whitening_kernel(sample))
    whiten.kernel.trainable = False

    # airbench's PyTorch loss is a sum over the batch; Keras's a mean, so the rate is
    # multiplied by the batch size. PyTorch's SGD adds the weight decay to the gradient,
    # where momentum amplifies it by 1 / (1 - momentum); Keras's decays the weights
    # directly, so it is divided by (1 - momentum) to decay as much.
    kilostep_scale = 1024 * (1 + 1 / (1 - hyp.momentum))
    base_rate = hyp.learning_rate / kilostep_scale * batch_size
    decay = hyp.weight_decay * batch_size / kilostep_scale / (1 - hyp.momentum)
    total_steps = len(x_train) // batch_size * epochs
    optimizer = keras.optimizers.SGD(
        learning_rate=base_rate * triangle(0, total_steps),
        momentum=hyp.momentum,
        nesterov=True,
        weight_decay=decay / base_rate,
    )
    augmenter = _Augmenter(x_train, translate=hyp.translate, seed=config.seed, flip=dataset.name in MIRRORED_DATASETS)
    return _Run(
        model, x_train, y_train, x_val, y_val, batch_size, epochs, base_rate, optimizer, augmenter,
        np.random.default_rng(config.seed),
    )  # fmt: skip


def _train_step(run: _Run, num_classes: int) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """A compiled step over the model's trainable variables of the moment (the whitening
    bias is one of them for the first epochs only): (loss, batch accuracy)."""
    hyp = AIRBENCH_RECIPE
    model, optimizer = run.model, run.optimizer
    variables = list(model.trainable_variables)
    scales = [hyp.bias_scaler if variable.path.endswith("beta") else 1.0 for variable in variables]
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=hyp.label_smoothing)

    @tf.function
    def train_step(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            loss = loss_fn(tf.one_hot(labels, num_classes), probabilities)
        gradients = tape.gradient(loss, variables)
        optimizer.apply([gradient * scale for gradient, scale in zip(gradients, scales, strict=True)], variables)
        predicted = tf.argmax(probabilities, -1, output_type=labels.dtype)
        return loss, tf.reduce_mean(tf.cast(predicted == labels, tf.float32))

    return train_step


def _epoch(run: _Run, epoch: int, num_classes: int) -> tuple[float, float]:
    """One pass over the augmented training set, with the schedule and the lookahead;
    (the last batch's loss, its accuracy)."""
    hyp = AIRBENCH_RECIPE
    whiten = run.model.get_layer("whiten")
    whiten.bias.trainable = epoch < hyp.whiten_bias_epochs
    if whiten.bias.trainable not in run.steps:
        run.steps[whiten.bias.trainable] = _train_step(run, num_classes)
    train_step = run.steps[whiten.bias.trainable]
    images = run.augmenter.epoch(epoch)
    order = run.rng.permutation(len(images))
    loss = accuracy = tf.constant(0.0)
    for index in range(run.steps_per_epoch):
        batch = order[index * run.batch_size : (index + 1) * run.batch_size]
        run.optimizer.learning_rate = run.base_rate * triangle(run.step, run.total_steps)
        loss, accuracy = train_step(
            tf.constant(images[batch], dtype=tf.float32) / 255.0, tf.constant(run.y_train[batch])
        )
        run.step += 1
        if epoch >= hyp.lookahead_from_epoch and run.step % hyp.lookahead_every == 0:
            run.lookahead = _lookahead(run.model, run.lookahead, decay=0.95**5 * (run.step / run.total_steps) ** 3)
    if run.lookahead is not None:
        run.lookahead = _lookahead(run.model, run.lookahead, decay=1.0)
    return float(loss), float(accuracy)


def train_airbench(dataset: Dataset, config: TrainConfig) -> TrainResult:
    """Train `config.arch` (`airbench` or `airbench94`) on `dataset` with airbench's recipe.

    The recipe's `epochs` and `validation_split` apply; its optimizer fields do not
    (airbench's own are in `AIRBENCH_RECIPE`). The last weights are kept (the schedule ends
    low; there is no early stopping), then wrapped by `with_flip_average` if the config asks
    for it (`--flip-average`).

    Returns:
        A `TrainResult` like `training.train.train`'s, `epoch_seconds` per epoch and the
        history's `loss`, `accuracy` (last batch) and `val_accuracy` per epoch.
    """
    run = _set_up(dataset, config)
    val_data = make_pipeline(run.x_val, run.y_val, batch_size=1000)
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_accuracy": [], "learning_rate": []}
    epoch_seconds: list[float] = []
    started = time.perf_counter()
    for epoch in range(run.epochs):
        epoch_started = time.perf_counter()
        loss, accuracy = _epoch(run, epoch, dataset.num_classes)
        epoch_seconds.append(round(time.perf_counter() - epoch_started, 2))
        val_accuracy = _accuracy(run.model, val_data)
        learning_rate = float(run.optimizer.learning_rate.numpy())
        for key, value in (("loss", loss), ("accuracy", accuracy), ("val_accuracy", val_accuracy),
                           ("learning_rate", learning_rate)):  # fmt: skip
            history[key].append(value)
        logger.info(
            "epoch %d/%d: %.1f s, loss %.4f, val_accuracy %.4f",
            epoch + 1,
            run.epochs,
            epoch_seconds[-1],
            loss,
            val_accuracy,
        )
    training_seconds = time.perf_counter() - started
    return _evaluated(run, dataset, config, history, epoch_seconds, training_seconds)


def _evaluated(
    run: _Run,
    dataset: Dataset,
    config: TrainConfig,
    history: dict[str, list[float]],
    epoch_seconds: list[float],
    training_seconds: float,
) -> TrainResult:
    """The trained model (flip-averaged if asked) evaluated on every split."""
    model = with_flip_average(run.model) if config.flip_average else run.model
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    splits = {
        "train": (run.x_train, run.y_train),
        "val": (run.x_val, run.y_val),
        "test": (dataset.x_test, dataset.y_test),
    }
    metrics, test_probabilities = evaluate_splits(model, splits, batch_size=500)
    return TrainResult(
        model=model,
        history=history,
        epoch_seconds=epoch_seconds,
        metrics=metrics,
        test_probabilities=test_probabilities,
        training_seconds=training_seconds,
        train_size=len(run.x_train),
        val_size=len(run.x_val),
        best_epoch=run.epochs,
    )


def _lookahead(model: keras.Model, average: list[np.ndarray] | None, *, decay: float) -> list[np.ndarray]:
    """Move the exponential moving average of every weight (batch-norm statistics too)
    towards the current weights by `1 - decay`, then set the weights to it (airbench's
    `LookaheadState`). The first call only starts the average."""
    weights = [variable.numpy() for variable in model.weights]
    if average is None:
        return weights
    average = [kept + (1.0 - decay) * (current - kept) for kept, current in zip(average, weights, strict=True)]
    for variable, value in zip(model.weights, average, strict=True):
        variable.assign(value)
    return average


def _accuracy(model: keras.Model, data: tf.data.Dataset) -> float:
    """Accuracy of `model` on `data`, without test-time augmentation (the per-epoch validation)."""
    correct = total = 0
    for images, labels in data:
        predicted = np.argmax(model(images, training=False), axis=-1)
        correct += int((predicted == labels.numpy()).sum())
        total += len(labels)
    return correct / max(total, 1)
