"""The registry: finds the loaded model a request names, and keeps the loaded versions in
step with the store while the service runs. It only finds and swaps; `ServedModel` serves.

As TensorFlow Serving does with its model base path, the store is polled
(`MODEL_POLL_SECONDS`): a new version folder is loaded and warmed up in a worker thread,
then takes traffic at once (one dictionary assignment on the event loop, so a request sees
either the old set of versions or the new one); a removed version stops taking new
requests, finishes those it has, and is unloaded; a version that fails to load is shown as
failed and never replaces one that serves. Which versions of a model serve is its version
policy; version labels (`stable`, `canary`) come from `labels.json` in the model's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from app import metrics
from app.errors import Conflict, ModelNotFound
from app.inference.model import Admission, ModelLoadError, ServedModel
from modelstore import METADATA_FILE, SAVED_MODEL_FILE, version_folders

if TYPE_CHECKING:
    from app.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["FailedVersion", "ModelRegistry", "RefreshReport", "VersionKey", "select_versions"]

UNLOADED_FILE = "unloaded.json"
"""`<store>/<dataset>/<arch>/unloaded.json`: `[1, 3]`, versions in the store that do not serve
(`/admin/.../unload`). Kept in the store, so every worker's poll and every restart read it."""

LABELS_FILE = "labels.json"
"""`<store>/<dataset>/<arch>/labels.json`: `{"stable": 1, "canary": 2}`, version labels of a model."""

VersionKey = tuple[str, str, int]
"""(dataset, arch, version)."""


@dataclass(frozen=True, slots=True)
class FailedVersion:
    """A version folder that was refused, and why (shown in `/models` and `/readyz`)."""

    dataset: str
    arch: str
    version: int
    reason: str


@dataclass(slots=True)
class RefreshReport:
    """What one pass over the store changed."""

    loaded: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def select_versions(versions: list[int], policy: str) -> list[int]:
    """The versions a policy serves, as TF Serving's model version policy.

    Args:
        versions: The model's versions in the store.
        policy: `all`, `latest:N` (the N highest) or `specific:1,3`.

    Raises:
        ValueError: Not a policy.
    """
    kind, _, argument = policy.partition(":")
    if kind == "all" and not argument:
        return sorted(versions)
    if kind == "latest" and argument.isdigit() and int(argument) >= 1:
        return sorted(versions)[-int(argument) :]
    if kind == "specific" and argument:
        wanted = {int(item) for item in argument.split(",") if item.strip().isdigit()}
        return sorted(set(versions) & wanted)
    raise ValueError(f"version policy {policy!r} is not all, latest:N or specific:V1,V2")


