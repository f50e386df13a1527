"""FastAPI dependencies and parameters: settings, the model registry, the model a request
names and its deadline.

Both live in the application's state, set by the lifespan; nothing reads a module global.
Dependencies are coroutines: FastAPI runs plain `def` dependencies in a worker thread, a
hop that costs more than the lookups themselves.

The prediction routes use no dependency but the API key check and declare no parameter
but their path: they validate their query (`ModelParameters` and their own) and
`X-Request-Timeout` (`TimeoutHeader`, through `deadline_after`) with one pydantic model
each, and reach the state through `settings_of` and `registry_of`. FastAPI solves every
declared parameter and dependency anew on each request, a measurable share of a small
request's cost (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, ClassVar, Literal, Self

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.convertors import Convertor, register_url_convertor

from app.config import Settings
from app.errors import NotReady
from app.inference import ModelRegistry, ServedModel
from modelstore import NAME_PATTERN

__all__ = [
    "MAX_REQUEST_TIMEOUT",
    "MODEL_PATTERN",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "ModelNamePath",
    "ModelParameters",
    "Parameters",
    "RegistryDep",
    "SettingsDep",
    "TimeoutHeader",
    "VersionQuery",
    "deadline_after",
    "get_registry",
    "registry_of",
    "resolve_model_name",
    "settings_of",
]

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


class Parameters(BaseModel):
    """The query or header parameters of a prediction route, validated in one pydantic call.

    FastAPI (0.165) re-derives every declared parameter's aliases and type on each request,
    a cost that grows with their number (docs/performance.md); the prediction routes take
    only the `Request` and read their parameters with `of`, and `openapi` documents them as
    FastAPI would. Unknown parameters are ignored, as FastAPI does.

    Subclasses set `location` (`query` or `header`; header fields take their header name as
    alias, e.g. `x-request-timeout`).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    location: ClassVar[Literal["query", "header"]] = "query"

    @classmethod
    def of(cls, request: Request) -> Self:
        """The parameters of `request` (the last value of a repeated one).

        Raises:
            RequestValidationError: A parameter is missing or invalid (422, FastAPI's own
                error with the location `[location, name]`).
        """
        source = request.query_params if cls.location == "query" else request.headers
        try:
            return cls.model_validate(dict(source))
        except ValidationError as error:
            raise RequestValidationError(
                [{**item, "loc": (cls.location, *item["loc"])} for item in error.errors(include_url=False)]
            ) from None

    @classmethod
    def openapi(cls) -> list[dict[str, Any]]:
        """OpenAPI parameter objects for the fields, as FastAPI writes declared parameters."""
        schema = cls.model_json_schema(by_alias=True)
        required = set(schema.get("required", ()))
        return [
            {
                "name": name,
                "in": cls.location,
                "required": name in required,
                "schema": field,
                "description": field.get("description", ""),
            }
            for name, field in schema["properties"].items()
        ]


MODEL_DESCRIPTION = (
    "architecture (`custom2`), `dataset/arch` (`fashion_mnist/custom2`), "
    "or a dataset (`mnist`) for its default model (`DEFAULT_MODELS`)"
)
DATASET_DESCRIPTION = "dataset of the model; default `DEFAULT_DATASET` (`mnist`)"
VERSION_DESCRIPTION = "version number or label (`stable`); default the newest"


class ModelParameters(Parameters):
    """`model`, `dataset` and `version`: which model version a `/predict` request names."""

    model: str = Field(description=MODEL_DESCRIPTION, pattern=MODEL_PATTERN, examples=["custom2"])
    dataset: str | None = Field(default=None, description=DATASET_DESCRIPTION, pattern=NAME_PATTERN)
    version: str | None = Field(default=None, description=VERSION_DESCRIPTION, pattern=VERSION_PATTERN)


VersionQuery = Annotated[str | None, Query(pattern=VERSION_PATTERN, description=VERSION_DESCRIPTION)]
"""`version` as a declared parameter, for the routes that describe models."""

MAX_REQUEST_TIMEOUT = 86400.0
"""The longest `X-Request-Timeout`, seconds, and its default; `REQUEST_TIMEOUT_SECONDS` caps it."""


class TimeoutHeader(Parameters):
    """`X-Request-Timeout`, seconds; a parameter of every prediction route."""

    location: ClassVar[Literal["query", "header"]] = "header"
    x_request_timeout: float = Field(
        default=MAX_REQUEST_TIMEOUT,
        alias="x-request-timeout",
        title="X-Request-Timeout",
        ge=0.1,
        le=MAX_REQUEST_TIMEOUT,
        description="seconds the client will wait; work still queued then is dropped (504). "
        "REQUEST_TIMEOUT_SECONDS is the default and the upper bound",
    )


def deadline_after(request: Request) -> float:
    """Event-loop time (seconds) by which a request's answer is due: `REQUEST_TIMEOUT_SECONDS`
    after it arrived, or sooner if the client's `X-Request-Timeout` asks for less.

    Raises:
        RequestValidationError: `X-Request-Timeout` is not a number of seconds in
            [0.1, 86400] (422).
    """
    timeout = TimeoutHeader.of(request).x_request_timeout if "x-request-timeout" in request.headers else None
    arrived = request.scope.get("arrived_at") or asyncio.get_running_loop().time()
    limit = settings_of(request).request_timeout_seconds
    return arrived + (limit if timeout is None else min(timeout, limit))


ModelNamePath = Annotated[str, Path(description="`<dataset>-<arch>`", examples=["mnist-custom2"])]
"""A model's name in the TF Serving and v2 routes: `<dataset>-<arch>`, or a dataset's default."""


def resolve_model_name(registry: ModelRegistry, name: str, version: int | str | None) -> ServedModel:
    """The model a TF Serving or v2 route names: `<dataset>-<arch>` at `version`, a number or a
    label (default newest); a name without `-` is a dataset's default model (`mnist`) or an
    architecture of `DEFAULT_DATASET`.

    Raises:
        ModelNotFound: No such model or version (404).
    """
    dataset, separator, arch = name.partition("-")
    if not separator:
        return registry.get(name, version=version)
    return registry.get(arch, dataset=dataset, version=version)
