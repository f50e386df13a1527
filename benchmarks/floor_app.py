"""The floor reference: the service's own app plus an upload route that runs no model.

`POST /floor` reads the multipart upload with the same code as `/predict` and decodes and
preprocesses the image as /predict does (same settings; a small upload on the event loop,
since there is no batcher's thread), then answers a fixed-size JSON body. Served
with `uvicorn benchmarks.floor_app:app`.
"""

from __future__ import annotations

import anyio
from fastapi import Request

from app.inference.model import image_preparation
from app.main import create_app
from app.routers.predict import read_images

app = create_app()


@app.post("/floor")
async def floor(request: Request) -> dict[str, object]:
    """Decode and preprocess the upload like /predict, without a model call."""
    settings = request.state.settings
    (image,) = await read_images(request, settings.body_limits)
    prepare, small = image_preparation(
        image.file_bytes(),
        method="mnist",
        shape=(28, 28, 1),
        max_pixels=settings.max_image_pixels,
        inline_pixels=settings.inline_preprocess_pixels,
    )
    inputs = prepare() if small else await anyio.to_thread.run_sync(prepare)
    return {"class_index": 0, "mean": float(inputs.mean()), "probabilities": [0.1] * 10}
