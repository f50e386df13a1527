"""The Open Inference Protocol (KServe v2, Triton's HTTP/REST API), an adapter over the pipeline.

Model names are those of the TF Serving surface, `<dataset>-<arch>`; versions are the
store's integer versions, as strings. A model takes exactly one of two inputs:

- `images`: FP32 `[N, H, W, C]`, the model's own input in [0, 1], used as it is;
- `image_bytes`: BYTES `[N]`, encoded image files (PNG, JPEG, ...), which go through the
  dataset's preprocessing like an upload to `/predict`.

Both may come in JSON (`data` row-major, BYTES elements as base64 strings) or in the binary
tensor data extension that Triton defines and tritonclient uses by default: the JSON header
of `Inference-Header-Content-Length` bytes, then each input's raw bytes (FP32 little-endian;
BYTES as 4-byte little-endian lengths each followed by the element). The output is
`probabilities`, FP32 `[N, classes]`, in JSON or binary (`binary_data` on the output, or
`binary_data_output` on the request); with the classification extension (the output's
`classification` parameter, k) it is BYTES `[N, k]` of `"<probability>:<class index>:<class
name>"`, most probable first. Errors are `{"error": "<message>"}`: 400 for a bad request,
404 for an unknown model or version.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from pydantic_core import to_json

from app import DISTRIBUTION, __version__
from app.deps import (
    ModelNamePath,
    RegistryDep,
    TimeoutHeader,
    deadline_after,
    registry_of,
    resolve_model_name,
    settings_of,
)
from app.errors import BadRequest, NotReady, error_responses, protocol_fallback, protocol_route, render_message_error
from app.inference import EncodedImage, ModelInput, ModelRegistry, ServedModel, Tensor, read_body, read_json
from app.middleware import admitted
from app.responses import JSONResponse
from app.schemas import EXAMPLE_PNG_BASE64
from app.security import require_api_key

FP32_INPUT = "images"
BYTES_INPUT = "image_bytes"
OUTPUT = "probabilities"
HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "tensorflow_savedmodel"
EXTENSIONS = ["binary_tensor_data", "classification"]


class V2Error(BaseModel):
    """The protocol's error body."""

    error: str = Field(examples=["no model mnist/nosuch; loaded models: mnist/custom2"])


router = APIRouter(
    prefix="/v2",
    tags=["open-inference-protocol"],
    route_class=protocol_route(render_message_error),
    responses=error_responses(V2Error, 400, 404, 408, 413, 415, 503, 504),
)

VersionPath = Annotated[str, Path(description="version number or label (`stable`)", examples=["1"])]


class ServerMetadata(BaseModel):
    """`GET /v2`."""

    name: str
    version: str
    extensions: list[str]


class Liveness(BaseModel):
    """`GET /v2/health/live`."""

    live: bool


class ServerReadiness(BaseModel):
    """`GET /v2/health/ready`."""

    ready: bool


class ModelReadiness(BaseModel):
    """`GET /v2/models/{name}/ready`."""

    name: str
    ready: bool


class TensorMetadata(BaseModel):
    """A tensor of a model's metadata: name, datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    """`GET /v2/models/{name}[/versions/{version}]`."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


