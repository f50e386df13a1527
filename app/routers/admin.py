"""`/admin`: management of the loaded model versions, behind the admin key (`ADMIN_API_KEYS`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from app.deps import NAME_PATTERN, RegistryDep
from app.errors import error_responses
from app.inference.registry import RefreshReport
from app.schemas import ErrorResponse
from app.security import require_admin_key

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses=error_responses(ErrorResponse, 401, 403, 404, 409, 422, 503),
)

DatasetPath = Annotated[str, Path(pattern=NAME_PATTERN, examples=["mnist"])]
ArchPath = Annotated[str, Path(pattern=NAME_PATTERN, examples=["custom2"])]
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


class StoreChanges(BaseModel):
    """What a pass over the store changed."""

    loaded: list[str] = Field(examples=[["mnist/custom2 v2"]])
    unloaded: list[str] = Field(examples=[[]])
    failed: list[str] = Field(examples=[[]])


def _changes(report: RefreshReport) -> StoreChanges:
    return StoreChanges(loaded=report.loaded, unloaded=report.unloaded, failed=report.failed)


@router.post("/reload", response_model=StoreChanges, summary="Reload the store")
async def reload(registry: RegistryDep) -> StoreChanges:
    """Check the store now (as the poll does): load new versions, unload removed ones, re-read labels."""
    return _changes(await registry.refresh())


@router.post("/models/{dataset}/{arch}/versions/{version}/unload", response_model=StoreChanges, summary="Unload")
async def unload(registry: RegistryDep, dataset: DatasetPath, arch: ArchPath, version: VersionPath) -> StoreChanges:
    """Stop serving a version that is in the store (it drains, then is unloaded) until it is loaded again;
    kept in the store's `unloaded.json`, so every worker (at its next poll) and a restart follow it."""
    return _changes(await registry.set_enabled(dataset, arch, version, enabled=False))


@router.post("/models/{dataset}/{arch}/versions/{version}/load", response_model=StoreChanges, summary="Load")
async def load(registry: RegistryDep, dataset: DatasetPath, arch: ArchPath, version: VersionPath) -> StoreChanges:
    """Serve again a version that was unloaded (loaded and warmed up before it takes traffic)."""
    return _changes(await registry.set_enabled(dataset, arch, version, enabled=True))
