"""TensorFlow Serving's REST API, an adapter over the inference pipeline.

Model names are `<dataset>-<arch>` (e.g. `mnist-custom2`). Implemented from the TF
Serving REST API: predict (row `instances` and columnar `inputs` formats), model status
and model metadata; errors are `{"error": "<message>"}` and malformed bodies answer 400,
as TF Serving does. An instance is the model's input tensor as nested lists (float,
(H, W, C) or (H, W), values in [0, 1]) or `{"b64": "<base64 image file>"}`, which the
pipeline decodes and preprocesses like an upload to `/predict`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.convertors import Convertor, register_url_convertor

from app.deps import (
    ModelNamePath,
    RegistryDep,
    TimeoutHeader,
    deadline_after,
    registry_of,
    resolve_model_name,
    settings_of,
)
from app.errors import (
    BadRequest,
    ModelNotFound,
    error_responses,
    protocol_fallback,
    protocol_route,
    render_message_error,
)
from app.inference import EncodedImage, ModelInput, ModelRegistry, Tensor, read_json
from app.middleware import admitted
from app.schemas import EXAMPLE_PNG_BASE64
from app.security import require_api_key
from modelstore import SIGNATURE_NAME


class ModelNameConvertor(Convertor[str]):
    """A `<dataset>-<arch>` or `<dataset>` (its default model) path segment; no `:`, so
    `GET .../mnist-custom2:predict` matches only the POST route and answers 405."""

    regex = r"[A-Za-z0-9_.]{1,64}(-[A-Za-z0-9_.\-]{1,64})?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("model_name", ModelNameConvertor())


class TFServingError(BaseModel):
    """TF Serving's error body."""

    error: str = Field(examples=["Servable not found for request: Latest(mnist-nosuch)"])


router = APIRouter(
    prefix="/v1/models",
    tags=["tensorflow-serving"],
    route_class=protocol_route(render_message_error),
    responses=error_responses(TFServingError, 400, 404, 408, 413, 415, 503, 504),
)

VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


def parse_instance(instance: Any, index: int) -> ModelInput:
    """One instance: `{"b64": ...}` is an encoded image, anything else a tensor.

    Raises:
        BadRequest: An object that is neither `{"b64": ...}` nor a one-input instance (400).
    """
    if isinstance(instance, dict):
        if set(instance) == {"b64"} and isinstance(instance["b64"], str):
            return EncodedImage(instance["b64"], index)
        if len(instance) == 1:
            return parse_instance(next(iter(instance.values())), index)
        raise BadRequest('an instance must be a tensor (nested lists) or {"b64": "<base64 image>"}')
    return Tensor(instance)


