"""The model store as the service sees it: SavedModels, their metadata, their batchers.

The store layout is `<models_dir>/<dataset>/<arch>/<version>/` with a SavedModel (a
`serving_default` signature) and `metadata.json`; this module depends on nothing else
from training. Inference calls the signature's concrete function directly (no Keras
`predict`), on batches padded to a few fixed sizes. TensorFlow is imported on first
use, so importing the app stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from app.batching import DynamicBatcher
from app.config import BatchingSettings
from app.errors import ModelNotFound

logger = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelRegistry", "batch_buckets", "configure_tensorflow"]

SIGNATURE = "serving_default"


def batch_buckets(max_batch_size: int) -> tuple[int, ...]:
    """Padded batch sizes: powers of two and one and a half times them, up to and including
    `max_batch_size` (1, 2, 3, 4, 6, 8, 12, 16, 24, 32 for 32).

    The model's cost grows linearly with the batch from about 6 images (custom2: 0.47 ms per
    image on one core, measured with the SavedModel's function), so padding is paid in
    full: with these sizes it adds at most a third (9 images run as 12), with powers of two
    alone up to nearly double (17 as 32).
    """
    sizes = {1}
    power = 2
    while power < max_batch_size:
        sizes.update((power, power * 3 // 2))
        power *= 2
    return (*sorted(size for size in sizes if size < max_batch_size), max_batch_size)


def configure_tensorflow(*, intra_op_threads: int, inter_op_threads: int) -> list[str]:
    """Set thread counts and GPU memory growth; return the names of the devices found.

    Must run before TensorFlow executes anything; later calls keep the first settings.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as error:  # the runtime is already initialised (a second app in one process)
        logger.info("TensorFlow already initialised, keeping its settings: %s", error)
    devices = [device.name for device in tf.config.list_logical_devices()]
    logger.info("TensorFlow %s devices: %s; %d GPU(s)", tf.__version__, ", ".join(devices), len(gpus))
    return devices


