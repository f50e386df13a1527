"""Ensembles as models: one SavedModel that answers the weighted mean of its members' probabilities.

`python -m training ensemble --dataset mnist --members custom2,custom4,custom5 [--search]`
loads the members' SavedModels from the store, scores them on the validation images none of
them trained on (with one split seed, `split_validation` holds out the last images of one
permutation, so a smaller fraction's images are held out by every larger one too: the
smallest fraction is used; different split seeds are refused, while networks initialised
from different seeds with `--split-seed` share their split), optionally searches the subsets
of the listed members for the most accurate on that split (never on the test set), and
exports the chosen ensemble as a store version with the same `serving_default` signature
(`images` -> `probabilities`) as any model, its metadata listing the members and its own
test accuracy and confusion matrix.
"""

from __future__ import annotations

import itertools
import json
import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from modelstore import INPUT_NAME, METADATA_FILE, OUTPUT_NAME, SIGNATURE_NAME, ModelMetadata, public_command
from modelstore.layout import next_version, staging_folder, version_folders
from training import reports
from training.datasets import Dataset
from training.runs import split_validation

__all__ = ["Member", "load_member", "make_ensemble", "search_members", "translate_average"]

logger = logging.getLogger(__name__)

BATCH = 500
"""Images per call when scoring members (bounded memory on the 10,000-image test sets)."""


@dataclass
class Member:
    """A member model: its store version, metadata and loaded SavedModel."""

    dataset: str
    arch: str
    version: int
    metadata: ModelMetadata
    saved_model: object
    weight: float = 1.0

    @property
    def name(self) -> str:
        """`arch:version`."""
        return f"{self.arch}:{self.version}"

    def probabilities(self, images: np.ndarray, *, translate: bool = False) -> np.ndarray:
        """float32 (N, classes) for uint8 (N, H, W, C) images, through the serving signature;
        with `translate`, averaged over translated views as `translate_average` does."""
        function = self.saved_model.signatures[SIGNATURE_NAME]  # type: ignore[attr-defined]
        rows = []
        for start in range(0, len(images), BATCH):
            batch = tf.constant(images[start : start + BATCH], tf.float32) / 255.0
            if translate:
                rows.append(translate_average(lambda views: function(**{INPUT_NAME: views})[OUTPUT_NAME], batch))
            else:
                rows.append(function(**{INPUT_NAME: batch})[OUTPUT_NAME])
        return np.concatenate([row.numpy() for row in rows])


def translate_average(model: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor) -> tf.Tensor:
    """airbench's second level of test-time augmentation (`infer_mirror_translate` in
    github.com/KellerJordan/cifar10-airbench): half the probabilities of the image, a
    quarter each of the image shifted one pixel up-left and one down-right (edges
    reflected). Three calls of `model`, float32 (N, H, W, C) -> (N, classes), in one batch.
    """
    count = tf.shape(images)[0]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    up_left, down_right = padded[:, :-2, :-2], padded[:, 2:, 2:]
    outputs = model(tf.concat([images, up_left, down_right], axis=0))
    return 0.5 * outputs[:count] + 0.25 * outputs[count : 2 * count] + 0.25 * outputs[2 * count :]


def load_member(store: Path, dataset: str, reference: str) -> Member:
    """Load `arch` (its newest version) or `arch:version` of `dataset` from the store.

    Raises:
        FileNotFoundError: No such model or version in the store.
    """
    arch, _, version = reference.partition(":")
    folders = {
        number: folder
        for found_dataset, found_arch, number, folder in version_folders(store)
        if (found_dataset, found_arch) == (dataset, arch)
    }
    if not folders:
        raise FileNotFoundError(f"no {dataset}/{arch} in {store}")
    number = int(version) if version else max(folders)
    if number not in folders:
        raise FileNotFoundError(f"{dataset}/{arch} has no version {number}; versions: {sorted(folders)}")
    folder = folders[number]
    metadata = ModelMetadata.model_validate_json((folder / METADATA_FILE).read_bytes())
    return Member(dataset, arch, number, metadata, tf.saved_model.load(str(folder)))


def _log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0))))


def search_members(
    probabilities: dict[str, np.ndarray], labels: np.ndarray, *, max_members: int
) -> tuple[list[str], float]:
    """The subset of members (2 to `max_members`, equal weights) most accurate on `labels`.

    Exhaustive: 2^n subsets of n candidates, each a mean of arrays already computed, so
    10 candidates take well under a second. Ties go to the lower log loss, then to fewer
    members (cheaper to serve).

    Args:
        probabilities: Member name to float32 (N, classes) on the validation images.
        labels: int (N,) class indices of those images.
        max_members: Largest ensemble tried.

    Returns:
        (chosen member names, their validation accuracy).
    """
    best: tuple[float, float, int] | None = None
    chosen: list[str] = []
    for size in range(2, min(max_members, len(probabilities)) + 1):
        for names in itertools.combinations(probabilities, size):
            mean = np.mean([probabilities[name] for name in names], axis=0)
            score = (float(np.mean(mean.argmax(axis=1) == labels)), -_log_loss(mean, labels), -size)
            if best is None or score > best:
                best, chosen = score, list(names)
    if best is None:
        raise ValueError("an ensemble needs at least two members")
    return chosen, best[0]


def save_ensemble(
    members: list[Member], input_shape: tuple[int, int, int], path: Path, *, translate: bool = False
) -> None:
    """Write the SavedModel of the weighted mean of the members' probabilities (each
    averaged over translated views with `translate`: `translate_average`).

    The signature takes `images`, float32 (N, H, W, C) in [0, 1], and returns
    `probabilities`, float32 (N, classes); the members' variables are saved with it, so
    the folder serves on its own (here, in TF Serving or KServe).
    """
    weights = np.array([member.weight for member in members], np.float32)
    weights = tf.constant(weights / weights.sum())
    module = tf.Module()
    module.members = [member.saved_model for member in members]
    spec = tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = []
        for saved_model in module.members:
            function = saved_model.signatures[SIGNATURE_NAME]

            def member(views: tf.Tensor, function: Any = function) -> tf.Tensor:
                return function(**{INPUT_NAME: views})[OUTPUT_NAME]

            outputs.append(translate_average(member, images) if translate else member(images))
        return {OUTPUT_NAME: tf.tensordot(weights, tf.stack(outputs), axes=1)}

    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={SIGNATURE_NAME: serve})


def _validation_images(dataset: Dataset, members: list[Member]) -> tuple[np.ndarray, np.ndarray, int, float]:
    """The validation images every member held out: (x_val, y_val, seed, fraction).

    Raises:
        ValueError: The members held out different images, or their metadata do not say which.
    """
    splits = {member.name: (member.metadata.validation_seed, (member.metadata.recipe or {}).get("validation_split"))
              for member in members}  # fmt: skip
    seeds = {seed for seed, _ in splits.values()}
    if len(seeds) != 1:
        raise ValueError(f"members held out different validation images (seed, fraction): {splits}")
    seed, fraction = seeds.pop(), min((f for _, f in splits.values() if f is not None), default=None)
    if seed is None or fraction is None or any(f is None for _, f in splits.values()):
        raise ValueError("the members' metadata do not record the validation split (seed, validation_split)")
    _, _, x_val, y_val = split_validation(dataset.x_train, dataset.y_train, fraction=fraction, seed=seed)
    return x_val, y_val, seed, fraction


def _chosen(
    members: list[Member],
    val: dict[str, np.ndarray],
    y_val: np.ndarray,
    *,
    search: bool,
    weights: list[float] | None,
    max_members: int,
) -> list[Member]:
    """The members to export, weighted: the subset `search_members` finds best on validation,
    or all of them with the given `weights`.

    Raises:
        ValueError: No subset beats its best member alone, or weights not matching the members.
    """
    if search:
        names, accuracy = search_members(val, y_val, max_members=max_members)
        logger.info("search on %d validation images chose %s (%.4f)", len(y_val), names, accuracy)
        single, single_accuracy = max(((name, np.mean(p.argmax(1) == y_val)) for name, p in val.items()),
                                      key=lambda item: item[1])  # fmt: skip
        if accuracy <= single_accuracy:
            raise ValueError(
                f"no ensemble of these members beats {single} alone on the validation split "
                f"({accuracy:.4f} vs {single_accuracy:.4f}); nothing exported"
            )
        return [member for member in members if member.name in names]
    if weights is not None:
        if len(weights) != len(members):
            raise ValueError(f"{len(weights)} weights for {len(members)} members")
        for member, weight in zip(members, weights, strict=True):
            member.weight = weight
    return members


