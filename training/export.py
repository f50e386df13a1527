"""Export a trained model to the store as a SavedModel with its metadata and reports.

Layout: `<store>/<dataset>/<arch>/<version>/` holds the SavedModel (`saved_model.pb`,
`variables/`, a `serving_default` signature, as TensorFlow Serving loads it), and beside
it `metadata.json`, `history.png`, `confusion_matrix.png`, `errors.png`, `summary.txt`
(the architecture) and `epochs.csv` (one line per epoch).
`metadata.json` is the contract with the service, which never imports this package.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from modelstore import INPUT_NAME, METADATA_FILE, OUTPUT_NAME, SIGNATURE_NAME, ModelMetadata, public_command
from modelstore.layout import next_version, staging_folder
from training import reports
from training.config import PROJECT_ROOT
from training.datasets import Dataset
from training.runs import TrainConfig, TrainResult
from training.store import warm_start_chain

__all__ = ["draw_reports", "export_model", "git_commit", "next_version", "save_serving_model"]

REPORT_FILES = ("history.png", "confusion_matrix.png", "errors.png", "summary.txt", "epochs.csv")


def git_commit() -> str | None:
    """The project's HEAD commit, suffixed `-dirty` with uncommitted changes; None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "training"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def _summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines) + "\n"


def save_serving_model(model: keras.Model, path: Path) -> None:
    """Write `model` as a SavedModel with one `serving_default` signature.

    The signature takes `images`, float32 (N, *input_shape) in [0, 1], and returns
    `probabilities`, float32 (N, classes) (`modelstore.layout`): the names TF Serving's and
    the v2 protocol's model metadata show. Unlike `model.export()` (Keras 3.15), which
    checkpoints each variable twice (`variables/` and `_all_variables/`), the weights are
    written once: cifar_cnn3's SavedModel is 44 MB instead of 88 MB.
    """
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(images, training=False)}

    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={SIGNATURE_NAME: serve})


def _plot_history(
    history: dict[str, list[float]], initial_weights: str | Path | None, path: Path, *, title: str, version: int
) -> None:
    """`history.png` of a run, after the runs of the store versions it was warm-started from."""
    earlier = [(f"v{run['version']}", run.get("history", {})) for run in warm_start_chain(initial_weights)]
    reports.plot_history(history, path, title=title, earlier=earlier, label=f"v{version}")


def draw_reports(folder: Path) -> None:
    """Redraw `history.png` and `confusion_matrix.png` of a store version from its `metadata.json`.

    For versions exported before a change to the plots; `errors.png` needs the model and
    the test images, so it is left as it is.

    Raises:
        OSError: `folder` has no readable `metadata.json`.
    """
    metadata = json.loads((folder / "metadata.json").read_text())
    title = f"{metadata['dataset']}/{metadata['arch']} v{metadata['version']}"
    _plot_history(
        metadata["history"], metadata.get("initial_weights"), folder / "history.png",
        title=title, version=metadata["version"],
    )  # fmt: skip
    matrix = np.asarray(metadata["confusion_matrix"], dtype=np.int64)
    reports.plot_confusion_matrix(matrix, metadata["class_names"], folder / "confusion_matrix.png", title=title)


def export_model(
    result: TrainResult,
    dataset: Dataset,
    config: TrainConfig,
    *,
    store_dir: Path,
    version: int,
    command: str,
    commit: str | None = None,
    force: bool = False,
) -> Path:
    """Write the SavedModel, `metadata.json` and the reports of a finished run.

    Args:
        result: The trained model and its measurements.
        dataset: The data it was trained on (test images are drawn in `errors.png`).
        config: The run's configuration (recipe, seed) recorded in metadata.
        store_dir: Root of the model store.
        version: Integer version folder to write.
        command: The command line that produced the run, recorded for repeating it.
        commit: The git commit the run started from (default: the current one).
        force: Replace an existing version folder.

    Returns:
        The version folder.

    Raises:
        FileExistsError: The version exists and `force` is False.
    """
    target = store_dir / dataset.name / config.store_name / str(version)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force or another --version")
    staging = staging_folder(target)
    shutil.rmtree(staging, ignore_errors=True)
    save_serving_model(result.model, staging)

    test_size = len(dataset.y_test)
    y_test = dataset.y_test[:test_size]
    y_pred = result.test_probabilities.argmax(axis=1)
    matrix = reports.confusion_matrix(y_test, y_pred, dataset.num_classes)
    title = f"{dataset.name}/{config.store_name} v{version}"
    _plot_history(result.history, config.initial_weights, staging / "history.png", title=title, version=version)
    reports.plot_confusion_matrix(matrix, dataset.class_names, staging / "confusion_matrix.png", title=title)
    reports.plot_errors(
        dataset.x_test[:test_size], y_test, result.test_probabilities, dataset.class_names,
        staging / "errors.png", title=title,
    )  # fmt: skip
    (staging / "summary.txt").write_text(_summary(result.model))
    if (config.run_dir / "epochs.csv").is_file():
        shutil.copyfile(config.run_dir / "epochs.csv", staging / "epochs.csv")

    epoch_seconds = [round(seconds, 2) for seconds in result.epoch_seconds]
    metadata = ModelMetadata(**{
        "dataset": dataset.name,
        "arch": config.store_name,
        "architecture": config.arch if config.name else None,
        "version": version,
        "class_names": list(dataset.class_names),
        "input_shape": list(dataset.input_shape),
        "preprocessing": dataset.preprocessing,
        "parameter_count": int(result.model.count_params()),
        "epochs_run": len(result.history.get("loss", [])),
        "best_epoch": result.best_epoch,
        "epoch_seconds": epoch_seconds,
        "seconds_per_epoch": round(sum(epoch_seconds) / max(1, len(epoch_seconds)), 2),
        "training_seconds": round(result.training_seconds, 1),
        "metrics": result.metrics,
        "train_size": result.train_size,
        "val_size": result.val_size,
        "test_size": test_size,
        "confusion_matrix": matrix.tolist(),
        "per_class": reports.per_class_metrics(matrix, dataset.class_names),
        "history": result.history,
        "recipe": dataclasses.asdict(config.recipe),
        "seed": config.seed,
        "split_seed": config.split_seed,
        "steps_per_execution": config.steps_per_execution,
        "class_weight": {str(k): v for k, v in (config.class_weight or {}).items()} or None,
        "quick": config.quick,
        "initial_weights": str(config.initial_weights) if config.initial_weights else None,
        "test_time_augmentation": "flip_average" if config.flip_average else None,
        "command": public_command(command),
        "data_source": Path(dataset.source).name if "/" in dataset.source else dataset.source,
        "data_sha256": dataset.sha256,
        "git_commit": commit or git_commit(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "machine": f"{platform.machine()}, {len(tf.config.list_physical_devices('GPU'))} GPU",
        "reports": [name for name in REPORT_FILES if (staging / name).exists()],
    })  # fmt: skip
    (staging / METADATA_FILE).write_text(metadata.model_dump_json(indent=2) + "\n")

    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
