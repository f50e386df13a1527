"""Put a classifier this project did not train into the store: `python -m training import`.

A `.keras` file, a legacy Keras `.h5` file, or a SavedModel folder (Keras or plain
TensorFlow) becomes a store version: a SavedModel whose `serving_default` signature takes
`images`, float32 (N, H, W, C) in [0, 1], and returns `probabilities`, float32 (N, classes)
(`modelstore.layout`), with a complete `metadata.json` (`source: imported`, the file's
SHA-256, test metrics where a dataset lets it evaluate). The wrapper scales [0, 1] to the
range the model was trained on (`--input-range`) and adds a softmax when the model answers
logits. The version is written into a staging folder and renamed, as training does.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from modelstore import (
    INPUT_NAME,
    METADATA_FILE,
    OUTPUT_NAME,
    PREPROCESSING_CHANNELS,
    SAVED_MODEL_FILE,
    SIGNATURE_NAME,
    ModelMetadata,
    next_version,
    preprocessing_fits,
    public_command,
    staging_folder,
)
from training.datasets import CIFAR10_CLASSES, FASHION_MNIST_CLASSES, MNIST_CLASSES, load_dataset

__all__ = ["ImportError_", "ImportedModel", "import_model", "read_model"]

logger = logging.getLogger(__name__)

KNOWN_CLASS_NAMES = {"mnist": MNIST_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}
"""The class names of the datasets this project trains on, in class-index order."""

PROBE_IMAGES = 16
"""Random inputs the model is called on to tell probabilities from logits."""


class ImportError_(ValueError):
    """The file is not a model this service can serve; the message says why."""


@dataclass
class ImportedModel:
    """A model read from a file, before it is wrapped.

    Attributes:
        call: Float32 (N, H, W, C) in the model's own input range -> float32 (N, classes).
        trackable: What owns the model's variables (saved with the wrapper).
        input_shape: (height, width, channels), pixels.
        classes: Width of the output.
        parameter_count: Variables' elements.
        kind: `keras` or `savedmodel`.
    """

    call: Callable[[tf.Tensor], tf.Tensor]
    trackable: Any
    input_shape: tuple[int, int, int]
    classes: int
    parameter_count: int
    kind: str


def _check_shapes(
    input_shapes: list[list[int | None]], output_shapes: list[list[int | None]]
) -> tuple[tuple[int, int, int], int]:
    """(input shape (H, W, C), classes) of a model with these input and output shapes.

    Raises:
        ImportError_: Not one image input (rank 4, fixed size, 1 or 3 channels) and one
            (N, classes) output.
    """
    if len(input_shapes) != 1:
        raise ImportError_(f"the model has {len(input_shapes)} inputs; an image classifier takes one image batch")
    (shape,) = input_shapes
    if len(shape) != 4:
        raise ImportError_(f"the model's input has shape {shape}: not an image batch (N, height, width, channels)")
    if None in shape[1:]:
        raise ImportError_(f"the model's input {shape} has no fixed height and width: rebuild it with one")
    if shape[3] not in (1, 3):
        raise ImportError_(f"the model's input has {shape[3]} channels; the service sends 1 (grayscale) or 3 (RGB)")
    if len(output_shapes) != 1:
        raise ImportError_(f"the model has {len(output_shapes)} outputs; a classifier answers one (N, classes)")
    (output,) = output_shapes
    classes = output[1] if len(output) == 2 else None
    if classes is None or classes < 2:
        raise ImportError_(f"the model's output has shape {output}, not (N, classes) with at least 2 classes")
    height, width, channels = (int(size or 0) for size in shape[1:])
    return (height, width, channels), int(classes)


def read_model(path: Path) -> ImportedModel:
    """Load a `.keras` or `.h5` file, or a SavedModel folder, and check it is an image classifier.

    Raises:
        ImportError_: Not readable as a model, or not one image input and one (N, classes) output.
    """
    if path.is_dir():
        if not (path / SAVED_MODEL_FILE).is_file():
            raise ImportError_(f"{path} is a folder without {SAVED_MODEL_FILE}: not a SavedModel")
        return _read_saved_model(path)
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ImportError_(f"{path}: expected a .keras or .h5 file, or a SavedModel folder")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a file it cannot read
        raise ImportError_(f"{path} does not load as a Keras model ({type(error).__name__}: {error})") from error
    inputs = [list(tensor.shape) for tensor in model.inputs] if model.inputs else []
    outputs = [list(tensor.shape) for tensor in model.outputs] if model.outputs else []
    input_shape, classes = _check_shapes(inputs, outputs)
    return ImportedModel(
        call=lambda images: model(images, training=False),
        trackable=[variable.value for variable in model.variables],
        input_shape=input_shape,
        classes=classes,
        parameter_count=int(model.count_params()),
        kind="keras",
    )


def _read_saved_model(path: Path) -> ImportedModel:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TensorFlow raises many kinds for a broken SavedModel
        raise ImportError_(f"{path} does not load as a SavedModel ({type(error).__name__})") from error
    signatures = dict(loaded.signatures)
    if not signatures:
        raise ImportError_(f"{path} has no signature to call")
    name = SIGNATURE_NAME if SIGNATURE_NAME in signatures else next(iter(sorted(signatures)))
    function = signatures[name]
    specs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    input_shapes = [spec.shape.as_list() if spec.shape.rank is not None else [] for spec in specs.values()]
    output_shapes = [tensor.shape.as_list() for tensor in outputs.values()]
    input_shape, classes = _check_shapes(input_shapes, output_shapes)
    (input_name, spec), (output_name,) = next(iter(specs.items())), list(outputs)
    dtype = spec.dtype

    def call(images: tf.Tensor) -> tf.Tensor:
        return function(**{input_name: tf.cast(images, dtype)})[output_name]

    variables = list(getattr(loaded, "variables", ()))
    return ImportedModel(
        call=call,
        trackable=loaded,
        input_shape=input_shape,
        classes=classes,
        parameter_count=sum(int(np.prod(variable.shape)) for variable in variables),
        kind="savedmodel",
    )


def answers_logits(model: ImportedModel, input_range: tuple[float, float], *, seed: int = 0) -> bool:
    """Whether the model's outputs on random inputs in `input_range` are not probabilities
    (some value outside [0, 1], or a row not summing to 1 within 1e-3)."""
    low, high = input_range
    probe = np.random.default_rng(seed).uniform(low, high, (PROBE_IMAGES, *model.input_shape)).astype(np.float32)
    rows = np.asarray(model.call(tf.constant(probe)), dtype=np.float64)
    inside = np.all(rows >= -1e-6) and np.all(rows <= 1 + 1e-6)
    return not (inside and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))


def save_wrapped(model: ImportedModel, folder: Path, *, input_range: tuple[float, float], softmax: bool) -> None:
    """Write the store's signature around `model` as a SavedModel in `folder`: `images` in
    [0, 1] scaled to `input_range`, `probabilities` (with a softmax over logits if `softmax`)."""
    low, high = input_range
    spec = tf.TensorSpec((None, *model.input_shape), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = tf.cast(model.call(images * (high - low) + low), tf.float32)
        return {OUTPUT_NAME: tf.nn.softmax(outputs, axis=-1) if softmax else outputs}

    module = tf.Module()
    module.imported = model.trackable
    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={SIGNATURE_NAME: serve})


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a SavedModel folder's `saved_model.pb` and variables, hex."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(item for item in path.rglob("*") if item.is_file())
    for item in files:
        with item.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _evaluate(
    folder: Path, test_data: str, data_dir: Path, shape: tuple[int, int, int], classes: list[str]
) -> dict[str, Any]:
    """Test loss and accuracy of the wrapped SavedModel in `folder` on a dataset's test split.

    Raises:
        ImportError_: The dataset's images or classes do not fit the model.
    """
    dataset = load_dataset(test_data, data_dir, image_size=shape[:2], channels=shape[2])
    if dataset.input_shape != shape:
        raise ImportError_(f"{test_data} images are {dataset.input_shape}; the model takes {shape}")
    if len(dataset.class_names) != len(classes):
        raise ImportError_(f"{test_data} has {len(dataset.class_names)} classes; the model answers {len(classes)}")
    function = tf.saved_model.load(str(folder)).signatures[SIGNATURE_NAME]
    batches = [
        tf.constant(dataset.x_test[start : start + 256], tf.float32) / 255.0
        for start in range(0, len(dataset.x_test), 256)
    ]
    probabilities = np.concatenate([function(**{INPUT_NAME: batch})[OUTPUT_NAME].numpy() for batch in batches])
    picked = probabilities[np.arange(len(dataset.y_test)), dataset.y_test]
    return {
        "test": {
            "loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
            "accuracy": float(np.mean(probabilities.argmax(axis=1) == dataset.y_test)),
        },
        "test_size": len(dataset.y_test),
    }


def import_model(
    path: Path,
    *,
    name: str,
    dataset: str,
    store_dir: Path,
    class_names: list[str] | None = None,
    preprocessing: str | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
    test_data: str | None = None,
    data_dir: Path = Path("data"),
    version: int | None = None,
    force: bool = False,
    command: str | None = None,
) -> tuple[Path, ModelMetadata, bool]:
    """Import the model at `path` as `<store_dir>/<dataset>/<name>/<version>`.

    Args:
        path: A `.keras` or `.h5` file, or a SavedModel folder.
        name: The model's store name (`model=<dataset>/<name>`).
        dataset: The store's dataset folder: `mnist`, `fashion_mnist`, `cifar10` (whose class
            names, preprocessing and test split are then the defaults) or any id of yours.
        store_dir: The model store.
        class_names: One per output, in class-index order; default the dataset's, else
            `0`..`classes-1`.
        preprocessing: How uploads become inputs (`modelstore.Preprocessing`); default the
            dataset's recipe where it fits the model's channels, else `resize`.
        input_range: (low, high) of the pixel values the model was trained on: (0, 1) or
            (0, 255); the service always sends [0, 1], which the wrapper scales.
        test_data: A dataset name or `folder:PATH` to measure test accuracy on (refused if it
            does not fit the model); default `dataset`'s test split when it is a known one
            and fits, else none.
        data_dir: Where the known datasets are (`../shared/datasets`).
        version: Version folder; default the next free one.
        force: Replace an existing version folder.
        command: The command line, recorded in the metadata.

    Returns:
        (the version folder, its metadata, whether a softmax was added to logits).

    Raises:
        ImportError_: Not an image classifier, class names that do not match its output,
            a preprocessing that does not fit its channels, or test data that does not fit.
        FileExistsError: The version exists and `force` is False.
    """
    model = read_model(path)
    height, width, channels = model.input_shape
    known = KNOWN_CLASS_NAMES.get(dataset)
    if class_names is None and known is not None and len(known) == model.classes:
        class_names = list(known)
    class_names = class_names or [str(index) for index in range(model.classes)]
    if len(class_names) != model.classes:
        raise ImportError_(f"{len(class_names)} class names given; the model answers {model.classes} values")
    if preprocessing is None:
        preprocessing = (
            dataset if dataset in PREPROCESSING_CHANNELS and preprocessing_fits(dataset, channels) else "resize"
        )
    if preprocessing not in PREPROCESSING_CHANNELS:
        raise ImportError_(f"unknown preprocessing {preprocessing!r}; choose from {sorted(PREPROCESSING_CHANNELS)}")
    if not preprocessing_fits(preprocessing, channels):
        made = PREPROCESSING_CHANNELS[preprocessing]
        raise ImportError_(f"preprocessing {preprocessing!r} makes {made}-channel inputs; the model takes {channels}")
    softmax = answers_logits(model, input_range)

    version = version or next_version(store_dir, dataset, name)
    target = store_dir / dataset / name / str(version)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force or another --version")
    staging = staging_folder(target)
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    save_wrapped(model, staging, input_range=input_range, softmax=softmax)
    measured: dict[str, Any] = {}
    if test_data is not None:
        try:
            measured = _evaluate(staging, test_data, data_dir, model.input_shape, class_names)
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    elif known is not None:  # the dataset's own test split, where the model fits it
        try:
            measured = _evaluate(staging, dataset, data_dir, model.input_shape, class_names)
        except ImportError_ as error:
            logger.warning("not measured on %s's test split: %s", dataset, error)
    metadata = ModelMetadata(
        dataset=dataset,
        arch=name,
        version=version,
        class_names=class_names,
        input_shape=(height, width, channels),
        preprocessing=preprocessing,
        parameter_count=model.parameter_count,
        metrics=(measured.get("test") and {"test": measured["test"]}) or {},
        test_size=measured.get("test_size"),
        source="imported",
        source_file=path.name,
        source_sha256=file_sha256(path),
        command=public_command(command) if command else None,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        tensorflow_version=tf.__version__,
        keras_version=keras.__version__,
    )
    (staging / METADATA_FILE).write_text(metadata.model_dump_json(indent=2, exclude_none=True) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target, metadata, softmax
