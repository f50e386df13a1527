"""A TensorFlow Serving-compatible REST surface, so existing TF Serving clients work unchanged.

Model names are `<dataset>-<arch>` (e.g. `mnist-custom2`). Implemented from the TF
Serving REST API: predict (row `instances` and columnar `inputs` formats), model status
and model metadata; errors are `{"error": "<message>"}` as TF Serving sends them. An
instance is the model's input tensor as nested lists (float, (H, W, C) or (H, W), values
in [0, 1]) or `{"b64": "<base64 image file>"}`, which is decoded and preprocessed like an
upload to `/predict`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from app.config import Settings
from app.deps import RegistryDep, SettingsDep
from app.errors import BadRequest, ModelNotFound
from app.preprocessing import prepare_image_async
from app.registry import SIGNATURE, LoadedModel, ModelRegistry


class TFServingError(BaseModel):
    """TF Serving's error body."""

    error: str = Field(examples=["Servable not found for request: Latest(mnist-nosuch)"])


router = APIRouter(
    prefix="/v1/models",
    tags=["tensorflow-serving"],
    responses={
        400: {"model": TFServingError, "description": "malformed request"},
        404: {"model": TFServingError, "description": "unknown model or version"},
        413: {"model": TFServingError, "description": "body over MAX_UPLOAD_BYTES or image too large"},
        415: {"model": TFServingError, "description": "a b64 instance is not a decodable image"},
        503: {"model": TFServingError, "description": "models not loaded yet"},
    },
)

NamePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.]{1,64}-[A-Za-z0-9_.]{1,64}$", examples=["mnist-custom2"])]
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1)]

PREDICT_EXAMPLE = {"instances": [{"b64": "iVBORw0KGgoAAAANSUhEUgAA..."}]}


def resolve(registry: ModelRegistry, name: str, version: int | None) -> LoadedModel:
    """The model `<dataset>-<arch>` at `version` (default newest).

    Raises:
        ModelNotFound: No such model or version (404).
    """
    dataset, _, arch = name.partition("-")
    return registry.get(arch, dataset=dataset, version=version)


