"""The inference layer: one pipeline behind every protocol.

Protocol routers parse requests into `EncodedImage` and `Tensor` inputs, read bodies with
`read_body`/`read_multipart`/`read_json`, find a `ServedModel` in the `ModelRegistry` and call
its `classify`; limits, preprocessing, batching and the model call live here.
"""

from __future__ import annotations

from app.inference.body import BodyLimits, FormPart, read_body, read_json, read_multipart
from app.inference.encoding import encode_model_input
from app.inference.inputs import EncodedImage, InputLimits, ModelInput, Tensor
from app.inference.model import Classification, ModelLoadError, ServedModel
from app.inference.registry import FailedVersion, ModelRegistry

__all__ = [
    "BodyLimits",
    "Classification",
    "EncodedImage",
    "FailedVersion",
    "FormPart",
    "InputLimits",
    "ModelInput",
    "ModelLoadError",
    "ModelRegistry",
    "ServedModel",
    "Tensor",
    "encode_model_input",
    "read_body",
    "read_json",
    "read_multipart",
]
