"""The naive reference: Keras `model.predict` per request inside the handler.

The common tutorial way to serve a Keras model: load the SavedModel (as a Keras model
around a `TFSMLayer`) and call `model.predict(x)` for every request, same preprocessing.
Served with `NAIVE_MODEL=models_store/mnist/custom2/1 uvicorn benchmarks.naive_app:app`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import keras
import numpy as np
from fastapi import FastAPI, File, UploadFile

from app.inference.preprocessing import prepare_image

MODEL_PATH = Path(os.environ.get("NAIVE_MODEL", "models_store/mnist/custom2/1"))
METADATA = json.loads((MODEL_PATH / "metadata.json").read_text())
SHAPE = tuple(METADATA["input_shape"])
model = keras.Sequential([keras.Input(shape=SHAPE), keras.layers.TFSMLayer(str(MODEL_PATH), "serving_default")])

app = FastAPI()


@app.post("/predict")
def predict(image: Annotated[UploadFile, File()]) -> dict[str, object]:
    """Preprocess, then `model.predict` on a batch of one."""
    inputs = prepare_image(image.file.read(), method=METADATA["preprocessing"], shape=SHAPE, max_pixels=40_000_000)
    outputs = model.predict(inputs[np.newaxis], verbose=0)
    probabilities = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs
    return {"class_index": int(np.argmax(probabilities[0])), "probabilities": probabilities[0].tolist()}
