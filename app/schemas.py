"""Response and request bodies of the native API (they become the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelstore import Preprocessing, SplitMetrics

EXAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAxUlEQVR4nGNgGDaAEUKFpD77sfTFHeyS9xQYGBg+X4UKPuk6w8DAwMDAAuGm"
    "6l/TMnSweCzLwPDntSTDozPIOhkYGBgYBA3PmDIw/Lh1XShnGi5nBP+9KIRLTuzl/2AokwlDMlv0/U1cGq1//rPDJcfQ+m83Ky45zrM/rHBq"
    "rPu3Daec9+8PlrjkhO/+W4ZLjvn0v9vKuCTV/v3zxSUn/+BfMSMuydZ//0xwydl+QpdEClsbHoa7X1AkWZA5F53f4TIWEwAAaRE8kJuHrgAA"
    "AAAASUVORK5CYII="
)
"""`tests/data/7.png` (a 28x28 MNIST seven) in base64: the working example of the JSON bodies."""

__all__ = [
    "EXAMPLE_PNG_BASE64",
    "Base64Image",
    "BatchPredictResponse",
    "ClassProbability",
    "ErrorBody",
    "ErrorResponse",
    "FailedModel",
    "Health",
    "ModelDetail",
    "ModelInfo",
    "ModelList",
    "ModelSummary",
    "PredictResponse",
    "Prediction",
    "Readiness",
    "SplitMetrics",
]


class ClassProbability(BaseModel):
    """The probability the model gives one class."""

    class_index: int = Field(examples=[7])
    class_name: str = Field(examples=["7"])
    probability: float = Field(ge=0.0, le=1.0, examples=[0.9991])


class Prediction(BaseModel):
    """The model's answer for one image."""

    class_index: int = Field(description="index of the most probable class", examples=[7])
    class_name: str = Field(examples=["7"])
    confidence: float = Field(ge=0.0, le=1.0, description="probability of that class", examples=[0.9991])
    probabilities: list[ClassProbability] = Field(description="every class, in class-index order; sums to 1")
    top_k: list[ClassProbability] | None = Field(
        None, description="the k most probable classes, most probable first (when top_k is given)"
    )
    model_input: str | None = Field(
        None,
        description="what the model received, as a PNG in base64: the preprocessed image at the model's "
        "input size (with include_input=true)",
    )


class ModelInfo(BaseModel):
    """Which model answered, and how the upload was preprocessed."""

    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(description="model id, dataset/arch", examples=["mnist/custom2"])
    dataset: str = Field(examples=["mnist"])
    arch: str = Field(examples=["custom2"])
    version: int = Field(examples=[1])
    preprocessing: str = Field(description="how the upload was turned into the model input", examples=["mnist"])


class PredictResponse(Prediction, ModelInfo):
    """A prediction for one uploaded image."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "model": "mnist/custom2",
                    "dataset": "mnist",
                    "arch": "custom2",
                    "version": 1,
                    "preprocessing": "mnist",
                    "class_index": 7,
                    "class_name": "7",
                    "confidence": 0.9998,
                    "probabilities": [
                        {"class_index": i, "class_name": str(i), "probability": 0.9998 if i == 7 else 0.00002}
                        for i in range(10)
                    ],
                }
            ]
        },
    )


class BatchPredictResponse(ModelInfo):
    """Predictions for several uploaded images, in upload order."""

    predictions: list[Prediction]


class Base64Image(BaseModel):
    """A JSON request body for clients that cannot send multipart: base64 image bytes."""

    model_config = ConfigDict(extra="forbid")

    image: str | list[str] = Field(
        description="base64 of a PNG/JPEG/... file, or a list of them", examples=[EXAMPLE_PNG_BASE64]
    )


class FailedModel(BaseModel):
    """A version in the store that was refused at load, and why."""

    model: str = Field(examples=["mnist/custom2"])
    version: int
    reason: str = Field(examples=["metadata.json is invalid: class_names: Field required"])


class ModelSummary(BaseModel):
    """One loaded model as `/models` lists it."""

    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(examples=["mnist/custom2"])
    dataset: str
    arch: str
    version: int
    versions: list[int] = Field(description="every loaded version")
    input_shape: list[int] = Field(examples=[[28, 28, 1]])
    parameter_count: int
    class_names: list[str]
    preprocessing: Preprocessing
    source: str = Field(
        "trained",
        description="`trained` here, `imported` (python -m training import), or `inferred`: a SavedModel served"
        " with metadata guessed from its signature (INFER_METADATA; class names 0..N-1)",
    )
    metrics: dict[str, SplitMetrics] = Field(description="train, val and test loss and accuracy")
    test_accuracy: float | None
    epochs_run: int | None = None
    training_seconds: float | None = None
    reports: list[str] = Field(default_factory=list, description="URLs of the training report images")
    labels: dict[str, int] = Field(default_factory=dict, description='version labels, e.g. {"stable": 1}')
    default: bool = Field(False, description="the dataset's default model: what `model=<dataset>` answers with")


class ModelList(BaseModel):
    """Every loaded model, newest versions, sorted by dataset then test accuracy, and the refused versions."""

    models: list[ModelSummary]
    failed: list[FailedModel] = Field(default_factory=list, description="versions refused at load")


class ModelDetail(BaseModel):
    """A model's metadata.json as published (no paths of the training machine), plus the report URLs."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    dataset: str
    arch: str
    version: int
    versions: list[int]
    report_urls: list[str]
    metadata: dict[str, Any]


class Health(BaseModel):
    """Liveness."""

    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    """Readiness: models loaded and serving."""

    status: str = Field(examples=["ready"])
    models: int = Field(description="loaded model versions", examples=[4])
    failed: list[FailedModel] = Field(default_factory=list, description="versions refused at load")


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str = Field(examples=["model_not_found"])
    message: str = Field(examples=["no model mnist/foo; loaded models: mnist/custom2, mnist/mlp"])
    request_id: str | None = Field(None, examples=["5f2b6c0e9d1a4c7e8b3f2a1d0c9e8f7a"])


class ErrorResponse(BaseModel):
    """The shape of every native API error."""

    error: ErrorBody
