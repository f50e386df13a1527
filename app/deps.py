"""FastAPI dependencies and parameters: settings, the model registry, the model a request
names and its deadline.

Both live in the application's state, set by the lifespan; nothing reads a module global.
Dependencies are coroutines: FastAPI runs plain `def` dependencies in a worker thread, a
hop that costs more than the lookups themselves. The prediction routes use none but the API
key check: they declare the model's query parameters (`ModelQuery`, `DatasetQuery`,
`VersionQuery`) and `X-Request-Timeout` (`RequestTimeoutHeader`) themselves, and reach the
state through `settings_of` and `registry_of`. FastAPI solves every dependency of a request
anew with a pass over its path, query, header and cookie parameters, a measurable share of a
request (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from starlette.convertors import Convertor, register_url_convertor

from app.config import Settings
from app.errors import NotReady
from app.inference import ModelRegistry

__all__ = [
    "MAX_REQUEST_TIMEOUT",
    "MODEL_PATTERN",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "DatasetQuery",
    "ModelQuery",
    "RegistryDep",
    "RequestTimeoutHeader",
    "SettingsDep",
    "VersionQuery",
    "deadline_after",
    "get_registry",
    "registry_of",
    "settings_of",
]

NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
VERSION_PATTERN = r"^([0-9]{1,10}|[A-Za-z][A-Za-z0-9_\-]{0,31})$"
"""A version number or a version label (`stable`, `canary`)."""


class VersionRefConvertor(Convertor[str]):
    """A path segment that is a version number or a version label."""

    regex = r"[0-9]{1,10}|[A-Za-z][A-Za-z0-9_\-]{0,31}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("version_ref", VersionRefConvertor())

VersionQuery = Annotated[
    str | None,
    Query(pattern=VERSION_PATTERN, description="version number or label (`stable`); default the newest"),
]
MODEL_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}(/[A-Za-z0-9_.\-]{1,64})?$"


def settings_of(request: Request) -> Settings:
    """The settings the lifespan started with."""
    return request.state.settings


def registry_of(request: Request) -> ModelRegistry:
    """The registry the lifespan loaded.

    Raises:
        NotReady: The models are not loaded (503).
    """
    registry = getattr(request.state, "registry", None)
    if registry is None:
        raise NotReady("models are still loading; retry shortly")
    return registry


async def get_settings(request: Request) -> Settings:
    """The settings the lifespan started with (`settings_of` as a dependency)."""
    return settings_of(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_registry(request: Request) -> ModelRegistry:
    """The registry the lifespan loaded (`registry_of` as a dependency).

    Raises:
        NotReady: The models are not loaded (503).
    """
    return registry_of(request)


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


ModelQuery = Annotated[
    str,
    Query(
        description="architecture (`custom2`), `dataset/arch` (`fashion_mnist/custom2`), "
        "or a dataset (`mnist`) for its default model (`DEFAULT_MODELS`)",
        pattern=MODEL_PATTERN,
        examples=["custom2"],
    ),
]
DatasetQuery = Annotated[
    str | None,
    Query(description="dataset of the model; default `DEFAULT_DATASET` (`mnist`)", pattern=NAME_PATTERN),
]
MAX_REQUEST_TIMEOUT = 86400.0
"""The longest `X-Request-Timeout`, seconds, and its default; `REQUEST_TIMEOUT_SECONDS` caps it."""
RequestTimeoutHeader = Annotated[
    float,
    Header(
        ge=0.1,
        le=MAX_REQUEST_TIMEOUT,
        description="seconds the client will wait; work still queued then is dropped (504). "
        "REQUEST_TIMEOUT_SECONDS is the default and the upper bound",
    ),
]
"""`X-Request-Timeout`, seconds; a parameter of every prediction route."""


def deadline_after(request: Request, timeout: float = MAX_REQUEST_TIMEOUT) -> float:
    """Event-loop time (seconds) by which a request's answer is due: `REQUEST_TIMEOUT_SECONDS`
    after it arrived, or `timeout` seconds if the client asked for less."""
    arrived = request.scope.get("arrived_at") or asyncio.get_running_loop().time()
    return arrived + min(timeout, settings_of(request).request_timeout_seconds)