@dataclass
class LoadedModel:
    """One SavedModel version ready to serve.

    Attributes:
        dataset: Dataset id, e.g. `mnist`.
        arch: Architecture name, e.g. `custom2`.
        version: Integer version folder.
        path: The version folder.
        metadata: The parsed `metadata.json`.
        function: The `serving_default` concrete function: float32 (N, H, W, C) in [0, 1]
            -> {output_name: float32 (N, classes) probabilities}.
        saved_model: The loaded SavedModel object, which owns the function's variables.
        buckets: Batch sizes the function is called with (inputs are zero-padded up).
        batcher: The dynamic batcher, or None when batching is off for this model.
    """

    dataset: str
    arch: str
    version: int
    path: Path
    metadata: dict[str, Any]
    function: Any = field(repr=False)
    saved_model: Any = field(repr=False)
    input_name: str
    output_name: str
    buckets: tuple[int, ...]
    batcher: DynamicBatcher | None = None
    load_seconds: float = 0.0

    @property
    def model_id(self) -> str:
        """`dataset/arch`."""
        return f"{self.dataset}/{self.arch}"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) in pixels."""
        height, width, channels = self.metadata["input_shape"]
        return (int(height), int(width), int(channels))

    @property
    def class_names(self) -> list[str]:
        """Class names indexed by class index."""
        return list(self.metadata["class_names"])

    @property
    def preprocessing(self) -> str:
        """The upload preprocessing of the model's dataset."""
        return str(self.metadata.get("preprocessing", "resize"))

    def predict_batch(self, inputs: np.ndarray) -> np.ndarray:
        """Run the model on a batch; blocking, call it off the event loop.

        Args:
            inputs: float32 (N, H, W, C) in [0, 1], N >= 1; batches larger than the
                biggest bucket are split.

        Returns:
            float32 (N, classes) probabilities.
        """
        largest = self.buckets[-1]
        if len(inputs) > largest:
            return np.concatenate(
                [self.predict_batch(inputs[start : start + largest]) for start in range(0, len(inputs), largest)]
            )
        count = len(inputs)
        bucket = next(size for size in self.buckets if size >= count)
        if bucket > count:
            padding = np.zeros((bucket - count, *inputs.shape[1:]), dtype=np.float32)
            inputs = np.concatenate([inputs, padding])
        import tensorflow as tf

        outputs = self.function(**{self.input_name: tf.constant(inputs, dtype=tf.float32)})
        return outputs[self.output_name].numpy()[:count]

    def arriving(self, count: int = 1) -> contextlib.AbstractContextManager[None]:
        """Tell the batcher `count` inputs are being read or preprocessed (see DynamicBatcher)."""
        return self.batcher.arriving(count) if self.batcher is not None else contextlib.nullcontext()

    async def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities float32 (classes,) of one input float32 (H, W, C), through the batcher."""
        if self.batcher is not None:
            return await self.batcher.submit(inputs)
        return (await anyio.to_thread.run_sync(self.predict_batch, inputs[np.newaxis]))[0]

    def warm_up(self) -> None:
        """Call the model once at every bucket size so no request pays a first-call cost."""
        for size in self.buckets:
            self.predict_batch(np.zeros((size, *self.input_shape), dtype=np.float32))


def load_model(path: Path, batching: BatchingSettings, *, warm_up: bool) -> LoadedModel:
    """Load one version folder.

    Raises:
        OSError, ValueError, KeyError: The folder is not a valid SavedModel with metadata.
    """
    import tensorflow as tf

    started = time.perf_counter()
    metadata = json.loads((path / "metadata.json").read_text())
    saved_model = tf.saved_model.load(str(path))
    function = saved_model.signatures[SIGNATURE]
    _, input_specs = function.structured_input_signature
    (input_name,) = input_specs.keys()
    (output_name,) = function.structured_outputs.keys()
    max_batch = batching.max_batch_size if batching.enabled else 1
    model = LoadedModel(
        dataset=str(metadata["dataset"]),
        arch=str(metadata["arch"]),
        version=int(path.name),
        path=path,
        metadata=metadata,
        function=function,
        saved_model=saved_model,
        input_name=input_name,
        output_name=output_name,
        buckets=batch_buckets(max(max_batch, 32)),
    )
    if warm_up:
        model.warm_up()
    model.load_seconds = time.perf_counter() - started
    return model


class ModelRegistry:
    """Every loaded model, by dataset, architecture and version."""

    def __init__(self, models: list[LoadedModel]) -> None:
        self._models: dict[tuple[str, str], dict[int, LoadedModel]] = {}
        for model in models:
            self._models.setdefault((model.dataset, model.arch), {})[model.version] = model

    @classmethod
    def load(
        cls,
        models_dir: Path,
        *,
        batching: dict[str, BatchingSettings] | None = None,
        default_batching: BatchingSettings | None = None,
        warm_up: bool = True,
    ) -> ModelRegistry:
        """Load every `<dataset>/<arch>/<version>/` folder with a metadata.json under `models_dir`.

        A folder that fails to load is logged and skipped; the others still serve.
        """
        default_batching = default_batching or BatchingSettings()
        models = []
        for metadata_path in sorted(models_dir.glob("*/*/*/metadata.json")):
            path = metadata_path.parent
            if not path.name.isdigit():
                continue
            model_id = f"{path.parent.parent.name}/{path.parent.name}"
            settings = (batching or {}).get(model_id, default_batching)
            try:
                model = load_model(path, settings, warm_up=warm_up)
            except Exception:
                logger.exception("could not load %s; skipping it", path)
                continue
            if settings.enabled:
                model.batcher = DynamicBatcher(
                    model.predict_batch,
                    max_batch_size=settings.max_batch_size,
                    batch_timeout_ms=settings.batch_timeout_ms,
                    max_concurrent_batches=settings.max_concurrent_batches,
                    name=f"{model_id}/{model.version}",
                )
            logger.info("loaded %s v%d in %.2f s", model_id, model.version, model.load_seconds)
            models.append(model)
        return cls(models)

    async def start(self) -> None:
        """Start every model's batcher."""
        for model in self:
            if model.batcher is not None:
                await model.batcher.start()

    async def stop(self) -> None:
        """Stop every model's batcher."""
        for model in self:
            if model.batcher is not None:
                await model.batcher.stop()

    def __iter__(self) -> Iterator[LoadedModel]:
        """Every loaded version of every model."""
        for versions in self._models.values():
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._models.values())

    def newest(self) -> list[LoadedModel]:
        """The newest version of every model, sorted by dataset and architecture."""
        return [versions[max(versions)] for _, versions in sorted(self._models.items())]

    def versions(self, dataset: str, arch: str) -> dict[int, LoadedModel]:
        """Every loaded version of `dataset/arch`.

        Raises:
            ModelNotFound: No such model.
        """
        versions = self._models.get((dataset, arch))
        if not versions:
            known = ", ".join(f"{d}/{a}" for d, a in sorted(self._models)) or "none"
            raise ModelNotFound(f"no model {dataset}/{arch}; loaded models: {known}")
        return versions

    def get(self, model: str, *, dataset: str | None = None, version: int | None = None) -> LoadedModel:
        """Resolve a model reference.

        Args:
            model: `arch` or `dataset/arch`.
            dataset: Dataset when `model` is a bare architecture; default `mnist`.
            version: Version number; default the newest.

        Raises:
            ModelNotFound: Unknown model, or unknown version of it (404).
        """
        if "/" in model:
            prefix, _, arch = model.partition("/")
            if dataset is not None and dataset != prefix:
                raise ModelNotFound(f"model {model!r} contradicts dataset={dataset!r}")
            dataset = prefix
        else:
            arch = model
        versions = self.versions(dataset or "mnist", arch)
        if version is None:
            return versions[max(versions)]
        try:
            return versions[version]
        except KeyError:
            raise ModelNotFound(
                f"model {dataset or 'mnist'}/{arch} has no version {version}; versions: {sorted(versions)}"
            ) from None