def _split_bytes_elements(raw: bytes, count: int) -> list[bytes]:
    """BYTES elements of the binary extension: a 4-byte little-endian length before each."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadRequest("truncated BYTES tensor: a length prefix is cut off")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadRequest("truncated BYTES tensor: an element is shorter than its length prefix")
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise BadRequest(f"BYTES tensor holds {len(elements)} elements; its shape says {count}")
    return elements


def parse_input(tensor: Any, binary: bytes | None) -> list[ModelInput]:
    """The pipeline inputs of one request input, with its binary data if it has any.

    Raises:
        BadRequest: Not an input this model takes, or its shape, datatype or data do not agree (400).
    """
    if not isinstance(tensor, dict):
        raise BadRequest("each input must be an object with name, shape, datatype and data")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(size, int) and size >= 0 for size in shape):
        raise BadRequest(f"input {name!r}: shape must be a list of sizes")
    data = binary if binary is not None else tensor.get("data")
    if data is None:
        raise BadRequest(f"input {name!r} has no data")
    if name == FP32_INPUT:
        if datatype != "FP32":
            raise BadRequest(f"input {FP32_INPUT!r} is FP32, not {datatype}")
        if binary is None and not isinstance(data, list):
            raise BadRequest(f"input {FP32_INPUT!r}: data must be a list of numbers")
        return [Tensor(data, shape=tuple(shape), batched=True)]
    if name == BYTES_INPUT:
        if datatype != "BYTES":
            raise BadRequest(f"input {BYTES_INPUT!r} is BYTES, not {datatype}")
        if len(shape) != 1:
            raise BadRequest(f"input {BYTES_INPUT!r} has shape [N], not {shape}")
        if binary is not None:
            elements: list[bytes | str] = list(_split_bytes_elements(binary, shape[0]))
        else:
            if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
                raise BadRequest(f"input {BYTES_INPUT!r}: data must be a list of base64 strings")
            if len(data) != shape[0]:
                raise BadRequest(f"input {BYTES_INPUT!r} holds {len(data)} elements; its shape says {shape[0]}")
            elements = list(data)
        return [EncodedImage(element, index) for index, element in enumerate(elements)]
    raise BadRequest(f"unknown input {name!r}; the model takes {FP32_INPUT!r} (FP32) or {BYTES_INPUT!r} (BYTES)")


def parse_request(header: Any, binary: bytes) -> tuple[list[ModelInput], dict[str, Any]]:
    """(inputs, requested output options) of an inference request.

    Raises:
        BadRequest: Not an inference request this model can answer (400).
    """
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest("the request must be an object with an 'inputs' list")
    if len(header["inputs"]) != 1:
        raise BadRequest(f"send exactly one input, {FP32_INPUT!r} or {BYTES_INPUT!r}")
    (tensor,) = header["inputs"]
    size = (tensor.get("parameters") or {}).get("binary_data_size") if isinstance(tensor, dict) else None
    if size is not None and (not isinstance(size, int) or size < 0 or size != len(binary)):
        raise BadRequest(f"binary_data_size {size} does not match the {len(binary)} bytes after the JSON header")
    if size is None and binary:
        raise BadRequest("binary data follows the JSON header but no input declares binary_data_size")
    inputs = parse_input(tensor, binary if size is not None else None)
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    options: dict[str, Any] = {"binary_data": bool(parameters.get("binary_data_output", False)), "classification": 0}
    outputs = header.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or any(
            not isinstance(item, dict) or item.get("name") != OUTPUT for item in outputs
        ):
            raise BadRequest(f"the model has one output, {OUTPUT!r}")
        for output in outputs:
            output_parameters = output.get("parameters") or {}
            options["binary_data"] = bool(output_parameters.get("binary_data", options["binary_data"]))
            k = output_parameters.get("classification", 0)
            if not isinstance(k, int) or k < 0:
                raise BadRequest("the classification parameter must be a whole number of classes")
            options["classification"] = k
    return inputs, options


def _classification(probabilities: np.ndarray, class_names: list[str], k: int) -> list[list[str]]:
    """The classification extension: the k most probable "<probability>:<index>:<name>" per row."""
    k = min(k, len(class_names))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [
        [f"{row[index]:.6g}:{index}:{class_names[index]}" for index in indices]
        for row, indices in zip(probabilities, order, strict=True)
    ]


def render(model: ServedModel, header: dict[str, Any], probabilities: np.ndarray, options: dict[str, Any]) -> Response:
    """The inference response, JSON or JSON header plus binary output."""
    k = options["classification"]
    if k:
        labels = _classification(probabilities, model.class_names, k)
        output: dict[str, Any] = {"name": OUTPUT, "datatype": "BYTES", "shape": [len(labels), len(labels[0])]}
        flat = [label for row in labels for label in row]
        raw = b"".join(struct.pack("<I", len(item.encode())) + item.encode() for item in flat)
        values: Any = flat
    else:
        output = {"name": OUTPUT, "datatype": "FP32", "shape": list(probabilities.shape)}
        raw = probabilities.astype("<f4").tobytes()
        values = probabilities.ravel().tolist()
    body: dict[str, Any] = {"model_name": f"{model.dataset}-{model.arch}", "model_version": str(model.version)}
    if "id" in header:
        body["id"] = header["id"]
    parameters = {key: value for key, value in (header.get("parameters") or {}).items() if key != "binary_data_output"}
    if parameters:
        body["parameters"] = parameters
    if not options["binary_data"]:
        body["outputs"] = [{**output, "data": values}]
        return JSONResponse(body)
    body["outputs"] = [{**output, "parameters": {"binary_data_size": len(raw)}}]
    encoded = to_json(body, inf_nan_mode="null")
    return Response(encoded + raw, media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(encoded))})


INFER_BODY = {
    "parameters": TimeoutHeader.openapi(),
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype", "data"],
                                "properties": {
                                    "name": {"type": "string", "enum": [FP32_INPUT, BYTES_INPUT]},
                                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                                    "datatype": {"type": "string", "enum": ["FP32", "BYTES"]},
                                    "parameters": {"type": "object"},
                                    "data": {"type": "array"},
                                },
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "enum": [OUTPUT]},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                    },
                },
                "examples": {
                    "image_bytes": {
                        "summary": "an image file, base64",
                        "value": {
                            "id": "42",
                            "inputs": [
                                {"name": BYTES_INPUT, "shape": [1], "datatype": "BYTES", "data": [EXAMPLE_PNG_BASE64]}
                            ],
                        },
                    },
                    "images": {
                        "summary": "the model's input, FP32 [1, 28, 28, 1]",
                        "value": {
                            "inputs": [
                                {"name": FP32_INPUT, "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.0] * 784}
                            ]
                        },
                    },
                    "classification": {
                        "summary": "the 3 most probable classes",
                        "value": {
                            "inputs": [
                                {"name": BYTES_INPUT, "shape": [1], "datatype": "BYTES", "data": [EXAMPLE_PNG_BASE64]}
                            ],
                            "outputs": [{"name": OUTPUT, "parameters": {"classification": 3}}],
                        },
                    },
                },
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": f"binary tensor data extension: a JSON header of `{HEADER_LENGTH}` bytes, then tensors",
            },
        },
    },
}


def request_deadline(header: dict[str, Any], deadline: float, request: Request) -> float:
    """The deadline, shortened by the request's `timeout` parameter (microseconds, as in Triton).

    Raises:
        BadRequest: A timeout that is not a positive whole number of microseconds (400).
    """
    timeout = (header.get("parameters") or {}).get("timeout")
    if timeout is None:
        return deadline
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise BadRequest("the timeout parameter is a positive whole number of microseconds")
    arrived = request.scope.get("arrived_at", deadline)
    return min(deadline, arrived + timeout / 1e6)


async def infer(request: Request, name: str, version: str | None) -> Response:
    """Resolve the model, parse the request (JSON or binary), classify, render.

    Args:
        request: The infer request.
        name: The model's name on this surface (`<dataset>-<arch>`).
        version: A version number, a version label, or None for the newest.
    """
    model = resolve_model_name(registry_of(request), name, version)
    deadline = deadline_after(request)
    limits = settings_of(request).body_limits
    declared = request.headers.get(HEADER_LENGTH)
    if declared is None:
        header, binary = await read_json(request, limits), b""
    else:
        body = await read_body(request, limits)
        if not declared.isdigit() or int(declared) > len(body):
            raise BadRequest(f"{HEADER_LENGTH} {declared!r} is not a length within the {len(body)}-byte body")
        header, binary = await read_json(request, limits, body=body[: int(declared)]), body[int(declared) :]
    inputs, options = parse_request(header, binary)
    deadline = request_deadline(header, deadline, request)
    result = await model.classify(inputs, deadline=deadline, disconnected=request.receive)
    return render(model, header, result.probabilities, options)


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name=DISTRIBUTION, version=__version__, extensions=EXTENSIONS)


@router.get("/health/live", response_model=Liveness, summary="Server liveness")
async def live() -> Liveness:
    """200 while the process serves requests."""
    return Liveness(live=True)


@router.get("/health/ready", response_model=ServerReadiness, summary="Server readiness")
async def ready(registry: RegistryDep) -> ServerReadiness:
    """200 once the models are loaded (as `/readyz`); 503 before and while draining."""
    reason = registry.not_ready_reason()
    if reason:
        raise NotReady(reason)
    return ServerReadiness(ready=True)


def _metadata(registry: ModelRegistry, name: str, version: str | None) -> ModelMetadataResponse:
    model = resolve_model_name(registry, name, version)
    versions = (
        [str(model.version)] if version else [str(v) for v in sorted(registry.versions(model.dataset, model.arch))]
    )
    return ModelMetadataResponse(
        name=name,
        versions=versions,
        platform=PLATFORM,
        inputs=[
            TensorMetadata(name=FP32_INPUT, datatype="FP32", shape=[-1, *model.input_shape]),
            TensorMetadata(name=BYTES_INPUT, datatype="BYTES", shape=[-1]),
        ],
        outputs=[TensorMetadata(name=OUTPUT, datatype="FP32", shape=[-1, len(model.class_names)])],
    )


@router.get("/models/{name}", response_model=ModelMetadataResponse, summary="Model metadata")
async def model_metadata(registry: RegistryDep, name: ModelNamePath) -> ModelMetadataResponse:
    """Inputs, outputs, datatypes, shapes, platform and versions of a model."""
    return _metadata(registry, name, None)


@router.get(
    "/models/{name}/versions/{version:version_ref}",
    response_model=ModelMetadataResponse,
    summary="Model version metadata",
)
async def model_version_metadata(
    registry: RegistryDep, name: ModelNamePath, version: VersionPath
) -> ModelMetadataResponse:
    """Inputs, outputs, datatypes, shapes and platform of one version."""
    return _metadata(registry, name, version)


@router.get("/models/{name}/ready", response_model=ModelReadiness, summary="Model readiness")
async def model_ready(registry: RegistryDep, name: ModelNamePath) -> ModelReadiness:
    """200 when the model is loaded and serving."""
    resolve_model_name(registry, name, None)
    return ModelReadiness(name=name, ready=True)


@router.get(
    "/models/{name}/versions/{version:version_ref}/ready",
    response_model=ModelReadiness,
    summary="Model version readiness",
)
async def model_version_ready(registry: RegistryDep, name: ModelNamePath, version: VersionPath) -> ModelReadiness:
    """200 when the version is loaded and serving."""
    resolve_model_name(registry, name, version)
    return ModelReadiness(name=name, ready=True)


@router.post(
    "/models/{name}/infer",
    dependencies=[Depends(require_api_key)],
    summary="Inference",
    openapi_extra=INFER_BODY,
    response_model=None,
)
@admitted
async def model_infer(name: ModelNamePath, request: Request) -> Response:
    """Classify a batch with the newest version: FP32 `images` or BYTES `image_bytes`, JSON or binary."""
    return await infer(request, name, None)


@router.post(
    "/models/{name}/versions/{version:version_ref}/infer",
    dependencies=[Depends(require_api_key)],
    summary="Inference on a version",
    openapi_extra=INFER_BODY,
    response_model=None,
)
@admitted
async def model_version_infer(
    name: ModelNamePath,
    version: VersionPath,
    request: Request,
) -> Response:
    """Classify a batch with one version."""
    return await infer(request, name, version)


protocol_fallback(router)
