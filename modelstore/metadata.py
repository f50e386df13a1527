"""`metadata.json`: what a model version is, how it was trained and how well it does.

Training writes it through `ModelMetadata` and the service validates every version with
it at load, so both read the same fields with the same meaning. Accuracies are fractions
in [0, 1], times are seconds, images are counted one per example.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelstore.layout import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME

__all__ = [
    "PREPROCESSING_CHANNELS",
    "ClassMetrics",
    "EnsembleMember",
    "ModelMetadata",
    "Preprocessing",
    "Sharpen",
    "SplitMetrics",
    "preprocessing_fits",
    "public_command",
]

Preprocessing = Literal["mnist", "fashion_mnist", "cifar10", "resize"]
"""How an uploaded image becomes a model's input: its dataset's recipe, or `resize` alone
(the recipes live in `app/inference`)."""

PREPROCESSING_CHANNELS: dict[str, int | None] = {"mnist": 1, "fashion_mnist": 1, "cifar10": 3, "resize": None}
"""The input channels each preprocessing makes (None: whatever the model takes)."""


def preprocessing_fits(method: str, channels: int) -> bool:
    """Whether the preprocessing `method` makes inputs of `channels` channels."""
    made = PREPROCESSING_CHANNELS.get(method)
    return made is None or made == channels


class Sharpen(BaseModel):
    """An unsharp mask applied to an upload after it is shrunk to the model's input size
    (Pillow's `ImageFilter.UnsharpMask`, threshold 0): a setting chosen for one model on
    validation images re-saved as uploads, applied to that model alone."""

    model_config = ConfigDict(extra="forbid")

    radius: float = Field(gt=0.0, le=10.0, description="Gaussian radius, pixels of the model's input")
    percent: int = Field(gt=0, le=500, description="strength, percent")


class SplitMetrics(BaseModel):
    """Loss and accuracy on one split, measured by the run that trained the model."""

    model_config = ConfigDict(extra="forbid")

    loss: float = Field(ge=0.0, description="mean sparse categorical cross-entropy, nats")
    accuracy: float = Field(ge=0.0, le=1.0, description="fraction of images whose top class is right")


class ClassMetrics(BaseModel):
    """Precision and recall of one class on the test split."""

    model_config = ConfigDict(extra="forbid")

    class_index: int = Field(ge=0)
    class_name: str
    precision: float = Field(ge=0.0, le=1.0)
    recall: float = Field(ge=0.0, le=1.0)
    support: int = Field(ge=0, description="test images of this class")


NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
"""A dataset id or a model's store name: one path segment of the store."""


class EnsembleMember(BaseModel):
    """One model of an ensemble: a store version and its weight in the mean of probabilities."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    arch: str
    version: int = Field(ge=1)
    weight: float = Field(1.0, gt=0.0)


class ModelMetadata(BaseModel):
    """The `metadata.json` of one store version.

    The first group of fields is what serving needs; the rest records the run that made
    the model, so it can be judged and repeated.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    dataset: str = Field(pattern=NAME_PATTERN, description="dataset id, e.g. `mnist`")
    arch: str = Field(
        pattern=NAME_PATTERN,
        description="the model's name in the store, its architecture's name unless `architecture` says otherwise, "
        "e.g. `custom2`",
    )
    version: int = Field(ge=1, description="the integer version folder it lives in")
    class_names: list[str] = Field(min_length=2, description="class names indexed by class index")
    input_shape: tuple[int, int, int] = Field(description="(height, width, channels) of one input, pixels")
    input_dtype: Literal["float32"] = "float32"
    input_range: tuple[float, float] = Field((0.0, 1.0), description="range of the input values")
    signature: str = Field(SIGNATURE_NAME, description="the SavedModel signature that serves")
    input_name: str = Field(INPUT_NAME, description="the signature's input: float32 (N, H, W, C)")
    output_name: str = Field(OUTPUT_NAME, description="the signature's output: float32 (N, classes) probabilities")
    preprocessing: Preprocessing = Field(description="how an uploaded image becomes the input (app/inference)")
    sharpen: Sharpen | None = Field(
        None,
        description="unsharp mask after an upload is shrunk (`fashion_mnist` and `cifar10` preprocessing), "
        "chosen for this model; none when absent",
    )
    test_time_augmentation: Literal["flip_average", "translate_average"] | None = Field(
        None,
        description="`flip_average`: the SavedModel answers the mean over the image and its mirror image; "
        "`translate_average` (an ensemble's): each member's answer is averaged over the image and "
        "two one-pixel translations of it",
    )
    source: Literal["trained", "imported", "inferred"] = Field(
        "trained",
        description="`trained` by `python -m training`; `imported` from a model file by `python -m training import`; "
        "`inferred` by the service from a SavedModel's signature (`INFER_METADATA`), never written to disk",
    )
    source_file: str | None = Field(None, description="the imported file or folder's name")
    source_sha256: str | None = Field(None, description="SHA-256 of the imported file (of a folder's saved_model.pb)")
    architecture: str | None = Field(
        None, description="the architecture (training.architectures) when the store name `arch` differs from it"
    )
    members: list[EnsembleMember] | None = Field(None, description="an ensemble's member models")

    parameter_count: int = Field(ge=0, description="trainable and non-trainable parameters")
    metrics: dict[Literal["train", "val", "test"], SplitMetrics] = Field(
        default_factory=dict, description="loss and accuracy per split"
    )
    train_size: int | None = Field(None, ge=0, description="training images")
    val_size: int | None = Field(None, ge=0, description="validation images (held out of training)")
    test_size: int | None = Field(None, ge=0, description="test images")
    confusion_matrix: list[list[int]] | None = Field(
        None, description="test counts, row = true class index, column = predicted class index"
    )
    per_class: list[ClassMetrics] | None = None
    epochs_run: int | None = Field(None, ge=0)
    best_epoch: int | None = Field(None, ge=0, description="1-based epoch whose weights were kept")
    epoch_seconds: list[float] | None = Field(None, description="wall-clock seconds of each epoch")
    seconds_per_epoch: float | None = Field(None, ge=0.0)
    training_seconds: float | None = Field(None, ge=0.0, description="wall-clock seconds of the whole run")
    history: dict[str, list[float]] | None = Field(
        None, description="Keras History: metric name to one value per epoch"
    )
    recipe: dict[str, Any] | None = Field(None, description="optimizer, learning rate, schedule, batch size, epochs...")
    seed: int | None = Field(None, description="seed of the weight initialisation, the shuffle and the augmentation")
    split_seed: int | None = Field(
        None, description="seed of the validation split when it differs from `seed` (None: `seed`)"
    )
    steps_per_execution: int | None = None
    class_weight: dict[str, float] | None = None
    quick: bool = Field(False, description="a few hundred images and one epoch: a smoke test, not a model")
    initial_weights: str | None = Field(None, description="store version or weights file it was warm-started from")
    command: str | None = Field(None, description="the command that trained it, from the project root")
    data_source: str | None = Field(None, description="file name of the dataset copy")
    data_sha256: str | None = None
    git_commit: str | None = None
    created_at: str | None = Field(None, description="UTC, ISO 8601")
    tensorflow_version: str | None = None
    keras_version: str | None = None
    machine: str | None = Field(None, description="CPU architecture and GPU count of the training machine")
    reports: list[str] = Field(default_factory=list, description="report files in the version folder")

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        if min(self.input_shape) < 1 or self.input_shape[2] not in (1, 3):
            raise ValueError(f"input_shape {list(self.input_shape)} is not (height, width, 1 or 3 channels)")
        if not preprocessing_fits(self.preprocessing, self.input_shape[2]):
            raise ValueError(
                f"preprocessing {self.preprocessing!r} makes {PREPROCESSING_CHANNELS[self.preprocessing]}-channel"
                f" inputs; the model takes {self.input_shape[2]}"
            )
        classes = len(self.class_names)
        if self.confusion_matrix is not None and (
            len(self.confusion_matrix) != classes or any(len(row) != classes for row in self.confusion_matrix)
        ):
            raise ValueError(f"confusion_matrix is not {classes}x{classes}")
        return self

    @property
    def validation_seed(self) -> int | None:
        """The seed `split_validation` held out the validation images with."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def model_id(self) -> str:
        """`dataset/arch`."""
        return f"{self.dataset}/{self.arch}"

    @property
    def test_accuracy(self) -> float | None:
        """Accuracy on the test split, if measured."""
        test = self.metrics.get("test")
        return test.accuracy if test else None

    def public(self) -> dict[str, Any]:
        """The metadata fit to publish: the command without absolute paths of the training machine."""
        data = self.model_dump(mode="json")
        data["command"] = public_command(self.command)
        return data


def public_command(command: str | None) -> str | None:
    """`command` with every absolute path cut to its last component.

    `--output-dir /work/main/models_store` becomes `--output-dir models_store`; relative
    paths (from the project root) are kept.
    """
    if command is None:
        return None

    def cut(token: str) -> str:
        flag, equals, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if not equals:
            flag, value = "", token
        if value.startswith("/"):
            value = PurePosixPath(value).name or value
        return f"{flag}{equals}{value}"

    try:
        tokens = shlex.split(command)
    except ValueError:
        return command.split(" ")[0]
    return shlex.join(cut(token) for token in tokens)