class ModelRegistry:
    """Every loaded model version by dataset, architecture and version; the refused ones;
    the version labels.

    Args:
        settings: Where the store is, how to load and batch each model, which versions serve.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default_dataset = settings.default_dataset
        self.default_models = dict(settings.default_models)
        self.required = list(settings.required_models)
        self._models: dict[tuple[str, str], dict[int, ServedModel]] = {}
        self._failed: dict[VersionKey, tuple[float, FailedVersion]] = {}
        self._labels: dict[tuple[str, str], dict[str, int]] = {}
        self._disabled: set[VersionKey] = set()
        self._lock = asyncio.Lock()
        self._draining: set[asyncio.Task[None]] = set()
        self.admission: Admission | None = None
        self.limiter: anyio.CapacityLimiter | None = None

    @property
    def failed(self) -> list[FailedVersion]:
        """The versions refused at load, in order."""
        return [failure for _, (_, failure) in sorted(self._failed.items())]

    async def start(self, limiter: anyio.CapacityLimiter, admission: Admission) -> RefreshReport:
        """Load the store, every model sharing one worker pool and one bound on requests in flight."""
        self.limiter, self.admission = limiter, admission
        return await self.refresh()

    async def stop(self, *, drain_seconds: float = 0.0) -> None:
        """Stop every model's pipeline, answering what is queued first (at most `drain_seconds`)."""
        for model in list(self):
            await model.stop(drain_seconds=drain_seconds)
        for task in list(self._draining):
            task.cancel()

    def _wanted(self) -> dict[VersionKey, Path]:
        """The version folders that should serve: in the store, allowed by the policy, not unloaded."""
        by_model: dict[tuple[str, str], dict[int, Path]] = {}
        for dataset, arch, version, folder in version_folders(self.settings.models_dir, bare=True):
            by_model.setdefault((dataset, arch), {})[version] = folder
        self._read_labels()
        self._disabled = self._read_unloaded()
        wanted = {}
        for (dataset, arch), folders in by_model.items():
            policy = self.settings.version_policy_for(f"{dataset}/{arch}")
            # As TF Serving: versions a label names serve whatever the policy.
            labelled = set(self._labels.get((dataset, arch), {}).values()) & set(folders)
            for version in sorted(set(select_versions(list(folders), policy)) | labelled):
                if (dataset, arch, version) not in self._disabled:
                    wanted[(dataset, arch, version)] = folders[version]
        return wanted

    def _read_unloaded(self) -> set[VersionKey]:
        """The versions the store's `unloaded.json` files keep from serving."""
        unloaded: set[VersionKey] = set()
        for path in self.settings.models_dir.glob(f"*/*/{UNLOADED_FILE}"):
            try:
                versions = json.loads(path.read_text())
                if not isinstance(versions, list):
                    raise ValueError("not a list")
                unloaded |= {(path.parent.parent.name, path.parent.name, int(version)) for version in versions}
            except (OSError, ValueError, TypeError) as error:
                logger.error("ignored %s: %s", path.relative_to(self.settings.models_dir), error)
        return unloaded

    def _read_labels(self) -> None:
        labels: dict[tuple[str, str], dict[str, int]] = {}
        for path in self.settings.models_dir.glob(f"*/*/{LABELS_FILE}"):
            try:
                raw = json.loads(path.read_text())
                if not isinstance(raw, dict):
                    raise ValueError("not an object")
                labels[(path.parent.parent.name, path.parent.name)] = {str(k): int(v) for k, v in raw.items()}
            except (OSError, ValueError, TypeError) as error:
                logger.error("ignored %s: %s", path.relative_to(self.settings.models_dir), error)
        self._labels = labels

    async def refresh(self) -> RefreshReport:
        """Bring the loaded versions in step with the store and re-read the labels.

        New versions are loaded and warmed up off the event loop before they take traffic;
        removed ones are unloaded once their requests are answered. A version that failed
        is tried again only when its `metadata.json` changes.
        """
        report = RefreshReport()
        async with self._lock:
            wanted = await anyio.to_thread.run_sync(self._wanted)
            loaded = {(model.dataset, model.arch, model.version) for model in self}
            for key in sorted(set(wanted) - loaded):
                folder = wanted[key]
                stamp = _stamp(folder)
                if key in self._failed and self._failed[key][0] == stamp:
                    continue
                model = await self._load(key, folder, stamp, report)
                if model is not None:
                    await model.start(self.limiter)  # type: ignore[arg-type]
                    versions = dict(self._models.get(key[:2], {}))
                    versions[key[2]] = model
                    self._models[key[:2]] = versions  # the swap: one assignment
                    report.loaded.append(_name(key))
            for key in sorted(loaded - set(wanted)):
                self._unload(key)
                report.unloaded.append(_name(key))
            for key in list(self._failed):
                if key not in wanted:
                    del self._failed[key]
            await anyio.to_thread.run_sync(self._read_labels)
        return report

    def _loads_on_start(self, key: VersionKey) -> bool:
        """Whether a version loads at start (`LOAD_ON_START`): with `defaults`, those of the
        default and required models and those a label names; the rest on first use."""
        if self.settings.load_on_start == "all":
            return True
        dataset, arch, version = key
        return (
            self.default_models.get(dataset) == arch
            or f"{dataset}/{arch}" in self.required
            or version in self._labels.get((dataset, arch), {}).values()
        )

    async def _load(self, key: VersionKey, folder: Path, stamp: float, report: RefreshReport) -> ServedModel | None:
        settings = self.settings
        model_id = f"{key[0]}/{key[1]}"
        defer = not self._loads_on_start(key)
        try:
            model = await anyio.to_thread.run_sync(
                lambda: ServedModel.load(
                    folder,
                    batching=settings.batching_for(model_id),
                    limits=settings.input_limits,
                    warm_up=settings.warmup,
                    infer_metadata=settings.infer_metadata,
                    defer=defer,
                )
            )
        except ModelLoadError as error:
            logger.error("refused %s v%d (%s): %s", model_id, key[2], _relative(folder, settings), error)
            self._failed[key] = (stamp, FailedVersion(*key, str(error)))
            report.failed.append(_name(key))
            return None
        self._failed.pop(key, None)
        if not model.loaded:
            logger.info("checked %s v%d in %.2f s; it loads on its first request", model_id, key[2], model.load_seconds)
            return model
        logger.info("loaded %s v%d in %.2f s", model_id, key[2], model.load_seconds)
        metrics.MODEL_LOADED.labels(model_id, str(key[2])).set(1)
        metrics.MODEL_LOAD_DURATION.labels(model_id, str(key[2])).set(model.load_seconds)
        return model

    def _unload(self, key: VersionKey) -> None:
        """Take a version out of service now; stop it once its requests are answered."""
        versions = dict(self._models.get(key[:2], {}))
        model = versions.pop(key[2])
        if versions:
            self._models[key[:2]] = versions
        else:
            del self._models[key[:2]]
        metrics.MODEL_LOADED.labels(model.model_id, str(model.version)).set(0)
        task = asyncio.get_running_loop().create_task(self._drain(model))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _drain(self, model: ServedModel) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_seconds
        while model.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await model.stop(drain_seconds=max(0.0, deadline - loop.time()))
        logger.info("unloaded %s v%d", model.model_id, model.version)

    async def set_enabled(self, dataset: str, arch: str, version: int, *, enabled: bool) -> RefreshReport:
        """Unload a version that is in the store (until it is loaded again), or load it back.

        The choice is written to the model's `unloaded.json` in the store (`UNLOADED_FILE`),
        then this worker refreshes at once; the other workers follow at their next poll
        (`MODEL_POLL_SECONDS`) and a restart keeps it.

        Raises:
            ModelNotFound: The store has no such version (404).
            Conflict: The store is read-only, as in the container image under a read-only
                root filesystem (409): change the store where it is built instead.
        """
        key = (dataset, arch, version)
        folders = {(d, a, v) for d, a, v, _ in version_folders(self.settings.models_dir, bare=True)}
        if key not in folders:
            raise ModelNotFound(f"the store has no {dataset}/{arch} v{version}")
        path = self.settings.models_dir / dataset / arch / UNLOADED_FILE
        unloaded = {v for d, a, v in self._read_unloaded() if (d, a) == (dataset, arch)}
        unloaded = unloaded - {version} if enabled else unloaded | {version}
        try:
            if unloaded:
                staged = path.with_suffix(".json.tmp")
                staged.write_text(json.dumps(sorted(unloaded)) + "\n")
                staged.replace(path)  # atomic: a poll reads the old list or the new one
            else:
                path.unlink(missing_ok=True)
        except OSError as error:
            raise Conflict(
                f"the model store cannot be written ({error.strerror}); unloading is kept in "
                f"{dataset}/{arch}/{UNLOADED_FILE} of the store, which is read-only here"
            ) from error
        return await self.refresh()

    def not_ready_reason(self) -> str | None:
        """Why the service should not take traffic (draining, no model, a required model
        missing), or None when it is ready."""
        if self.admission is not None and self.admission.draining:
            return "the server is stopping (SIGTERM); requests in flight are finishing"
        if not len(self):
            return "no models loaded; check MODELS_DIR"
        missing = [model_id for model_id in self.required if tuple(model_id.partition("/")[::2]) not in self._models]
        if missing:
            return f"required models not loaded: {', '.join(missing)} (REQUIRED_MODELS)"
        return None

    def __iter__(self) -> Iterator[ServedModel]:
        """Every loaded version of every model."""
        for versions in list(self._models.values()):
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._models.values())

    def newest(self) -> list[ServedModel]:
        """The newest version of every model, sorted by dataset and architecture."""
        return [versions[max(versions)] for _, versions in sorted(self._models.items())]

    def labels(self, dataset: str, arch: str) -> dict[str, int]:
        """The version labels of `dataset/arch` that point at loaded versions."""
        versions = self._models.get((dataset, arch), {})
        return {
            label: version for label, version in self._labels.get((dataset, arch), {}).items() if version in versions
        }

    def versions(self, dataset: str, arch: str) -> dict[int, ServedModel]:
        """Every loaded version of `dataset/arch`.

        Raises:
            ModelNotFound: No such model (404).
        """
        versions = self._models.get((dataset, arch))
        if not versions:
            known = ", ".join(f"{d}/{a}" for d, a in sorted(self._models)) or "none"
            raise ModelNotFound(f"no model {dataset}/{arch}; loaded models: {known}")
        return versions

    def get(self, model: str, *, dataset: str | None = None, version: int | str | None = None) -> ServedModel:
        """Resolve a model reference.

        Args:
            model: `arch`, `dataset/arch`, or a dataset name alone for its default model
                (`DEFAULT_MODELS`).
            dataset: Dataset when `model` is a bare architecture; default `default_dataset`.
            version: Version number, a version label (`stable`), or None for the newest.

        Raises:
            ModelNotFound: Unknown model, version or label (404).
        """
        if "/" in model:
            prefix, _, arch = model.partition("/")
            if dataset is not None and dataset != prefix:
                raise ModelNotFound(f"model {model!r} contradicts dataset={dataset!r}")
            dataset = prefix
        elif dataset is None and model in self.default_models:
            dataset, arch = model, self.default_models[model]
        else:
            arch = model
        dataset = dataset or self.default_dataset
        versions = self.versions(dataset, arch)
        if version is None:
            return versions[max(versions)]
        if isinstance(version, str) and not version.isdigit():
            labels = self.labels(dataset, arch)
            if version not in labels:
                raise ModelNotFound(
                    f"model {dataset}/{arch} has no version label {version!r}; labels: {sorted(labels)}"
                )
            version = labels[version]
        try:
            return versions[int(version)]
        except KeyError:
            policy = self.settings.version_policy_for(f"{dataset}/{arch}")
            raise ModelNotFound(
                f"model {dataset}/{arch} has no version {version} loaded; versions: {sorted(versions)} "
                f"(version policy {policy!r} and the labels of labels.json; VERSION_POLICY=all serves every "
                "version in the store)"
            ) from None


def _stamp(folder: Path) -> float:
    """When the version's description last changed: its `metadata.json`, else its SavedModel."""
    for name in (METADATA_FILE, SAVED_MODEL_FILE):
        with contextlib.suppress(OSError):
            return (folder / name).stat().st_mtime
    return 0.0


def _name(key: VersionKey) -> str:
    return f"{key[0]}/{key[1]} v{key[2]}"


def _relative(folder: Path, settings: Settings) -> str:
    try:
        return str(folder.relative_to(settings.models_dir))
    except ValueError:
        return folder.name