def _instance_to_input(instance: Any, model: LoadedModel, max_pixels: int) -> np.ndarray | bytes:
    """Validate one instance: a tensor becomes float32 (H, W, C); `{"b64": ...}` stays bytes."""
    if isinstance(instance, dict):
        if set(instance) == {"b64"} and isinstance(instance["b64"], str):
            try:
                return base64.b64decode(instance["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("instance b64 value is not valid base64") from None
        if len(instance) == 1:
            return _instance_to_input(next(iter(instance.values())), model, max_pixels)
        raise BadRequest('an instance must be a tensor (nested lists) or {"b64": "<base64 image>"}')
    try:
        tensor = np.asarray(instance, dtype=np.float32)
    except (ValueError, TypeError):
        raise BadRequest("instance is not a numeric tensor with a regular shape") from None
    shape = model.input_shape
    if tensor.shape == shape[:2] and shape[2] == 1:
        tensor = tensor[..., np.newaxis]
    if tensor.shape != shape:
        raise BadRequest(f"instance shape {list(tensor.shape)} does not match the model input {list(shape)}")
    if not np.isfinite(tensor).all():
        raise BadRequest("instance contains NaN or infinity")
    return tensor


async def _run(model: LoadedModel, instances: list[Any], max_pixels: int, inline_pixels: int) -> list[list[float]]:
    """Probabilities of every instance, in order."""
    if not instances:
        raise BadRequest("no instances to predict")
    prepared = [_instance_to_input(instance, model, max_pixels) for instance in instances]
    with model.arriving():
        inputs = await _prepare(model, prepared, max_pixels, inline_pixels)
    outputs = await asyncio.gather(*(model.predict(x) for x in inputs))
    return [row.tolist() for row in outputs]


async def _prepare(
    model: LoadedModel, prepared: list[np.ndarray | bytes], max_pixels: int, inline_pixels: int
) -> list[np.ndarray]:
    """Images (b64 instances) preprocessed; tensors passed through."""
    return [
        await prepare_image_async(
            item,
            method=model.preprocessing,
            shape=model.input_shape,
            max_pixels=max_pixels,
            inline_pixels=inline_pixels,
        )
        if isinstance(item, bytes)
        else item
        for item in prepared
    ]


def _instances_of(body: dict[str, Any]) -> tuple[list[Any], bool]:
    """(instances, columnar) from a TF Serving predict body."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with 'instances' or 'inputs'")
    signature = body.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise BadRequest(f"serving signature name: '{signature}' not found in signature def")
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("JSON object should have exactly one of 'instances' or 'inputs'")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise BadRequest("'instances' must be a list")
        return instances, False
    inputs = body["inputs"]
    if isinstance(inputs, dict):
        if len(inputs) != 1:
            raise BadRequest("the model has one input; 'inputs' must name one tensor")
        inputs = next(iter(inputs.values()))
    if isinstance(inputs, dict) and set(inputs) == {"b64"}:
        return [inputs], True
    if not isinstance(inputs, list):
        raise BadRequest("'inputs' must be a batch: a list of tensors or of {\"b64\": ...}")
    return inputs, True


async def _read_json(request: Request) -> Any:
    """The body parsed as JSON whatever its content type (`curl -d` sends form-urlencoded).

    Raises:
        BadRequest: Not JSON (400), as TF Serving answers.
    """
    try:
        return json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"JSON Parse error: {error}") from None


async def _predict(
    registry: ModelRegistry, settings: Settings, name: str, version: int | None, request: Request
) -> dict[str, Any]:
    model = resolve(registry, name, version)
    body = await _read_json(request)
    instances, columnar = _instances_of(body)
    predictions = await _run(model, instances, settings.max_image_pixels, settings.inline_preprocess_pixels)
    return {"outputs": predictions} if columnar else {"predictions": predictions}


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "signature_name": {"type": "string", "default": SIGNATURE},
                        "instances": {"type": "array", "items": {}},
                        "inputs": {},
                    },
                },
                "example": PREDICT_EXAMPLE,
            }
        },
    }
}


@router.post("/{name}:predict", summary="Predict (TF Serving)", openapi_extra=PREDICT_BODY)
async def predict(
    registry: RegistryDep,
    settings: SettingsDep,
    name: NamePath,
    request: Request,
) -> dict[str, Any]:
    """TF Serving predict on the newest version: `{"instances": [...]}` or `{"inputs": ...}`."""
    return await _predict(registry, settings, name, None, request)


@router.post(
    "/{name}/versions/{version}:predict", summary="Predict on a version (TF Serving)", openapi_extra=PREDICT_BODY
)
async def predict_version(
    registry: RegistryDep,
    settings: SettingsDep,
    name: NamePath,
    version: VersionPath,
    request: Request,
) -> dict[str, Any]:
    """TF Serving predict on one version."""
    return await _predict(registry, settings, name, version, request)


def _status(registry: ModelRegistry, name: str, version: int | None) -> dict[str, Any]:
    dataset, _, arch = name.partition("-")
    versions = registry.versions(dataset, arch)
    if version is not None and version not in versions:
        raise ModelNotFound(f"Servable not found for request: Specific({name}, {version})")
    chosen = [version] if version is not None else sorted(versions, reverse=True)
    return {
        "model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in chosen
        ]
    }


@router.get("/{name}", summary="Model status (TF Serving)")
def model_status(registry: RegistryDep, name: NamePath) -> dict[str, Any]:
    """Version status of every loaded version, as TF Serving reports it."""
    return _status(registry, name, None)


@router.get("/{name}/versions/{version}", summary="Model version status (TF Serving)")
def model_version_status(registry: RegistryDep, name: NamePath, version: VersionPath) -> dict[str, Any]:
    """Status of one version."""
    return _status(registry, name, version)


def _tensor_info(name: str, shape: list[int]) -> dict[str, Any]:
    return {
        "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": [{"size": str(size), "name": ""} for size in shape], "unknown_rank": False},
        "name": name,
    }


@router.get("/{name}/metadata", summary="Model metadata (TF Serving)")
def model_metadata(registry: RegistryDep, name: NamePath) -> dict[str, Any]:
    """The `serving_default` signature of the newest version, in TF Serving's format."""
    model = resolve(registry, name, None)
    classes = len(model.class_names)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE: {
                        "inputs": {
                            model.input_name: _tensor_info(
                                f"{SIGNATURE}_{model.input_name}:0", [-1, *model.input_shape]
                            )
                        },
                        "outputs": {model.output_name: _tensor_info("StatefulPartitionedCall:0", [-1, classes])},
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }
