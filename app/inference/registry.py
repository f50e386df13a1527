"""The registry: finds the loaded model a request names. It only finds; `ServedModel` serves."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from app import metrics
from app.errors import ModelNotFound
from app.inference.model import Admission, ModelLoadError, ServedModel
from modelstore import version_folders

if TYPE_CHECKING:
    from app.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["FailedVersion", "ModelRegistry"]


@dataclass(frozen=True, slots=True)
class FailedVersion:
    """A version folder that was refused, and why (shown in `/models` and `/readyz`)."""

    dataset: str
    arch: str
    version: int
    reason: str


class ModelRegistry:
    """Every loaded model version by dataset, architecture and version, and the refused ones.

    Args:
        models: The loaded versions.
        failed: The versions that could not be loaded.
        default_dataset: Dataset of a bare architecture name.
        required: `dataset/arch` models without which the service is not ready.
    """

    def __init__(
        self,
        models: list[ServedModel],
        failed: list[FailedVersion] | None = None,
        *,
        default_dataset: str = "mnist",
        required: list[str] | None = None,
    ) -> None:
        self._models: dict[tuple[str, str], dict[int, ServedModel]] = {}
        for model in models:
            self._models.setdefault((model.dataset, model.arch), {})[model.version] = model
        self.failed = list(failed or [])
        self.default_dataset = default_dataset
        self.required = list(required or [])
        self.admission: Admission | None = None

    @classmethod
    def load(cls, settings: Settings) -> ModelRegistry:
        """Load every version folder of `settings.models_dir`; blocking.

        A version that fails to load is logged in one line and listed in `failed`; the
        others still serve.
        """
        models, failed = [], []
        for dataset, arch, version, folder in version_folders(settings.models_dir):
            try:
                model = ServedModel.load(
                    folder,
                    batching=settings.batching_for(f"{dataset}/{arch}"),
                    limits=settings.input_limits,
                    warm_up=settings.warmup,
                )
            except ModelLoadError as error:
                logger.error("refused %s/%s v%d (%s): %s", dataset, arch, version, _relative(folder, settings), error)
                failed.append(FailedVersion(dataset, arch, version, str(error)))
                continue
            logger.info("loaded %s/%s v%d in %.2f s", dataset, arch, version, model.load_seconds)
            metrics.MODEL_LOADED.labels(model.model_id, str(version)).set(1)
            metrics.MODEL_LOAD_DURATION.labels(model.model_id, str(version)).set(model.load_seconds)
            models.append(model)
        return cls(models, failed, default_dataset=settings.default_dataset, required=settings.required_models)

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

    async def start(self, limiter: anyio.CapacityLimiter, admission: Admission) -> None:
        """Start every model's pipeline, all sharing one worker pool and one bound on requests in flight."""
        self.admission = admission
        for model in self:
            await model.start(limiter, admission)

    async def stop(self, *, drain_seconds: float = 0.0) -> None:
        """Stop every model's pipeline, answering what is queued first (at most `drain_seconds`)."""
        for model in self:
            await model.stop(drain_seconds=drain_seconds)

    def __iter__(self) -> Iterator[ServedModel]:
        """Every loaded version of every model."""
        for versions in self._models.values():
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._models.values())

    def newest(self) -> list[ServedModel]:
        """The newest version of every model, sorted by dataset and architecture."""
        return [versions[max(versions)] for _, versions in sorted(self._models.items())]

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

    def get(self, model: str, *, dataset: str | None = None, version: int | None = None) -> ServedModel:
        """Resolve a model reference.

        Args:
            model: `arch` or `dataset/arch`.
            dataset: Dataset when `model` is a bare architecture; default `default_dataset`.
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
        dataset = dataset or self.default_dataset
        versions = self.versions(dataset, arch)
        if version is None:
            return versions[max(versions)]
        try:
            return versions[version]
        except KeyError:
            raise ModelNotFound(
                f"model {dataset}/{arch} has no version {version}; versions: {sorted(versions)}"
            ) from None


def _relative(folder: Path, settings: Settings) -> str:
    try:
        return str(folder.relative_to(settings.models_dir))
    except ValueError:
        return folder.name
