"""Your own classifier in the store: Keras files and SavedModels this project did not train,
imported by `python -m training import` and served by a real server process; bad models
refused with a clear reason; a bare SavedModel listed as failed, or served as TensorFlow
Serving would with `INFER_METADATA`.

The models are built here with fixed weights so that their answer is known: they average
the image's pixels and answer `bright` for a light image and `dark` for a dark one.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import keras
import numpy as np
import pytest
from PIL import Image

from tests.conftest import PROJECT_ROOT, export_tiny_model, serve
from training.cli import main as training_cli

pytestmark = pytest.mark.slow


def brightness_model(shape: tuple[int, int, int], *, softmax: bool, scale: float = 1.0) -> keras.Model:
    """(N, H, W, C) -> 2 classes, `dark` then `bright`: logits +-10 (mean pixel - 0.5), for
    pixels in [0, `scale`]."""
    inputs = keras.Input(shape)
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(2, activation="softmax" if softmax else None)
    outputs = dense(pooled)
    model = keras.Model(inputs, outputs)
    channels = shape[2]
    kernel = np.tile(np.array([[-10.0, 10.0]]) / channels / scale, (channels, 1))
    dense.set_weights([kernel.astype(np.float32), np.array([5.0, -5.0], np.float32)])
    return model


def jpeg(level: int, size: tuple[int, int] = (120, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (level, level, level)).save(buffer, format="JPEG")
    return buffer.getvalue()


def classify(url: str, model: str, level: int) -> dict:
    answer = httpx.post(
        f"http://{url}/predict", params={"model": model}, files={"image": ("x.jpg", jpeg(level))}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def own_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model files of each kind: `.keras` (logits, RGB, 24x40), `.h5` (softmax, grayscale,
    32x32), a SavedModel (logits, RGB, 20x20, trained on pixels in [0, 255])."""
    folder = tmp_path_factory.mktemp("own")
    files = {"keras": folder / "bright.keras", "h5": folder / "gray.h5", "savedmodel": folder / "raw_savedmodel"}
    brightness_model((24, 40, 3), softmax=False).save(files["keras"])
    with warnings.catch_warnings():  # Keras calls .h5 legacy, which is the point: users still have them
        warnings.simplefilter("ignore")
        brightness_model((32, 32, 1), softmax=True).save(files["h5"])
    brightness_model((20, 20, 3), softmax=False, scale=255.0).export(files["savedmodel"], verbose=False)
    return files


def test_imported_models_of_every_kind_are_served_right(
    own_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    # The real command line, as a user runs it.
    printed = subprocess.run(
        [sys.executable, "-m", "training", "import", str(own_models["keras"]), "--dataset", "pets", "--name",
         "bright", "--classes", "dark,bright", "--output-dir", str(store)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    assert "a softmax was added" in printed and "model=pets/bright" in printed and "24x40x3" in printed
    assert training_cli(["import", str(own_models["h5"]), "--name", "gray", "--classes", "dark,bright",
                         "--output-dir", str(store)]) == 0  # fmt: skip
    assert "softmax" not in capsys.readouterr().out  # it already answers probabilities
    classes = _classes_file(tmp_path)
    assert training_cli(["import", str(own_models["savedmodel"]), "--name", "raw", "--classes-file", str(classes),
                         "--input-range", "0,255", "--output-dir", str(store)]) == 0  # fmt: skip

    with serve(store) as (url, _):
        for model in ("pets/bright", "custom/gray", "custom/raw"):
            assert classify(url, model, 240)["class_name"] == "bright", model
            dark = classify(url, model, 15)
            total = sum(item["probability"] for item in dark["probabilities"])
            assert dark["class_name"] == "dark" and abs(total - 1) < 1e-4, model
        listed = {item["model"]: item for item in httpx.get(f"http://{url}/models", timeout=30).json()["models"]}
        assert listed["pets/bright"]["source"] == "imported" and listed["pets/bright"]["input_shape"] == [24, 40, 3]
        assert listed["custom/gray"]["preprocessing"] == "resize" and listed["custom/gray"]["class_names"] == [
            "dark",
            "bright",
        ]
        # Every protocol takes the model's own size.
        v1 = httpx.post(
            f"http://{url}/v1/models/pets-bright:predict",
            json={"instances": [np.full((24, 40, 3), 0.9).tolist()]},
            timeout=30,
        )
        assert v1.status_code == 200 and np.argmax(v1.json()["predictions"][0]) == 1
        v2 = httpx.get(f"http://{url}/v2/models/custom-gray", timeout=30).json()
        assert v2["inputs"][0]["shape"] == [-1, 32, 32, 1]


def _classes_file(folder: Path) -> Path:
    path = folder / "classes.txt"
    path.write_text("dark\nbright\n")
    return path


def _two_inputs() -> keras.Model:
    first, second = keras.Input((8, 8, 1)), keras.Input((8, 8, 1))
    joined = keras.layers.Concatenate()([first, second])
    return keras.Model([first, second], keras.layers.Dense(2)(keras.layers.Flatten()(joined)))


@pytest.mark.parametrize(
    ("build", "arguments", "reason"),
    [
        (lambda: keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)]), [], "not an image batch"),
        (_two_inputs, [], "2 inputs"),
        (
            lambda: keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3)]),
            [],
            "not (N, classes)",
        ),
        (lambda: brightness_model((8, 8, 3), softmax=True), ["--classes", "a,b,c"], "3 class names given"),
        (lambda: brightness_model((8, 8, 4), softmax=True), [], "4 channels"),
        (lambda: brightness_model((8, 8, 3), softmax=True), ["--preprocessing", "mnist"], "makes 1-channel inputs"),
    ],
    ids=["flat input", "two inputs", "no class axis", "class names", "four channels", "recipe channels"],
)
def test_a_model_that_cannot_serve_is_refused_with_its_reason(
    build, arguments: list[str], reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.keras"
    build().save(path)
    with pytest.raises(SystemExit) as exit_:
        training_cli(["import", str(path), "--name", "bad", "--output-dir", str(tmp_path / "store"), *arguments])
    assert exit_.value.code == 2
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "store" / "custom" / "bad").exists()


