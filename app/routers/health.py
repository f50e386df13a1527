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
    """Answers 200 once the models are loaded and warmed up, 503 before; lists versions refused at load."""
    if not len(registry):
        raise NotReady("no models loaded; check MODELS_DIR")
    return Readiness(status="ready", models=len(registry), failed=failed_models(registry.failed))
