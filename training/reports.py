"""Training reports written beside each exported model: plots and per-class metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "confusion_matrix",
    "per_class_metrics",
    "plot_confusion_matrix",
    "plot_errors",
    "plot_history",
]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count matrix, int64 (classes, classes): row = true class index, column = predicted."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> list[dict[str, float | int | str]]:
    """Precision, recall and support of each class from a confusion matrix.

    A class never predicted (or never present) gets precision (or recall) 0.0.
    """
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    correct = np.diag(matrix)
    return [
        {
            "class_index": index,
            "class_name": name,
            "precision": float(correct[index] / predicted[index]) if predicted[index] else 0.0,
            "recall": float(correct[index] / actual[index]) if actual[index] else 0.0,
            "support": int(actual[index]),
        }
        for index, name in enumerate(class_names)
    ]


def plot_history(
    history: dict[str, list[float]],
    path: Path,
    *,
    title: str,
    earlier: Sequence[tuple[str, dict[str, list[float]]]] = (),
    label: str = "this run",
) -> None:
    """Accuracy and loss per epoch, training vs validation, side by side.

    Args:
        history: This run's per-epoch `accuracy`, `loss`, `val_accuracy`, `val_loss`.
        path: The PNG to write.
        title: The figure's title.
        earlier: (label, history) of the runs this one continued (a warm start), oldest
            first; drawn before this run's epochs, each run's start marked and labelled.
        label: This run's label when there are earlier runs, e.g. `v3`.
    """
    runs = [*earlier, (label, history)]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("accuracy", "loss"), strict=True):
        for key, curve in ((metric, "training"), (f"val_{metric}", "validation")):
            values = [value for _, run in runs for value in run.get(key, [])]
            if values:
                axis.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=curve)
        if earlier:
            start = 0
            for run_label, run in [*earlier, (label, history)]:
                axis.axvline(start + 0.5, color="gray", linestyle=":", linewidth=1)
                position = (start + 0.7, 0.98)
                axis.annotate(run_label, position, xycoords=("data", "axes fraction"), va="top", color="gray")
                start += len(run.get("loss", []))
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend(loc="center right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path, *, title: str) -> None:
    """The test-set confusion matrix as a heat map with counts in the cells."""
    size = max(5.0, 0.6 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        axis.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_errors(
    images: np.ndarray,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    *,
    title: str,
    limit: int = 16,
) -> int:
    """A grid of misclassified test images with true/predicted labels and probability bars.

    Args:
        images: uint8 (N, H, W, C) test images.
        y_true: int (N,) true class indices.
        probabilities: float (N, classes) model outputs.
        limit: Most errors shown, the most confident mistakes first.

    Returns:
        The number of misclassified images in the whole test set.
    """
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    shown = wrong[np.argsort(-probabilities[wrong, y_pred[wrong]])][:limit]
    columns = 4
    rows = max(1, -(-len(shown) // columns))
    figure, axes = plt.subplots(rows, 2 * columns, figsize=(4 * columns, 2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for slot, index in enumerate(shown):
        image_axis = axes[slot // columns, 2 * (slot % columns)]
        bars_axis = axes[slot // columns, 2 * (slot % columns) + 1]
        image = images[index]
        image_axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
        image_axis.set_title(f"true {class_names[y_true[index]]}\npred {class_names[y_pred[index]]}", fontsize=7)
        bars_axis.axis("on")
        colors = ["tab:gray"] * len(class_names)
        colors[y_pred[index]] = "tab:red"
        colors[y_true[index]] = "tab:green"
        bars_axis.barh(np.arange(len(class_names)), probabilities[index], color=colors)
        bars_axis.set_yticks(np.arange(len(class_names)), class_names, fontsize=5)
        bars_axis.set_xlim(0, 1)
        bars_axis.invert_yaxis()
        bars_axis.tick_params(axis="x", labelsize=5)
    if not len(shown):
        axes[0, 0].text(0, 0.5, "no misclassified test images", fontsize=10)
    figure.suptitle(f"{title}: {len(wrong)} of {len(y_true)} test images misclassified")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return len(wrong)
