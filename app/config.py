"""Service settings, read once from environment variables (pydantic-settings).

The lifespan builds one `Settings` (or takes the one given to `create_app`) and puts it in
the application's state; routes reach it through `app.deps` (`SettingsDep`, or
`settings_of` on the prediction path), nothing else reads the environment. Each default
is defined here and listed in the README's configuration table.
"""

from __future__ import annotations

import math
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.inference.body import JSON_STRUCTURE_VALUES, BodyLimits
from app.inference.inputs import InputLimits

__all__ = ["CGROUP_ROOT", "BatchingSettings", "Settings", "usable_cpus"]


CGROUP_ROOT = Path("/sys/fs/cgroup")
"""Where Linux mounts the control groups a process (or a container) sees as its own."""


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may run on: its CPU affinity (`--cpuset-cpus`, `taskset`), bounded
    by its cgroup's CPU quota (a container's `--cpus`, a Kubernetes CPU limit; rounded up:
    1.5 CPUs are 2), read from cgroup v2's `cpu.max` or cgroup v1's `cpu/cpu.cfs_quota_us`
    and `cpu.cfs_period_us` under `cgroup_root`. Every thread pool, TensorFlow's threads and
    the number of workers are sized from it, never from `os.cpu_count()`, which counts the
    whole machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def _cpu_quota(cgroup_root: Path) -> float | None:
    """The cgroup's CPU quota in CPUs (quota over period), or None when there is none."""
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (cgroup_root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: a quota of -1 is none
        quota_us = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):  # no cgroup, or not Linux
        return None


class BatchingSettings(BaseModel):
    """Dynamic batching of one model's requests (or the global default).

    Attributes:
        enabled: Stack concurrent requests into one model call; False calls once per image.
        max_batch_size: Most images per model call.
        batch_timeout_ms: Longest wait, in milliseconds, after the first image of a batch
            for more to arrive.
        max_concurrent_batches: Model calls in flight at once (2 pipelines batch forming
            with the previous call).
        buckets: Batch sizes the model is called with, inputs zero-padded up to the next
            one; each is run once at load. Default: powers of two and 1.5 times them up to
            `max_batch_size` (see `app.inference.model.batch_buckets`).
    """

    enabled: bool = True
    max_batch_size: int = Field(32, ge=1, le=1024)
    batch_timeout_ms: float = Field(2.0, ge=0.0, le=1000.0)
    max_concurrent_batches: int = Field(1, ge=1, le=16)
    buckets: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _buckets_cover_the_batch(self) -> BatchingSettings:
        if self.buckets is not None and (min(self.buckets) < 1 or max(self.buckets) < self.max_batch_size):
            raise ValueError(f"buckets {self.buckets} must be positive and reach max_batch_size {self.max_batch_size}")
        return self


