"""`POST /predict`: the native protocol, an adapter over the inference pipeline.

It parses a multipart upload (`image` file fields), a JSON body (`{"image": base64 or a
list of them}`) or a body that is the image file itself into encoded images, calls the
model's pipeline, and renders every class's probability with the class names.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import Field

from app.deps import ModelParameters, TimeoutHeader, deadline_after, registry_of, settings_of
from app.errors import UnsupportedImage, ValidationFailed, error_responses
from app.inference import BodyLimits, EncodedImage, encode_model_input, read_body, read_json, read_multipart
from app.inference.decoding import FORMAT_NAMES
from app.inference.preprocessing import Method
from app.middleware import admitted
from app.responses import JSONResponse
from app.schemas import EXAMPLE_PNG_BASE64, BatchPredictResponse, ErrorResponse, PredictResponse
from app.security import require_api_key

router = APIRouter(tags=["predict"])

PreprocessMethod = Literal["auto", Method]

RAW_IMAGE_TYPES = ("image/", "application/octet-stream")
"""Content types (prefixes) of a body that is one image file, as TorchServe and object
stores send it (`curl --data-binary @7.png -H 'Content-Type: image/png'`)."""

SEND_AN_IMAGE = (
    'send multipart/form-data with an "image" file field (curl -F image=@digit.png), '
    'application/json {"image": "<base64>"}, or the image file as the body with Content-Type image/png'
)

ERROR_RESPONSES = error_responses(ErrorResponse, 400, 404, 408, 413, 415, 422, 503, 504)
"""The native API's error statuses."""


class PredictParameters(ModelParameters):
    """The query of `POST /predict`."""

    top_k: int | None = Field(
        default=None, ge=1, le=1000, description="also list the k most probable classes (all of them if k is larger)"
    )
    preprocess: PreprocessMethod = Field(
        default="auto",
        description="`auto`: the model dataset's preprocessing; `none`: only resize to the input size",
    )
    include_input: bool = Field(
        default=False,
        description="also return what the model received (`model_input`: the preprocessed image, PNG base64)",
    )


OPENAPI_EXTRA = {
    "parameters": [*PredictParameters.openapi(), *TimeoutHeader.openapi()],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "additionalProperties": False,
                    "properties": {
                        # One file in the schema: Swagger UI's "Try it out" sends an array of
                        # files as text. The field may still be repeated for a batch.
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": f"an image file: {FORMAT_NAMES}; "
                            "repeat the field for several (curl -F image=@a.png -F image=@b.png)",
                        }
                    },
                },
                "encoding": {"image": {"contentType": "image/png, image/jpeg, image/*"}},
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "additionalProperties": False,
                    "properties": {
                        "image": {
                            "description": "base64 of an image file, or a list of them",
                            "anyOf": [
                                {"type": "string", "contentEncoding": "base64"},
                                {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {"type": "string", "contentEncoding": "base64"},
                                },
                            ],
                        }
                    },
                },
                "example": {"image": EXAMPLE_PNG_BASE64},
            },
            # One image file as the whole body; any image/* type is read the same way.
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}


def make_prediction(probabilities: np.ndarray, class_names: list[str], top_k: int | None) -> dict[str, Any]:
    """The answer for one image (a `Prediction` as a dict) from its probabilities, float (classes,).

    Plain dicts rather than pydantic objects: this runs for every image, and the response
    is serialized once, by `JSONResponse` (`app.responses`).
    """
    values = probabilities.tolist()
    classes = [
        {"class_index": index, "class_name": name, "probability": value}
        for index, (name, value) in enumerate(zip(class_names, values, strict=True))
    ]
    best = int(np.argmax(probabilities))
    prediction: dict[str, Any] = {
        "class_index": best,
        "class_name": class_names[best],
        "confidence": values[best],
        "probabilities": classes,
    }
    if top_k:
        prediction["top_k"] = sorted(classes, key=lambda item: -item["probability"])[:top_k]
    return prediction


