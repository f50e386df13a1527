"""FastAPI dependencies: settings, the model registry, and the model a request names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.config import Settings, get_settings
from app.errors import NotReady
from app.registry import LoadedModel, ModelRegistry

__all__ = ["ModelDep", "RegistryDep", "SettingsDep", "get_model", "get_registry", "settings_in_use"]

# Dependencies are coroutines: FastAPI runs plain `def` dependencies in a worker thread,
# a hop that costs more than the lookups themselves.

NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
MODEL_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}(/[A-Za-z0-9_.\-]{1,64})?$"


async def settings_in_use(request: Request) -> Settings:
    """The settings the lifespan started with (`get_settings()`, or a test's override of it).

    A coroutine, so FastAPI resolves it on the event loop instead of a thread.
    """
    settings = getattr(request.state, "settings", None)
    return settings if settings is not None else get_settings()


SettingsDep = Annotated[Settings, Depends(settings_in_use)]


async def get_registry(request: Request) -> ModelRegistry:
    """The registry the lifespan loaded.

    Raises:
        NotReady: The models are not loaded (503).
    """
    registry = getattr(request.state, "registry", None)
    if registry is None:
        raise NotReady("models are still loading; retry shortly")
    return registry


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


async def get_model(
    registry: RegistryDep,
    model: Annotated[
        str,
        Query(
            description="architecture (`custom2`) or `dataset/arch` (`fashion_mnist/custom2`)",
            pattern=MODEL_PATTERN,
            examples=["custom2"],
        ),
    ],
    dataset: Annotated[
        str | None, Query(description="dataset of the model; default `mnist`", pattern=NAME_PATTERN)
    ] = None,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="version; default the newest")] = None,
) -> LoadedModel:
    """Resolve the `model`, `dataset` and `version` query parameters.

    Raises:
        ModelNotFound: No such model or version (404).
    """
    return registry.get(model, dataset=dataset, version=version)


ModelDep = Annotated[LoadedModel, Depends(get_model)]
