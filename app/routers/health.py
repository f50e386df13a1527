"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import RegistryDep
from app.errors import NotReady
from app.routers.models import failed_models
from app.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """Answers 200 while the process serves requests."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"description": "not ready"}}, summary="Readiness")
async def readyz(registry: RegistryDep) -> Readiness:
    """200 once the models (and every `REQUIRED_MODELS`) are loaded and warmed up; 503 before and while
    draining on SIGTERM. Lists versions refused at load."""
    reason = registry.not_ready_reason()
    if reason:
        raise NotReady(reason)
    return Readiness(status="ready", models=len(registry), failed=failed_models(registry.failed))