async def read_json_images(request: Request, limits: BodyLimits) -> list[EncodedImage]:
    """The images of a JSON body `{"image": "<base64>"}` or `{"image": ["<base64>", ...]}`.

    Raises:
        BadRequest: Not JSON (400).
        ValidationFailed: No `image` key, other keys, or not strings (422).
    """
    body = await read_json(request, limits)
    if not isinstance(body, dict) or "image" not in body:
        raise ValidationFailed('the JSON body needs an "image" field with base64 image bytes')
    extra = sorted(set(body) - {"image"})
    if extra:
        raise ValidationFailed(f'unexpected JSON fields {extra}; only "image" is accepted')
    values = body["image"] if isinstance(body["image"], list) else [body["image"]]
    if not values or not all(isinstance(value, str) for value in values):
        raise ValidationFailed('"image" must be a base64 string or a non-empty list of them')
    return [EncodedImage(value, index) for index, value in enumerate(values)]


async def read_images(request: Request, limits: BodyLimits) -> list[EncodedImage]:
    """The images of a multipart, JSON or raw image request, in order.

    A body with an image content type (`RAW_IMAGE_TYPES`), or with none at all (as
    `requests.post(url, data=file)` sends it), is one image file.

    Raises:
        BadRequest: Malformed multipart or JSON body (400).
        ValidationFailed: Missing `image` field, a text `image` field, other fields, or no
            body and no content type (422).
        UnsupportedImage: An empty body declared as an image, or any other content type (415).
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return await read_json_images(request, limits)
    if not content_type or content_type.startswith(RAW_IMAGE_TYPES):
        body = await read_body(request, limits)
        if not body and not content_type:  # nothing sent
            raise ValidationFailed(f"the request has no image: {SEND_AN_IMAGE}")
        if not body:  # an empty file declared as an image: not one, as any other such file
            raise UnsupportedImage(f"the request body is empty, not an image file; {SEND_AN_IMAGE}")
        return [EncodedImage(body)]
    if content_type != "multipart/form-data":
        raise UnsupportedImage(f"content type {content_type!r} is not accepted; {SEND_AN_IMAGE}")
    parts = await read_multipart(request, limits)
    uploads = [part for part in parts if part.name == "image"]
    extra = sorted({part.name for part in parts} - {"image"})
    if not uploads:
        found = f" (found fields {extra})" if extra else ""
        raise ValidationFailed(f'missing form field "image"{found}: attach the image file as image=@digit.png')
    if extra:
        raise ValidationFailed(f'unexpected form fields {extra}; send image files in the "image" field')
    if any(upload.filename is None for upload in uploads):
        raise ValidationFailed('"image" must be a file part (curl -F image=@digit.png), not a text value')
    return [EncodedImage(upload.data, index) for index, upload in enumerate(uploads)]


@router.post(
    "/predict",
    dependencies=[Depends(require_api_key)],
    response_model=PredictResponse | BatchPredictResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    openapi_extra=OPENAPI_EXTRA,
    summary="Classify images",
)
@admitted
async def predict(request: Request) -> JSONResponse:
    """Classify one or more images (multipart field `image`, JSON base64, or the image file as the body)
    with the model named in `model`."""
    query = PredictParameters.of(request)
    served = registry_of(request).get(query.model, dataset=query.dataset, version=query.version)
    deadline = deadline_after(request)
    class_names = served.class_names
    images = await read_images(request, settings_of(request).body_limits)
    result = await served.classify(
        images,
        preprocessing=None if query.preprocess == "auto" else query.preprocess,
        deadline=deadline,
        disconnected=request.receive,
    )
    predictions = [make_prediction(row, class_names, query.top_k) for row in result.probabilities]
    if query.include_input:
        for prediction, model_input in zip(predictions, result.inputs, strict=True):
            prediction["model_input"] = base64.b64encode(encode_model_input(model_input)).decode("ascii")
    info = {
        "model": served.model_id,
        "dataset": served.dataset,
        "arch": served.arch,
        "version": served.version,
        "preprocessing": result.preprocessing,
    }
    # The response models document the shape (and schemathesis checks it); the body is
    # built directly, skipping FastAPI's re-validation of our own output on every request.
    if len(predictions) == 1:
        return JSONResponse({**info, **predictions[0]})
    return JSONResponse({**info, "predictions": predictions})
