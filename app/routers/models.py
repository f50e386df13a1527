"""`/models`: the loaded models, their metadata and their training reports."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from app.deps import NAME_PATTERN, RegistryDep, VersionQuery
from app.errors import ModelNotFound
from app.inference import FailedVersion, ServedModel
from app.routers.predict import ERROR_RESPONSES
from app.schemas import FailedModel, ModelDetail, ModelList, ModelSummary
from modelstore import REPORT_IMAGES

router = APIRouter(prefix="/models", tags=["models"], responses=ERROR_RESPONSES)

ReportName = Literal["history", "confusion_matrix", "errors"]
DatasetPath = Annotated[str, Path(pattern=NAME_PATTERN, examples=["mnist"])]
ArchPath = Annotated[str, Path(pattern=NAME_PATTERN, examples=["custom2"])]


def report_urls(model: ServedModel) -> list[str]:
    """URLs of the model's report images that exist in its folder."""
    return [
        f"/models/{model.dataset}/{model.arch}/report/{name}.png?version={model.version}"
        for name in REPORT_IMAGES
        if (model.path / f"{name}.png").is_file()
    ]


def failed_models(failed: list[FailedVersion]) -> list[FailedModel]:
    """The refused versions as `/models` and `/readyz` list them."""
    return [
        FailedModel(model=f"{item.dataset}/{item.arch}", version=item.version, reason=item.reason) for item in failed
    ]


def summarize(model: ServedModel, versions: list[int], labels: dict[str, int], *, default: bool) -> ModelSummary:
    """The `/models` entry of a model."""
    metadata = model.metadata
    return ModelSummary(
        model=model.model_id,
        dataset=model.dataset,
        arch=model.arch,
        version=model.version,
        versions=versions,
        input_shape=list(model.input_shape),
        parameter_count=metadata.parameter_count,
        class_names=model.class_names,
        preprocessing=model.preprocessing,
        source=metadata.source,
        metrics=metadata.metrics,
        test_accuracy=metadata.test_accuracy,
        epochs_run=metadata.epochs_run,
        training_seconds=metadata.training_seconds,
        reports=report_urls(model),
        labels=labels,
        default=default,
    )


@router.get("", response_model=ModelList, summary="List models")
def list_models(registry: RegistryDep) -> ModelList:
    """Every loaded model (newest version) with its accuracies, by dataset then test accuracy; refused versions."""
    summaries = [
        summarize(
            model,
            sorted(registry.versions(model.dataset, model.arch)),
            registry.labels(model.dataset, model.arch),
            default=registry.default_models.get(model.dataset) == model.arch,
        )
        for model in registry.newest()
    ]
    summaries.sort(key=lambda item: (item.dataset, -(item.test_accuracy or 0.0)))
    return ModelList(models=summaries, failed=failed_models(registry.failed))


@router.get("/{dataset}/{arch}", response_model=ModelDetail, summary="Model metadata")
def get_model_detail(
    registry: RegistryDep,
    dataset: DatasetPath,
    arch: ArchPath,
    version: VersionQuery = None,
) -> ModelDetail:
    """One model's metadata: recipe, metrics, confusion matrix, per-class precision and recall (no local paths)."""
    model = registry.get(arch, dataset=dataset, version=version)
    return ModelDetail(
        model=model.model_id,
        dataset=model.dataset,
        arch=model.arch,
        version=model.version,
        versions=sorted(registry.versions(dataset, arch)),
        report_urls=report_urls(model),
        metadata=model.metadata.public(),
    )


@router.get(
    "/{dataset}/{arch}/report/{name}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}},
    summary="Training report image",
)
def get_report(
    registry: RegistryDep,
    dataset: DatasetPath,
    arch: ArchPath,
    name: ReportName,
    version: VersionQuery = None,
) -> FileResponse:
    """A training report image: `history`, `confusion_matrix` or `errors`."""
    model = registry.get(arch, dataset=dataset, version=version)
    path = model.path / f"{name}.png"
    if not path.is_file():
        raise ModelNotFound(f"{model.model_id} v{model.version} has no {name} report")
    return FileResponse(path, media_type="image/png")