class Settings(BaseSettings):
    """Every setting of the service; each field is also an environment variable.

    Example: `MODELS_DIR=/srv/models MAX_UPLOAD_BYTES=2000000 uvicorn app.main:app`.
    Per-model batching is JSON: `MODEL_BATCHING='{"mnist/custom2": {"max_batch_size": 64}}'`.
    """

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    models_dir: Path = Field(Path("models_store"), description="the model store to load")
    default_dataset: str = Field("mnist", description="dataset of a bare architecture in `model=custom2`")
    default_models: dict[str, str] = Field(
        {"mnist": "custom2_robust", "fashion_mnist": "airbench", "cifar10": "ensemble3"},
        description="the architecture `model=<dataset>` (and the TF Serving/v2 name `<dataset>`) answers with",
    )
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="request body limit, bytes")
    header_timeout_seconds: float = Field(
        10.0, gt=0.0, description="time a request head (request line and headers) may take to arrive"
    )
    max_header_bytes: int = Field(65536, ge=1024, description="size of a request head (request line and headers)")
    body_read_timeout_seconds: float = Field(30.0, gt=0.0, description="time a request body may take to arrive")
    max_image_pixels: int = Field(40_000_000, ge=1, description="declared width x height limit, pixels")
    max_images_per_request: int = Field(64, ge=1, description="images or tensor rows per request")
    max_tensor_elements: int = Field(64 * 32 * 32 * 3, ge=1, description="numbers in one request's tensors")
    max_json_depth: int = Field(16, ge=4, description="nesting of JSON arrays and objects")
    max_form_fields: int = Field(16, ge=1, description="text fields of a multipart form")
    inline_preprocess_pixels: int = Field(
        4096,
        ge=0,
        description="images up to this many pixels are preprocessed in the batcher's thread just before their "
        "batch, or on the event loop when batching is off; larger ones in the worker pool (0: all there)",
    )
    max_requests_in_flight: int = Field(
        256, ge=1, description="requests being prepared, queued or run at once; more are shed with 503"
    )
    max_queued_inputs: int = Field(256, ge=1, description="inputs waiting for one model; more are shed with 503")
    request_timeout_seconds: float = Field(
        30.0, gt=0.0, description="default deadline of a request; a client may shorten it with X-Request-Timeout"
    )
    required_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="`dataset/arch` models without which the service is not ready"
    )
    drain_seconds: float = Field(
        20.0, ge=0.0, description="on SIGTERM: readiness fails at once, requests in flight get this long to finish"
    )
    preprocess_threads: int = Field(
        default_factory=lambda: usable_cpus(),
        ge=1,
        description="worker threads that decode and preprocess; default the usable CPUs (`usable_cpus`)",
    )
    batching: BatchingSettings = BatchingSettings()
    model_batching: dict[str, BatchingSettings] = {}
    warmup: bool = Field(True, description="run every batch-size bucket once at load")
    explain_max_images: int = Field(1, ge=1, le=64, description="images one `/explain` request may hold (413 above)")
    explain_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="longest an explanation may compute before it is stopped (504); the first of a model also "
        "traces its gradient (cifar10/ensemble: 17 s, then 6 s)",
    )
    explain_max_in_flight: int = Field(
        1,
        ge=1,
        description="explanations computing at once in a worker, each in one thread and paced while predictions "
        "are in flight; more get 503 at once, so `/explain` never crowds out `/predict`",
    )
    infer_metadata: bool = Field(
        False,
        description="serve a version folder that holds a SavedModel and no metadata.json, as TensorFlow Serving "
        "would: metadata inferred from its signature (class names 0..N-1, preprocessing `resize`); off: such a "
        "folder is listed as failed with the command that imports it",
    )
    intra_op_threads: int = Field(
        default_factory=lambda: max(1, usable_cpus() - 1),
        ge=0,
        description="TensorFlow threads per op; default the usable CPUs less one, left to the event loop",
    )
    inter_op_threads: int = Field(
        default_factory=lambda: min(2, usable_cpus()),
        ge=0,
        description="TensorFlow ops run side by side; default two, one on a single usable CPU",
    )
    fpmath_mode: Literal["strict", "bf16"] = Field(
        "strict",
        description="oneDNN's math for float32 convolutions and matrix products: `strict` float32, or `bf16` "
        "(bfloat16 products, float32 sums, on CPUs with AMX: less CPU for the larger CNNs, more "
        "for MLPs; probabilities within about 0.05; docs/performance.md)",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False, description="comma-separated keys for the prediction routes; empty: open"
    )
    api_keys_file: Path | None = Field(None, description="a file of more prediction keys, one per line")
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False, description="comma-separated keys for /admin; empty: /admin closed"
    )
    docs_enabled: bool = Field(True, description="serve /docs, /redoc and /openapi.json")
    page_enabled: bool = Field(True, description="serve the page to try the models at /")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed to call the API from a browser"
    )
    version_policy: str = Field(
        "latest:1",
        pattern=r"^(all|latest:[1-9][0-9]*|specific:[0-9]+(,[0-9]+)*)$",
        description="versions of a model that serve, as TF Serving's: the newest by default, `all`, `latest:N` or "
        "`specific:1,3`; versions a label of `labels.json` names serve too",
    )
    model_version_policy: dict[str, str] = Field(
        default_factory=dict, description='per model, e.g. {"mnist/custom2": "latest:1"}'
    )
    load_on_start: Literal["defaults", "all"] = Field(
        "defaults",
        description="`defaults`: the default models (`DEFAULT_MODELS`), `REQUIRED_MODELS` and labelled versions load "
        "at start, every other serving version is checked then and loads on its first request (once, 0.05-2 s), so "
        "a worker holds only what is used; `all`: every serving version loads at start, as TF Serving",
    )
    model_poll_seconds: float = Field(
        30.0, ge=0.0, description="how often the store is checked for new or removed versions (0: never)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per log line")
    opentelemetry: bool = Field(
        False,
        description="FastAPI's own OpenTelemetry spans, metrics and logs of each request, for a configured "
        "OpenTelemetry SDK (off: /metrics serves Prometheus metrics, and FastAPI's check of the providers "
        "costs every request)",
    )

    @field_validator("required_models", "api_keys", "admin_api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("models_dir")
    @classmethod
    def _models_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"models_dir {value} is not a directory (set MODELS_DIR)")
        return value

    def prediction_keys(self) -> list[str]:
        """`API_KEYS` and the lines of `API_KEYS_FILE` (blank lines and `#` comments skipped).

        Raises:
            OSError: The key file cannot be read.
        """
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text().splitlines()
            keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return keys

    def version_policy_for(self, model_id: str) -> str:
        """The version policy of `dataset/arch`: its own entry, else `VERSION_POLICY`."""
        return self.model_version_policy.get(model_id, self.version_policy)

    def batching_for(self, model_id: str) -> BatchingSettings:
        """The batching settings of `dataset/arch`: its own entry, else the global default."""
        return self.model_batching.get(model_id, self.batching)

    @cached_property
    def input_limits(self) -> InputLimits:
        """What one request's inputs may cost, for the pipeline."""
        return InputLimits(
            max_images=self.max_images_per_request,
            max_tensor_elements=self.max_tensor_elements,
            max_image_pixels=self.max_image_pixels,
            inline_preprocess_pixels=self.inline_preprocess_pixels,
            max_queued_inputs=self.max_queued_inputs,
        )

    @cached_property
    def body_limits(self) -> BodyLimits:
        """What reading one request body may cost."""
        return BodyLimits(
            max_bytes=self.max_upload_bytes,
            read_timeout=self.body_read_timeout_seconds,
            max_json_depth=self.max_json_depth,
            max_form_fields=self.max_form_fields,
            max_files=self.max_images_per_request,
            max_json_values=self.max_tensor_elements + JSON_STRUCTURE_VALUES,
        )