def test_a_bare_savedmodel_is_listed_as_failed_or_served_with_inferred_metadata(
    own_models: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    bare = store / "shapes" / "plain" / "1"
    bare.parent.mkdir(parents=True)
    brightness_model((16, 16, 3), softmax=True).export(bare, verbose=False)
    logits = store / "shapes" / "raw_logits" / "1"
    shutil.copytree(own_models["savedmodel"], logits)
    export_tiny_model(store, "mnist")  # a model that serves, so the server is ready
    with serve(store) as (url, _):
        models = httpx.get(f"http://{url}/models", timeout=30).json()
        failed = {item["model"]: item["reason"] for item in models["failed"]}
        assert "python -m training import PATH --dataset shapes --name plain" in failed["shapes/plain"]
        assert "INFER_METADATA" in failed["shapes/plain"]
        ready = httpx.get(f"http://{url}/readyz", timeout=30)
        assert ready.status_code == 200 and {item["model"] for item in ready.json()["failed"]} >= {"shapes/plain"}
    with serve(store, INFER_METADATA="true") as (url, _):
        listed = {item["model"]: item for item in httpx.get(f"http://{url}/models", timeout=30).json()["models"]}
        assert listed["shapes/plain"]["source"] == "inferred"
        assert listed["shapes/plain"]["class_names"] == ["0", "1"]
        assert classify(url, "shapes/plain", 240)["class_name"] == "1"
        failed = {
            item["model"]: item["reason"] for item in httpx.get(f"http://{url}/models", timeout=30).json()["failed"]
        }
        assert "not probabilities" in failed["shapes/raw_logits"]  # logits: it needs the import's softmax


def test_a_model_of_a_known_dataset_is_measured_on_its_test_split(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(tmp_path / "digits.keras")
    argv = ["import", str(tmp_path / "digits.keras"), "--dataset", "mnist", "--name", "mine"]
    assert training_cli([*argv, "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "store")]) == 0
    assert "test accuracy" in capsys.readouterr().out
    metadata = json.loads((tmp_path / "store" / "mnist" / "mine" / "1" / "metadata.json").read_text())
    assert metadata["class_names"] == [str(digit) for digit in range(10)] and metadata["preprocessing"] == "mnist"
    assert metadata["test_size"] == 10_000 and 0.0 <= metadata["metrics"]["test"]["accuracy"] <= 1.0
    assert metadata["source"] == "imported" and len(metadata["source_sha256"]) == 64
    # A model that does not fit the dataset is imported unmeasured, unless test data was asked for.
    brightness_model((28, 28, 1), softmax=True).save(tmp_path / "two.keras")
    two = ["import", str(tmp_path / "two.keras"), "--dataset", "mnist", "--name", "two", "--data-dir", str(data_dir)]
    assert training_cli([*two, "--output-dir", str(tmp_path / "store")]) == 0
    with pytest.raises(SystemExit):
        training_cli([*two, "--test-data", "mnist", "--output-dir", str(tmp_path / "store"), "--version", "2"])
    assert "has 10 classes; the model answers 2" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "store" / "mnist" / "two").iterdir()) == ["1"]  # no staging left
