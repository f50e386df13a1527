"""One loaded model version and its inference pipeline.

A `ServedModel` owns everything between a parsed request and its probabilities: the
limits on what a request may cost, its dataset's preprocessing (decoding and preparing
images in a bounded worker pool), the dynamic batcher, and the SavedModel's signature
function, called directly (no Keras `predict`) on batches zero-padded to a few fixed
sizes. Every protocol calls `ServedModel.classify`; none of them decodes, preprocesses,
batches or gathers. TensorFlow is imported on first use, so importing the app stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import numpy as np
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from app import logs, metrics
from app.errors import BadRequest, DeadlineExceeded, ModelFailed, Overloaded, ServiceError
from app.inference.batching import DynamicBatcher, Input
from app.inference.deadlines import CHECK_AFTER, LazyDeadline
from app.inference.decoding import open_image
from app.inference.inputs import EncodedImage, InputLimits, ModelInput, expand
from app.inference.preprocessing import prepare_image, prepare_opened
from modelstore import (
    METADATA_FILE,
    OUTPUT_NAME,
    PREPROCESSING_CHANNELS,
    SAVED_MODEL_FILE,
    SIGNATURE_NAME,
    ModelMetadata,
    preprocessing_fits,
)

if TYPE_CHECKING:
    from app.config import BatchingSettings

logger = logging.getLogger(__name__)

__all__ = ["Admission", "Classification", "ModelLoadError", "ServedModel", "batch_buckets", "configure_tensorflow"]


class Admission:
    """The bound on prediction requests in flight in one process, and whether it is stopping.

    `app.middleware.AdmissionMiddleware` counts a prediction request from its arrival to its
    answer (`in_flight`, which a drain waits for) and, of those, the ones still receiving
    their body (`reading`). A request arriving while `working` (the others: prepared,
    queued or run) is at `max_in_flight` is refused at once with 503 `overloaded` and
    `Retry-After`, rather than queued without limit (as TF Serving fails fast past
    `max_enqueued_batches`). Bodies still on their way are not work: counting them let
    `max_in_flight` clients that trickle their uploads have every other prediction refused
    for as long as `BODY_READ_TIMEOUT_SECONDS` (docs/operations.md); connections bound them
    instead (`--limit-concurrency`).

    Args:
        max_in_flight: Most prediction requests being prepared, queued or run at once.
    """

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.reading = 0
        self.draining = False

    @property
    def working(self) -> int:
        """Requests in flight past their body: being prepared, queued or run."""
        return self.in_flight - self.reading


DISCONNECT_CHECK_AFTER = CHECK_AFTER
"""Seconds a request waits before its client is watched for a disconnect (and its
deadline armed: `LazyDeadline`)."""


class ModelLoadError(Exception):
    """A version folder cannot be served: its metadata does not validate or its SavedModel does not load."""


def batch_buckets(max_batch_size: int) -> tuple[int, ...]:
    """Padded batch sizes: powers of two and one and a half times them, up to and including
    `max_batch_size` (1, 2, 3, 4, 6, 8, 12, 16, 24, 32 for 32).

    A small model's cost grows about linearly with the batch beyond a few images, so
    padding is paid in full: with these sizes it adds at most a third (9 images run as
    12), with powers of two alone up to nearly double (17 as 32).
    """
    sizes = {1}
    power = 2
    while power < max_batch_size:
        sizes.update((power, power * 3 // 2))
        power *= 2
    return (*sorted(size for size in sizes if size < max_batch_size), max_batch_size)


def configure_tensorflow(
    *, intra_op_threads: int, inter_op_threads: int, fpmath_mode: Literal["strict", "bf16"] = "strict"
) -> list[str]:
    """Set thread counts, oneDNN's math mode and GPU memory growth on every GPU; return the
    logical device names.

    `fpmath_mode` `bf16` lets oneDNN (TensorFlow's CPU kernels) multiply the float32 inputs
    of convolutions and matrix products as bfloat16, summing in float32, where the CPU has
    AMX (`ONEDNN_DEFAULT_FPMATH_MODE`; elsewhere, AVX512-BF16 alone included, its kernels
    stay float32); `strict` keeps float32. Must run before TensorFlow executes anything: oneDNN reads the mode once,
    and later calls keep the first settings.
    """
    os.environ["ONEDNN_DEFAULT_FPMATH_MODE"] = fpmath_mode.upper()
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
    logger.info(
        "TensorFlow %s devices: %s; %d GPU(s); oneDNN math %s",
        tf.__version__,
        ", ".join(devices),
        len(gpus),
        fpmath_mode,
    )
    return devices


@dataclass(frozen=True, slots=True)
class Classification:
    """The pipeline's answer for one request.

    Attributes:
        probabilities: float32 (N, classes), one row per input in request order, each
            summing to 1.
        preprocessing: The preprocessing applied to encoded images (`none` for tensors).
        inputs: float32 (N, H, W, C) in [0, 1]: exactly what the model received.
    """

    probabilities: np.ndarray
    preprocessing: str
    inputs: np.ndarray


INLINE_HEADER_BYTES = 65536
"""Uploads up to this many bytes have their header read on the event loop to decide
where to preprocess them; larger ones go to a worker thread unread (a PNG's header parse
inflates its text chunks)."""


def image_preparation(
    data: bytes,
    *,
    method: str,
    shape: tuple[int, int, int],
    max_pixels: int,
    inline_pixels: int,
    sharpen: tuple[float, int] | None = None,
) -> tuple[Callable[[], np.ndarray], bool]:
    """The blocking function that decodes and preprocesses an upload (`prepare_image`), and
    whether the upload is small.

    An upload of at most `INLINE_HEADER_BYTES` bytes and `inline_pixels` pixels (by its
    header, read here once) is small: preparing it takes a few hundred microseconds (28x28),
    about as much as handing it to a thread, so it is prepared in a thread that is already
    running (the batcher's) or on the event loop. Anything larger belongs in a worker thread.

    Returns:
        (prepare, small): `prepare()` returns the float32 model input of `shape`, values in
        [0, 1], and raises as `prepare_image` does.

    Raises:
        UnsupportedImage, PayloadTooLarge: A small upload's header is refused at once (415,
            413), as `open_image`.
    """
    if len(data) <= INLINE_HEADER_BYTES:
        opened = open_image(data, max_pixels=max_pixels)
        if opened.width * opened.height <= inline_pixels:
            return partial(prepare_opened, opened, method, shape, sharpen), True
    return partial(prepare_image, data, method=method, shape=shape, max_pixels=max_pixels, sharpen=sharpen), False


IMPORT_COMMAND = "python -m training import {folder} --dataset {dataset} --name {arch}"
"""How a SavedModel this project did not make gets its `metadata.json` (`training/importer.py`)."""


def read_metadata(folder: Path) -> ModelMetadata:
    """Validate a version folder's `metadata.json` against the store's schema.

    Raises:
        ModelLoadError: Missing (the message names the import command), not JSON, not the
            schema, or not the folder it is in.
    """
    if not (folder / METADATA_FILE).exists() and (folder / SAVED_MODEL_FILE).exists():
        command = IMPORT_COMMAND.format(folder="PATH", dataset=folder.parent.parent.name, arch=folder.parent.name)
        raise ModelLoadError(
            f"a SavedModel without {METADATA_FILE} (not made by this project): import it with `{command}`"
            " (PATH: the SavedModel folder, moved out of the store), or serve it as it is with INFER_METADATA=true"
        )
    try:
        metadata = ModelMetadata.model_validate_json((folder / METADATA_FILE).read_bytes())
    except OSError as error:
        raise ModelLoadError(f"{METADATA_FILE} cannot be read ({error.strerror})") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, item['loc'])) or 'file'}: {item['msg']}" for item in error.errors())
        raise ModelLoadError(f"{METADATA_FILE} is invalid: {problems}") from None
    where = (folder.parent.parent.name, folder.parent.name, folder.name)
    if (metadata.dataset, metadata.arch, str(metadata.version)) != where:
        raise ModelLoadError(
            f"{METADATA_FILE} describes {metadata.model_id} v{metadata.version}, not {'/'.join(where)}"
        )
    return metadata


def metadata_from_signature(folder: Path, saved_model: Any) -> ModelMetadata:
    """The metadata TensorFlow Serving would assume for a SavedModel without ours: its
    `serving_default` signature (or its only one), whose one input is float32 (N, H, W, C)
    with C 1 or 3 and whose one output (or `probabilities`) is (N, classes); class names
    `0`..`classes-1`, preprocessing `resize`, inputs in [0, 1], `source: inferred`.

    Raises:
        ModelLoadError: No usable signature, or one that is not an image classifier's.
    """
    signatures = dict(saved_model.signatures)
    if not signatures:
        raise ModelLoadError("the SavedModel has no signature")
    name = SIGNATURE_NAME if SIGNATURE_NAME in signatures else next(iter(signatures))
    if len(signatures) > 1 and name != SIGNATURE_NAME:
        raise ModelLoadError(f"the SavedModel has signatures {sorted(signatures)} and no {SIGNATURE_NAME!r}")
    function = signatures[name]
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    if len(inputs) != 1:
        raise ModelLoadError(f"signature {name!r} takes {len(inputs)} inputs ({sorted(inputs)}), not one image batch")
    ((input_name, spec),) = inputs.items()
    shape = spec.shape.as_list() if spec.shape.rank is not None else []
    if len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3) or spec.dtype.name != "float32":
        raise ModelLoadError(
            f"signature {name!r} takes {input_name!r} {spec.dtype.name} {shape}, not float32 (N, H, W, 1 or 3)"
        )
    output_name = OUTPUT_NAME if OUTPUT_NAME in outputs else next(iter(outputs)) if len(outputs) == 1 else None
    if output_name is None:
        raise ModelLoadError(f"signature {name!r} returns {sorted(outputs)}: name one {OUTPUT_NAME!r}")
    output_shape = outputs[output_name].shape.as_list()
    if len(output_shape) != 2 or output_shape[1] is None or output_shape[1] < 2:
        raise ModelLoadError(f"signature {name!r} returns {output_name!r} of shape {output_shape}, not (N, classes)")
    parameters = sum(int(np.prod(variable.shape)) for variable in getattr(saved_model, "variables", ()))
    try:
        return ModelMetadata(
            dataset=folder.parent.parent.name,
            arch=folder.parent.name,
            version=int(folder.name),
            class_names=[str(index) for index in range(output_shape[1])],
            input_shape=tuple(shape[1:]),
            signature=name,
            input_name=input_name,
            output_name=output_name,
            preprocessing="resize",
            parameter_count=parameters,
            source="inferred",
        )
    except ValidationError as error:
        raise ModelLoadError(f"metadata inferred from the signature is invalid: {error.errors()[0]['msg']}") from None


def _probe_inputs(shape: tuple[int, int, int]) -> np.ndarray:
    """A few inputs of `shape` spanning [0, 1]: black, white, grey and noise; float32 (4, H, W, C)."""
    noise = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    return np.concatenate([np.zeros((1, *shape)), np.ones((1, *shape)), np.full((1, *shape), 0.5), noise]).astype(
        np.float32
    )


def _are_probabilities(rows: np.ndarray) -> bool:
    """Whether every row is a probability distribution (values in [0, 1], sum 1 within 1e-3)."""
    return bool(np.all(rows >= -1e-6) and np.all(rows <= 1 + 1e-6) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))


def _signature_from_proto(
    folder: Path, metadata: ModelMetadata
) -> tuple[list[str], list[str], list[int | None] | None]:
    """The input names, output names and input shape of `metadata.signature`, read from the
    folder's `saved_model.pb` without loading the graph (a few milliseconds).

    Raises:
        ModelLoadError: No readable `saved_model.pb`, or no such signature.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((folder / SAVED_MODEL_FILE).read_bytes())
        (graph,) = proto.meta_graphs
    except Exception as error:  # OSError, protobuf's DecodeError, several graphs
        raise ModelLoadError(f"the SavedModel does not load ({type(error).__name__})") from error
    if metadata.signature not in graph.signature_def:
        raise ModelLoadError(f"the SavedModel has no signature {metadata.signature!r}")
    signature = graph.signature_def[metadata.signature]
    shape = None
    if metadata.input_name in signature.inputs:
        dims = signature.inputs[metadata.input_name].tensor_shape
        shape = None if dims.unknown_rank else [None if dim.size < 0 else dim.size for dim in dims.dim]
    return list(signature.inputs), list(signature.outputs), shape


def _check_signature(
    metadata: ModelMetadata, inputs: list[str], outputs: list[str], shape: list[int | None] | None
) -> None:
    """Check that a signature takes and returns what `metadata.json` says.

    Raises:
        ModelLoadError: Other input or output names, or another input shape.
    """
    if inputs != [metadata.input_name] or metadata.output_name not in outputs:
        raise ModelLoadError(
            f"signature {metadata.signature!r} takes {inputs} and returns {outputs}, "
            f"not {metadata.input_name!r} and {metadata.output_name!r} as metadata.json says"
        )
    if shape is None or shape[1:] != list(metadata.input_shape):
        raise ModelLoadError(f"the signature's input shape {shape} is not metadata's {list(metadata.input_shape)}")


@dataclass(eq=False)
class ServedModel:
    """One SavedModel version ready to serve, with its own pipeline.

    Attributes:
        metadata: The validated `metadata.json`.
        path: The version folder.
        function: The signature's concrete function: float32 (N, H, W, C) in [0, 1] ->
            {output_name: float32 (N, classes) probabilities}.
        saved_model: The loaded SavedModel object, which owns the function's variables.
        buckets: Batch sizes the function is called with (inputs are zero-padded up).
        limits: What one request may cost.
        batcher: The dynamic batcher, or None when batching is off for this model.
        limiter: The worker pool's capacity for decoding and preprocessing (set by `start`).
        load_seconds: Time to load and warm up, seconds (to check the signature, for a
            version that loads on its first request, until it has).
        in_flight: Requests of this version between `classify` and its answer (an unloaded
            version is stopped once it is 0).
        warm_up_on_load: Warm up when a deferred version loads.

    `function` and `saved_model` are None until a version loaded with `defer=True` is first
    called: `ensure_loaded` loads it then, once, in the calling thread.
    """

    metadata: ModelMetadata
    path: Path
    function: Any = field(repr=False)
    saved_model: Any = field(repr=False)
    buckets: tuple[int, ...]
    limits: InputLimits
    batcher: DynamicBatcher | None = None
    limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)
    load_seconds: float = 0.0
    in_flight: int = 0
    warm_up_on_load: bool = False
    _load_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        batching: BatchingSettings,
        limits: InputLimits,
        warm_up: bool,
        infer_metadata: bool = False,
        defer: bool = False,
    ) -> ServedModel:
        """Load, check and (optionally) warm up one version folder; blocking.

        Args:
            folder: `<store>/<dataset>/<arch>/<version>`.
            batching: The model's batching settings.
            limits: What one request may cost.
            warm_up: Call every batch-size bucket once.
            infer_metadata: A folder with a SavedModel and no `metadata.json` is served with
                metadata inferred from its signature (`infer_metadata`); else it is refused.
            defer: Check the metadata and the signature (read from `saved_model.pb`, without
                loading the graph) now, and load the SavedModel on the first call
                (`ensure_loaded`), so an unused version costs no memory. Ignored for inferred
                metadata, which needs the loaded signature.

        Raises:
            ModelLoadError: The metadata does not validate (or is missing), the SavedModel
                does not load, or its signature does not match the metadata.
        """
        started = time.perf_counter()
        inferred = infer_metadata and not (folder / METADATA_FILE).exists()
        metadata = None if inferred else read_metadata(folder)
        max_batch = batching.max_batch_size if batching.enabled else 1
        buckets = batching.buckets or batch_buckets(max(max_batch, 32))
        if defer and metadata is not None:
            _check_signature(metadata, *_signature_from_proto(folder, metadata))
            model = cls(
                metadata=metadata,
                path=folder,
                function=None,
                saved_model=None,
                buckets=buckets,
                limits=limits,
                warm_up_on_load=warm_up,
            )
        else:
            model = cls._loaded(folder, metadata, buckets, limits, warm_up=warm_up, inferred=inferred)
        if batching.enabled:
            model.batcher = DynamicBatcher(
                model.predict_batch,
                max_batch_size=batching.max_batch_size,
                batch_timeout_ms=batching.batch_timeout_ms,
                max_concurrent_batches=batching.max_concurrent_batches,
                name=f"{model.metadata.model_id}/{model.metadata.version}",
                observe=model.observe_batch,
            )
        model.load_seconds = time.perf_counter() - started
        return model

    @classmethod
    def _loaded(
        cls,
        folder: Path,
        metadata: ModelMetadata | None,
        buckets: tuple[int, ...],
        limits: InputLimits,
        *,
        warm_up: bool,
        inferred: bool,
    ) -> ServedModel:
        """The version with its SavedModel loaded and checked (`load`)."""
        import tensorflow as tf

        try:
            saved_model = tf.saved_model.load(str(folder))
            if metadata is None:
                metadata = metadata_from_signature(folder, saved_model)
            function = saved_model.signatures[metadata.signature]
        except KeyError:
            raise ModelLoadError(f"the SavedModel has no signature {metadata.signature!r}") from None  # type: ignore[union-attr]
        except ModelLoadError:
            raise
        except Exception as error:  # TensorFlow raises many kinds for a broken SavedModel
            raise ModelLoadError(f"the SavedModel does not load ({type(error).__name__})") from error
        inputs = function.structured_input_signature[1]
        shape = inputs[metadata.input_name].shape.as_list() if metadata.input_name in inputs else None
        _check_signature(metadata, list(inputs), list(function.structured_outputs), shape)
        model = cls(
            metadata=metadata, path=folder, function=function, saved_model=saved_model, buckets=buckets, limits=limits
        )
        if warm_up:
            model.warm_up()
        probabilities = model.predict_batch(np.zeros((1, *metadata.input_shape), np.float32))
        if probabilities.shape != (1, len(metadata.class_names)):
            raise ModelLoadError(
                f"the model answers {list(probabilities.shape[1:])} values, "
                f"metadata names {len(metadata.class_names)} classes"
            )
        if inferred and not _are_probabilities(model.predict_batch(_probe_inputs(metadata.input_shape))):
            command = IMPORT_COMMAND.format(folder="PATH", dataset=metadata.dataset, arch=metadata.arch)
            raise ModelLoadError(
                f"the signature's output {metadata.output_name!r} is not probabilities (rows in [0, 1] summing to 1);"
                f" import the SavedModel with `{command}`, which adds a softmax to logits"
            )
        return model

    @property
    def loaded(self) -> bool:
        """Whether the SavedModel is in memory (a deferred version is not until its first call)."""
        return self.function is not None

    def ensure_loaded(self) -> None:
        """Load a deferred version's SavedModel, once, and warm it up if it was asked to;
        blocking (call it off the event loop). The first caller loads; others wait.

        Raises:
            ModelLoadError: The SavedModel does not load or answers the wrong shape.
        """
        if self.function is not None:
            return
        with self._load_lock:
            if self.function is not None:
                return
            started = time.perf_counter()
            loaded = self._loaded(
                self.path, self.metadata, self.buckets, self.limits, warm_up=self.warm_up_on_load, inferred=False
            )
            self.saved_model, self.function = loaded.saved_model, loaded.function
            self.load_seconds = time.perf_counter() - started
            gc.freeze()  # its graph's objects join those frozen at start (app.main), out of collections
        labels = (self.model_id, str(self.version))
        metrics.MODEL_LOADED.labels(*labels).set(1)
        metrics.MODEL_LOAD_DURATION.labels(*labels).set(self.load_seconds)
        logger.info("loaded %s v%d on its first request in %.2f s", self.model_id, self.version, self.load_seconds)

    @property
    def dataset(self) -> str:
        """Dataset id, e.g. `mnist`."""
        return self.metadata.dataset

    @property
    def arch(self) -> str:
        """Architecture name, e.g. `custom2`."""
        return self.metadata.arch

    @property
    def version(self) -> int:
        """Integer version."""
        return self.metadata.version

    @property
    def model_id(self) -> str:
        """`dataset/arch`."""
        return self.metadata.model_id

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one input, pixels."""
        return self.metadata.input_shape

    @property
    def class_names(self) -> list[str]:
        """Class names indexed by class index."""
        return self.metadata.class_names

    @property
    def preprocessing(self) -> str:
        """The upload preprocessing of the model's dataset."""
        return self.metadata.preprocessing

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
        if self.function is None:
            self.ensure_loaded()
        count = len(inputs)
        bucket = next(size for size in self.buckets if size >= count)
        if bucket > count:
            padding = np.zeros((bucket - count, *inputs.shape[1:]), dtype=np.float32)
            inputs = np.concatenate([inputs, padding])
        import tensorflow as tf

        outputs = self.function(**{self.metadata.input_name: tf.constant(inputs, dtype=tf.float32)})
        return outputs[self.metadata.output_name].numpy()[:count]

    @cached_property
    def _metrics(self) -> tuple[Any, Any, Any, Any]:
        """This version's metric children: batch size, model call duration, queue wait, queue depth."""
        labels = (self.model_id, str(self.version))
        return (
            metrics.BATCH_SIZE.labels(*labels),
            metrics.INFERENCE_DURATION.labels(*labels),
            metrics.QUEUE_WAIT.labels(*labels),
            metrics.QUEUE_DEPTH.labels(*labels),
        )

    def observe_batch(self, images: int, seconds: float, waits: list[float]) -> None:
        """Record one model call in the metrics: its images, its duration, each input's queue wait."""
        batch_size, duration, wait, _ = self._metrics
        batch_size.observe(images)
        duration.observe(seconds)
        for seconds_waited in waits:
            wait.observe(seconds_waited)

    def warm_up(self) -> None:
        """Call the model once at every bucket size so no request pays a first-call cost."""
        for size in self.buckets:
            self.predict_batch(np.zeros((size, *self.input_shape), dtype=np.float32))

    async def start(self, limiter: anyio.CapacityLimiter) -> None:
        """Start the batcher; decode and preprocess in the pool of `limiter`."""
        self.limiter = limiter
        if self.batcher is not None:
            await self.batcher.start()

    async def stop(self, *, drain_seconds: float = 0.0) -> None:
        """Stop the batcher once its queue is answered (at most `drain_seconds`)."""
        if self.batcher is not None:
            await self.batcher.stop(drain_seconds=drain_seconds)

    async def _input(self, item: EncodedImage | np.ndarray, method: str) -> Input:
        """The model input of `item`, float32 of the input shape, or for a small upload while
        batching the function that makes it, which the batcher runs in its own thread just
        before the batch (`DynamicBatcher`: cheaper there than on the event loop). Uploads
        that are not small are prepared in a worker thread; without batching, small ones on
        the event loop, where they avoid the GIL contention of many threads.

        Raises:
            UnsupportedImage, PayloadTooLarge: A small upload's header is refused (415, 413).
        """
        if not isinstance(item, EncodedImage):
            return item
        sharpen = self.metadata.sharpen if method == self.preprocessing else None
        prepare, small = image_preparation(
            item.file_bytes(),
            method=method,
            shape=self.input_shape,
            max_pixels=self.limits.max_image_pixels,
            inline_pixels=self.limits.inline_preprocess_pixels,
            sharpen=(sharpen.radius, sharpen.percent) if sharpen else None,
        )
        if not small:
            return await anyio.to_thread.run_sync(prepare, limiter=self.limiter)
        return prepare if self.batcher is not None else prepare()

    async def _predict(self, inputs: Input) -> tuple[np.ndarray, np.ndarray]:
        """The probabilities of one input, float32 (classes,), and the input itself (made, if
        it came as a function)."""
        try:
            if self.batcher is not None:
                return await self.batcher.submit(inputs)
            made = inputs() if callable(inputs) else inputs
            started = time.perf_counter()
            row = (await anyio.to_thread.run_sync(self.predict_batch, made[np.newaxis]))[0]
            self.observe_batch(1, time.perf_counter() - started, [0.0])
            return row, made
        except (ServiceError, asyncio.CancelledError):
            raise
        except Exception as error:
            logger.error("%s v%d failed on an input: %s: %s", self.model_id, self.version, type(error).__name__, error)
            raise ModelFailed(f"{self.model_id} v{self.version} failed on this input") from error

    def _queued(self) -> int:
        """Inputs waiting for this model: queued in its batcher or being prepared."""
        return self.batcher.waiting + self.batcher.on_the_way if self.batcher is not None else 0

    async def _classify(self, items: list[EncodedImage | np.ndarray], method: str) -> Classification:
        arriving = self.batcher.arriving(len(items)) if self.batcher is not None else contextlib.nullcontext()
        with arriving:  # the batcher waits for inputs being prepared rather than run a small batch
            inputs = [await self._input(item, method) for item in items]
        used = method if any(isinstance(item, EncodedImage) for item in items) else "none"
        if len(inputs) == 1:  # views, not copies: most requests carry one input
            row, made = await self._predict(inputs[0])
            result = Classification(row[np.newaxis], used, made[np.newaxis])
        else:
            answers = await asyncio.gather(*(self._predict(one) for one in inputs))
            result = Classification(
                np.stack([row for row, _ in answers]), used, np.stack([made for _, made in answers])
            )
        self._check_finite(result, items)
        return result

    def _check_finite(self, result: Classification, items: list[EncodedImage | np.ndarray]) -> None:
        """Refuse probabilities that are NaN or infinite, which no protocol can answer.

        A finite tensor far outside the model's input range (3e38 in every pixel) overflows
        inside the network; an image, which the pipeline scales into the range itself, never
        should, so there the model is at fault.

        Raises:
            BadRequest: A tensor input made them (400).
            ModelFailed: An image input made them (500).
        """
        finite = np.isfinite(result.probabilities).all(axis=1)
        if finite.all():
            return
        index = int(np.flatnonzero(~finite)[0])
        if isinstance(items[index], np.ndarray):
            values = result.inputs[index]
            low, high = self.metadata.input_range
            raise BadRequest(
                f"input {index}: the model's probabilities are not finite for this tensor, whose values span "
                f"[{values.min():g}, {values.max():g}]; the model takes values in [{low:g}, {high:g}]"
            )
        logger.error("%s v%d gave non-finite probabilities for input %d", self.model_id, self.version, index)
        raise ModelFailed(f"{self.model_id} v{self.version} failed on input {index}")

    async def classify(
        self,
        inputs: Sequence[ModelInput],
        *,
        preprocessing: str | None = None,
        deadline: float | None = None,
        disconnected: Callable[[], Awaitable[Any]] | None = None,
    ) -> Classification:
        """Classify a request's inputs: the one entry point of every protocol.

        Args:
            inputs: Encoded image files and/or tensors in the model's input layout, as the
                protocol adapter parsed them.
            preprocessing: How encoded images become inputs (`app.inference.preprocessing`
                methods); default the model dataset's. Tensors are used as they are.
            deadline: Event-loop time (`loop.time()`, seconds) by which the answer is due;
                work still waiting for the model then is dropped.
            disconnected: Returns once the client has gone away (the ASGI `receive` after
                the body is read); its work is then dropped.

        Returns:
            The probabilities of every input, in order, and the inputs the model received.

        Raises:
            BadRequest: A `preprocessing` that does not make the model's channels; bad base64,
                or a tensor that is malformed, of the wrong shape, or so
                far outside the input range that the probabilities are not finite (400).
            PayloadTooLarge: Over the limits on images, tensor elements or pixels (413).
            UnsupportedImage: A file that is not a decodable image (415).
            Overloaded: Too many requests in flight, or too many inputs queued (503).
            DeadlineExceeded: The deadline passed before the inputs reached the model (504).
            ModelFailed: The model call raised, or gave non-finite probabilities for an image (500).
            ClientDisconnect: The client went away.
        """
        try:
            return await self._admit_and_classify(inputs, preprocessing, deadline, disconnected)
        except ServiceError as error:
            reason = {503: "overloaded", 504: "deadline_exceeded"}.get(error.status, "bad_input")
            if error.status < 500 or reason != "bad_input":
                metrics.REJECTED.labels(self.model_id, reason).inc()
            raise

    async def _admit_and_classify(
        self,
        inputs: Sequence[ModelInput],
        preprocessing: str | None,
        deadline: float | None,
        disconnected: Callable[[], Awaitable[Any]] | None,
    ) -> Classification:
        method = preprocessing or self.preprocessing
        if not preprocessing_fits(method, self.input_shape[2]):
            raise BadRequest(
                f"preprocess={method} makes {PREPROCESSING_CHANNELS[method]}-channel inputs;"
                f" {self.model_id} takes {self.input_shape[2]}"
            )
        logs.note(model=self.model_id, version=self.version)
        items = expand(inputs, self.input_shape, self.limits)
        logs.note(images=len(items))
        if self._queued() + len(items) > self.limits.max_queued_inputs:
            raise Overloaded(f"{self.model_id} has {self._queued()} inputs queued (MAX_QUEUED_INPUTS); retry shortly")
        depth = self._metrics[3]
        self.in_flight += 1
        depth.set(self._queued() + len(items))
        task = asyncio.current_task()
        gone = False
        watcher: asyncio.Future[Any] | None = None

        def cancel_on_disconnect(watch: asyncio.Future[Any]) -> None:
            nonlocal gone
            if task is not None and not watch.cancelled() and watch.exception() is None:
                gone = True
                task.cancel()

        def watch() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(disconnected())  # type: ignore[misc]
            watcher.add_done_callback(cancel_on_disconnect)

        # Only a request still waiting after DISCONNECT_CHECK_AFTER gets its deadline armed
        # and a task watching for its client to go away: both cost more than most requests.
        deadline_scope = LazyDeadline(
            deadline, check_after=DISCONNECT_CHECK_AFTER, on_slow=watch if disconnected else None
        )
        try:
            async with deadline_scope:
                return await self._classify(items, method)
        except TimeoutError:
            raise DeadlineExceeded("the request's deadline passed before its answer was ready") from None
        except asyncio.CancelledError:
            if gone and task is not None:
                task.uncancel()
                raise ClientDisconnect() from None
            raise
        finally:
            self.in_flight -= 1
            depth.set(self._queued())
            if watcher is not None:
                watcher.remove_done_callback(cancel_on_disconnect)
                watcher.cancel()