def parse_predict(body: Any) -> tuple[list[ModelInput], bool]:
    """(inputs, columnar) from a TF Serving predict body.

    Raises:
        BadRequest: Not a predict body, or another signature (400).
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with 'instances' or 'inputs'")
    signature = body.get("signature_name", SIGNATURE_NAME)
    if signature != SIGNATURE_NAME:
        raise BadRequest(f"serving signature name: '{signature}' not found in signature def")
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("JSON object should have exactly one of 'instances' or 'inputs'")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise BadRequest("'instances' must be a list")
        return [parse_instance(instance, index) for index, instance in enumerate(instances)], False
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        if len(inputs) != 1:
            raise BadRequest("the model has one input; 'inputs' must name one tensor")
        inputs = next(iter(inputs.values()))
    if isinstance(inputs, dict):
        return [parse_instance(inputs, 0)], True
    if not isinstance(inputs, list):
        raise BadRequest("'inputs' must be a batch: a list of tensors or of {\"b64\": ...}")
    if inputs and all(not isinstance(item, dict) for item in inputs):
        return [Tensor(inputs, batched=True)], True
    return [parse_instance(instance, index) for index, instance in enumerate(inputs)], True


PREDICT_BODY = {
    "parameters": TimeoutHeader.openapi(),
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "signature_name": {"type": "string", "enum": [SIGNATURE_NAME]},
                        "instances": {"type": "array", "minItems": 1, "items": {}},
                    },
                    "required": ["instances"],
                },
                "examples": {
                    "b64": {"summary": "an image file", "value": {"instances": [{"b64": EXAMPLE_PNG_BASE64}]}},
                    "tensor": {
                        "summary": "the model's input, 28x28x1 floats in [0, 1]",
                        "value": {"inputs": [[[[0.0]] * 28] * 28]},
                    },
                },
            }
        },
    },
}


async def run_predict(request: Request, name: str, version: int | str | None) -> dict[str, Any]:
    """Resolve the model, parse the body, classify, render TF Serving's answer.

    Args:
        request: The predict request.
        name: The model's TF Serving name.
        version: A version number, a version label, or None for the newest.
    """
    model = resolve_model_name(registry_of(request), name, version)
    deadline = deadline_after(request)
    inputs, columnar = parse_predict(await read_json(request, settings_of(request).body_limits))
    result = await model.classify(inputs, deadline=deadline, disconnected=request.receive)
    predictions = result.probabilities.tolist()
    return {"outputs": predictions} if columnar else {"predictions": predictions}


@router.post(
    "/{name:model_name}:predict",
    dependencies=[Depends(require_api_key)],
    summary="Predict (TF Serving)",
    openapi_extra=PREDICT_BODY,
)
@admitted
async def predict(name: ModelNamePath, request: Request) -> dict[str, Any]:
    """TF Serving predict on the newest version: `{"instances": [...]}` or `{"inputs": ...}`."""
    return await run_predict(request, name, None)


@router.post(
    "/{name:model_name}/versions/{version:int}:predict",
    dependencies=[Depends(require_api_key)],
    summary="Predict on a version (TF Serving)",
    openapi_extra=PREDICT_BODY,
)
@admitted
async def predict_version(
    name: ModelNamePath,
    version: VersionPath,
    request: Request,
) -> dict[str, Any]:
    """TF Serving predict on one version."""
    return await run_predict(request, name, version)


@router.post(
    "/{name:model_name}/labels/{label:version_ref}:predict",
    dependencies=[Depends(require_api_key)],
    summary="Predict on a labelled version (TF Serving)",
    openapi_extra=PREDICT_BODY,
)
@admitted
async def predict_label(
    name: ModelNamePath,
    label: Annotated[str, Path(description="version label, e.g. `stable`", examples=["stable"])],
    request: Request,
) -> dict[str, Any]:
    """TF Serving predict on the version a label (`stable`, `canary`) points at."""
    return await run_predict(request, name, label)


def version_status(registry: ModelRegistry, name: str, version: int | None) -> dict[str, Any]:
    """TF Serving's `model_version_status` of one or every loaded version.

    Raises:
        ModelNotFound: No such model or version (404).
    """
    newest = resolve_model_name(registry, name, None)
    versions = registry.versions(newest.dataset, newest.arch)
    if version is not None and version not in versions:
        raise ModelNotFound(f"Servable not found for request: Specific({name}, {version})")
    chosen = [version] if version is not None else sorted(versions, reverse=True)
    return {
        "model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in chosen
        ]
    }


@router.get("/{name:model_name}", summary="Model status (TF Serving)")
async def model_status(registry: RegistryDep, name: ModelNamePath) -> dict[str, Any]:
    """Version status of every loaded version, as TF Serving reports it."""
    return version_status(registry, name, None)


@router.get("/{name:model_name}/versions/{version:int}", summary="Model version status (TF Serving)")
async def model_version_status(registry: RegistryDep, name: ModelNamePath, version: VersionPath) -> dict[str, Any]:
    """Status of one version."""
    return version_status(registry, name, version)


@router.get("/{name:model_name}/labels/{label:version_ref}", summary="Labelled version status (TF Serving)")
async def model_label_status(
    registry: RegistryDep,
    name: ModelNamePath,
    label: Annotated[str, Path(description="version label, e.g. `stable`", examples=["stable"])],
) -> dict[str, Any]:
    """Status of the version a label points at."""
    return version_status(registry, name, resolve_model_name(registry, name, label).version)


def _tensor_info(name: str, shape: list[int]) -> dict[str, Any]:
    return {
        "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": [{"size": str(size), "name": ""} for size in shape], "unknown_rank": False},
        "name": name,
    }


@router.get("/{name:model_name}/metadata", summary="Model metadata (TF Serving)")
async def model_metadata(registry: RegistryDep, name: ModelNamePath) -> dict[str, Any]:
    """The `serving_default` signature of the newest version, in TF Serving's format."""
    model = resolve_model_name(registry, name, None)
    metadata = model.metadata
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE_NAME: {
                        "inputs": {
                            metadata.input_name: _tensor_info(
                                f"{SIGNATURE_NAME}_{metadata.input_name}:0", [-1, *model.input_shape]
                            )
                        },
                        "outputs": {
                            metadata.output_name: _tensor_info(
                                "StatefulPartitionedCall:0", [-1, len(model.class_names)]
                            )
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


protocol_fallback(router)