def make_ensemble(
    dataset: Dataset,
    references: list[str],
    *,
    store_dir: Path,
    arch: str,
    weights: list[float] | None,
    search: bool,
    max_members: int,
    command: str,
    version: int | None = None,
    translate: bool = False,
) -> Path:
    """Choose (with `search`) and export an ensemble of store models; return its version folder.

    With `translate`, each member is averaged over translated views (`translate_average`),
    and one member is enough: a single network with airbench's test-time augmentation.

    Raises:
        ValueError: Fewer than two members (one with `translate`), weights not matching them, members whose
            validation splits come from different split seeds or are unrecorded (the search would
            see training images), or (with `search`) no subset more accurate on validation than its best
            member alone.
        FileNotFoundError: A member is not in the store.
    """
    members = [load_member(store_dir, dataset.name, reference) for reference in references]
    if len(members) < (1 if translate else 2):
        raise ValueError("an ensemble needs at least two members (or one with translated views)")
    x_val, y_val, seed, fraction = _validation_images(dataset, members)
    started = time.perf_counter()
    val = {member.name: member.probabilities(x_val, translate=translate) for member in members}
    for member in members:
        logger.info("%s: validation accuracy %.4f", member.name, np.mean(val[member.name].argmax(1) == y_val))
    members = _chosen(members, val, y_val, search=search, weights=weights, max_members=max_members)

    def mean(probabilities: dict[str, np.ndarray]) -> np.ndarray:
        rows = [probabilities[member.name] for member in members]
        return np.average(rows, axis=0, weights=[member.weight for member in members])

    val_mean = mean(val)
    test_mean = mean({member.name: member.probabilities(dataset.x_test, translate=translate) for member in members})
    seconds = time.perf_counter() - started
    metrics = {
        split: {"loss": _log_loss(probabilities, labels), "accuracy": float(np.mean(probabilities.argmax(1) == labels))}
        for split, probabilities, labels in (("val", val_mean, y_val), ("test", test_mean, dataset.y_test))
    }
    logger.info("ensemble %s: validation %.4f, test %.4f", [m.name for m in members], metrics["val"]["accuracy"],
                metrics["test"]["accuracy"])  # fmt: skip
    run = {"seconds": seconds, "seed": seed, "fraction": fraction, "val_size": len(y_val), "search": search,
           "references": references, "command": command}  # fmt: skip
    target = _export(dataset, members, test_mean, metrics, run, store_dir=store_dir, arch=arch, version=version,
                     translate=translate)  # fmt: skip
    print(json.dumps({"exported": str(target), **{k: round(v["accuracy"], 4) for k, v in metrics.items()}}))
    return target


def _export(
    dataset: Dataset,
    members: list[Member],
    test_mean: np.ndarray,
    metrics: dict[str, dict[str, float]],
    run: dict[str, Any],
    *,
    store_dir: Path,
    arch: str,
    version: int | None,
    translate: bool,
) -> Path:
    """Write the ensemble's SavedModel, reports and metadata through the staging folder."""
    total = sum(member.weight for member in members)
    version = version or next_version(store_dir, dataset.name, arch)
    target = store_dir / dataset.name / arch / str(version)
    staging = staging_folder(target)
    shutil.rmtree(staging, ignore_errors=True)
    save_ensemble(members, dataset.input_shape, staging, translate=translate)
    matrix = reports.confusion_matrix(dataset.y_test, test_mean.argmax(axis=1), dataset.num_classes)
    title = f"{dataset.name}/{arch} v{version}"
    reports.plot_confusion_matrix(matrix, dataset.class_names, staging / "confusion_matrix.png", title=title)
    reports.plot_errors(dataset.x_test, dataset.y_test, test_mean, dataset.class_names, staging / "errors.png",
                        title=title)  # fmt: skip
    views = ", each over 3 translated views" if translate else ""
    summary = [f"ensemble of {len(members)} (weighted mean of probabilities{views}):"]
    summary += [f"  {member.dataset}/{member.arch} v{member.version} weight {member.weight / total:.4f}"
                for member in members]  # fmt: skip
    (staging / "summary.txt").write_text("\n".join(summary) + "\n")
    # The members' inputs are the ensemble's: a setting chosen for all of them holds for it.
    sharpen = members[0].metadata.sharpen
    if any(member.metadata.sharpen != sharpen for member in members):
        sharpen = None
    metadata = ModelMetadata(**{
        "dataset": dataset.name,
        "arch": arch,
        "version": version,
        "class_names": list(dataset.class_names),
        "input_shape": list(dataset.input_shape),
        "preprocessing": dataset.preprocessing,
        "sharpen": sharpen,
        "test_time_augmentation": "translate_average" if translate else None,
        "members": [
            {"dataset": m.dataset, "arch": m.arch, "version": m.version, "weight": m.weight} for m in members
        ],
        "parameter_count": sum(member.metadata.parameter_count for member in members),
        "metrics": metrics,
        "val_size": run["val_size"],
        "test_size": len(dataset.y_test),
        "confusion_matrix": matrix.tolist(),
        "per_class": reports.per_class_metrics(matrix, dataset.class_names),
        "training_seconds": round(run["seconds"], 1),
        "seed": run["seed"],
        "recipe": {"ensemble": "weighted mean of probabilities", "search": run["search"],
                   "validation_split": run["fraction"], "candidates": run["references"], "translate": translate},
        "command": public_command(run["command"]),
        "data_source": Path(dataset.source).name if "/" in dataset.source else dataset.source,
        "data_sha256": dataset.sha256,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensorflow_version": tf.__version__,
        "machine": f"{platform.machine()}, {len(tf.config.list_physical_devices('GPU'))} GPU",
        "reports": ["confusion_matrix.png", "errors.png", "summary.txt"],
    })  # fmt: skip
    (staging / METADATA_FILE).write_text(metadata.model_dump_json(indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
