"""FastAPI dependencies: settings, the model registry, and the model a request names.

Both live in the application's state, set by the lifespan; nothing reads a module global.
Dependencies are coroutines: FastAPI runs plain `def` dependencies in a worker thread, a
hop that costs more than the lookups themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.config import Settings
from app.errors import NotReady
from app.inference import ModelRegistry, ServedModel

__all__ = ["MODEL_PATTERN", "NAME_PATTERN", "ModelDep", "RegistryDep", "SettingsDep", "get_model", "get_registry"]

NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
MODEL_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}(/[A-Za-z0-9_.\-]{1,64})?$"


async def get_settings(request: Request) -> Settings:
    """The settings the lifespan started with."""
    return request.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


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
        str | None,
        Query(description="dataset of the model; default `DEFAULT_DATASET` (`mnist`)", pattern=NAME_PATTERN),
    ] = None,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="version; default the newest")] = None,
) -> ServedModel:
    """Resolve the `model`, `dataset` and `version` query parameters.

    Raises:
        ModelNotFound: No such model or version (404).
    """
    return registry.get(model, dataset=dataset, version=version)


ModelDep = Annotated[ServedModel, Depends(get_model)]
