"""`POST /predict`: classify uploaded images with a model of the store."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.config import Settings
from app.deps import ModelDep, SettingsDep
from app.errors import BadRequest, PayloadTooLarge, UnsupportedImage, ValidationFailed
from app.preprocessing import prepare_image_async
from app.registry import LoadedModel
from app.schemas import BatchPredictResponse, ErrorResponse, PredictResponse

router = APIRouter(tags=["predict"])

PreprocessMethod = Literal["auto", "none", "mnist", "fashion_mnist", "cifar10", "resize"]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "malformed request (bad JSON or base64)",
        404: "unknown model or version",
        413: "upload over MAX_UPLOAD_BYTES or image over MAX_IMAGE_PIXELS",
        415: "not a decodable image, or an unsupported content type",
        422: "missing field or invalid parameter",
        503: "models not loaded yet",
    }.items()
}

REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "image file(s): PNG, JPEG, GIF, BMP, TIFF or WebP; repeat for several",
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
                                {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
                            ],
                        }
                    },
                },
                "example": {"image": "iVBORw0KGgo..."},
            },
        },
    }
}


def make_prediction(probabilities: np.ndarray, class_names: list[str], top_k: int | None) -> dict[str, Any]:
    """The answer for one image (a `Prediction` as a dict) from its probabilities, float (classes,).

    Plain dicts rather than pydantic objects: this runs for every image, and the response
    is serialized once, by `JSONResponse`.
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


def _decode_base64(value: Any, index: int) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"image[{index}] must be a base64 string")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"image[{index}] is not valid base64") from None


async def read_json_images(request: Request) -> list[bytes]:
    """The images of a JSON body `{"image": "<base64>"}` or `{"image": ["<base64>", ...]}`.

    Raises:
        BadRequest: Not JSON, or not base64 (400).
        ValidationFailed: No `image` key, or other keys (422).
    """
    try:
        body = json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest('the body is not valid JSON; send {"image": "<base64 image bytes>"}') from None
    if not isinstance(body, dict) or "image" not in body:
        raise ValidationFailed('the JSON body needs an "image" field with base64 image bytes')
    extra = sorted(set(body) - {"image"})
    if extra:
        raise ValidationFailed(f'unexpected JSON fields {extra}; only "image" is accepted')
    values = body["image"] if isinstance(body["image"], list) else [body["image"]]
    return [_decode_base64(value, index) for index, value in enumerate(values)]


async def read_images(request: Request, *, max_files: int) -> list[bytes]:
    """The image bytes of a multipart or JSON request, in order.

    Args:
        request: The request; its body is read here (multipart is spooled by Starlette).
        max_files: Most files accepted in one multipart body.

    Raises:
        BadRequest: Malformed multipart or JSON body (400).
        ValidationFailed: Missing `image` field, a text `image` field, or other fields (422).
        UnsupportedImage: Neither multipart nor JSON (415).
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return await read_json_images(request)
    if not content_type:
        raise ValidationFailed('missing form field "image": attach the image file as image=@digit.png')
    if content_type != "multipart/form-data":
        raise UnsupportedImage(
            f"content type {content_type!r} is not accepted; send multipart/form-data "
            'with an "image" file field, or application/json {"image": "<base64>"}'
        )
    async with request.form(max_files=max_files, max_fields=16) as form:
        extra = sorted(set(form.keys()) - {"image"})
        uploads = form.getlist("image")
        if not uploads:
            found = f" (found fields {extra})" if extra else ""
            raise ValidationFailed(f'missing form field "image"{found}: attach the image file as image=@digit.png')
        if extra:
            raise ValidationFailed(f'unexpected form fields {extra}; send image files in the "image" field')
        if any(isinstance(upload, str) for upload in uploads):
            raise ValidationFailed('"image" must be a file part (curl -F image=@digit.png), not a text value')
        return [await upload.read() for upload in uploads if not isinstance(upload, str)]


async def prepare_inputs(
    model: LoadedModel, payloads: list[bytes], *, method: str, settings: Settings
) -> list[np.ndarray]:
    """Decode and preprocess each payload into the model's input (off the event loop unless tiny).

    Returns:
        float32 arrays of the model's input shape, in payload order.

    Raises:
        UnsupportedImage, PayloadTooLarge: A payload is not an acceptable image.
    """
    return [
        await prepare_image_async(
            data,
            method=method,
            shape=model.input_shape,
            max_pixels=settings.max_image_pixels,
            inline_pixels=settings.inline_preprocess_pixels,
        )
        for data in payloads
    ]


@router.post(
    "/predict",
    response_model=PredictResponse | BatchPredictResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    openapi_extra=REQUEST_BODY,
    summary="Classify images",
)
async def predict(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    top_k: Annotated[int | None, Query(ge=1, le=1000, description="also list the k most probable classes")] = None,
    preprocess: Annotated[
        PreprocessMethod,
        Query(description="`auto`: the model dataset's preprocessing; `none`: only resize to the input size"),
    ] = "auto",
) -> JSONResponse:
    """Classify one or more images (multipart field `image`, or JSON base64) with the model named in `model`."""
    class_names = model.class_names
    if top_k is not None and top_k > len(class_names):
        raise ValidationFailed(f"top_k must be between 1 and {len(class_names)} for {model.model_id}")
    method = model.preprocessing if preprocess == "auto" else preprocess
    with model.arriving():  # lets the batcher wait for this request while it is read and preprocessed
        payloads = await read_images(request, max_files=settings.max_images_per_request)
        if len(payloads) > settings.max_images_per_request:
            limit = settings.max_images_per_request
            raise PayloadTooLarge(f"{len(payloads)} images in one request; the limit is {limit}")
        inputs = await prepare_inputs(model, payloads, method=method, settings=settings)
    if len(inputs) == 1:
        probabilities = [await model.predict(inputs[0])]
    else:
        probabilities = list(await asyncio.gather(*(model.predict(x) for x in inputs)))
    predictions = [make_prediction(row, class_names, top_k) for row in probabilities]
    info = {
        "model": model.model_id,
        "dataset": model.dataset,
        "arch": model.arch,
        "version": model.version,
        "preprocessing": method,
    }
    # The response models document the shape (and schemathesis checks it); the body is
    # built directly, skipping FastAPI's re-validation of our own output on every request.
    if len(predictions) == 1:
        return JSONResponse({**info, **predictions[0]})
    return JSONResponse({**info, "predictions": predictions})
