"""Quick-mode training on every dataset with the zoo's training options; the zoo file itself."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import keras
import pytest

from training.architectures import ARCHITECTURES
from training.cli import ZOO_FILE, main, resolve_recipe
from training.datasets import load_dataset
from training.runs import TrainConfig
from training.store import read_store, warm_start_chain
from training.train import train

STORE = Path(__file__).resolve().parents[2] / "models_store"

pytestmark = pytest.mark.slow


def _train(tmp_path: Path, data_dir: Path, *flags: str) -> dict:
    store = tmp_path / "store"
    argv = ["train", "--quick", "--data-dir", str(data_dir), "--output-dir", str(store)]
    main([*argv, "--run-dir", str(tmp_path / "run"), *flags])
    (metadata_path,) = store.glob("*/*/*/metadata.json")
    return json.loads(metadata_path.read_text())


def test_fashion_mlp_with_l2_and_class_weights(tmp_path: Path, data_dir: Path) -> None:
    metadata = _train(
        tmp_path, data_dir, "--dataset", "fashion_mnist", "--arch", "mlp4_l2", "--l2", "0.01",
        "--class-weight", "balanced",
    )  # fmt: skip
    assert metadata["class_names"][0] == "T-shirt/top"
    assert metadata["recipe"]["options"] == {"l2": 0.01}
    assert len(metadata["class_weight"]) == 10
    assert metadata["preprocessing"] == "fashion_mnist"


def test_fashion_cnn_with_exponential_schedule(tmp_path: Path, data_dir: Path) -> None:
    metadata = _train(
        tmp_path, data_dir, "--dataset", "fashion_mnist", "--arch", "lenet", "--lr-schedule", "exponential",
        "--decay-epochs", "0.5", "--decay-rate", "0.5", "--steps-per-execution", "4",
    )  # fmt: skip
    assert metadata["recipe"]["lr_schedule"] == "exponential"
    assert metadata["steps_per_execution"] == 4
    assert metadata["history"]["learning_rate"][0] < 1e-3  # decayed within the epoch


def test_cifar_mlp_and_cnn_with_augmentation(tmp_path: Path, data_dir: Path) -> None:
    mlp = _train(tmp_path / "mlp", data_dir, "--dataset", "cifar10", "--arch", "mlp_dropout", "--epochs", "2")
    assert mlp["input_shape"] == [32, 32, 3] and mlp["class_names"][9] == "truck"
    assert mlp["recipe"]["optimizer"] == "sgd"
    cnn = _train(tmp_path / "cnn", data_dir, "--dataset", "cifar10", "--arch", "cifar_cnn1", "--augment")
    assert cnn["recipe"]["augment"] is True
    assert cnn["parameter_count"] == 1_602_058
    assert len(cnn["per_class"]) == 10 and {"precision", "recall"} <= set(cnn["per_class"][0])


# Keras' CSVLogger leaves its file open when fit() is interrupted; the test interrupts it.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_resume_continues_an_interrupted_run(tmp_path: Path, data_dir: Path) -> None:
    class Killed(Exception):
        pass

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if epoch == 1:
                raise Killed("the machine went down after epoch 2")

    dataset = load_dataset("mnist", data_dir).take(600, 100)
    recipe = resolve_recipe("mlp", {"epochs": 4})
    config = TrainConfig(arch="mlp", recipe=recipe, run_dir=tmp_path / "run")
    with pytest.raises(Killed):
        train(dataset, config, callbacks=[Interrupt()])
    assert (tmp_path / "run" / "backup").is_dir()
    resumed = train(dataset, TrainConfig(arch="mlp", recipe=recipe, run_dir=tmp_path / "run", resume=True))
    assert len(resumed.history["loss"]) == 4  # two epochs before the interruption, two after
    assert len(resumed.epoch_seconds) == 4


def test_initial_weights_from_a_store_version(tmp_path: Path, data_dir: Path) -> None:
    import numpy as np
    import tensorflow as tf

    from training.architectures import build_model
    from training.train import load_initial_weights

    first = _train(tmp_path / "first", data_dir, "--dataset", "mnist", "--arch", "lenet")
    source = tmp_path / "first" / "store" / "mnist" / "lenet" / str(first["version"])
    model = build_model("lenet", (28, 28, 1), 10)
    load_initial_weights(model, source)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    (served,) = tf.saved_model.load(str(source)).signatures["serving_default"](tf.constant(images)).values()
    np.testing.assert_allclose(model(images, training=False), served.numpy(), atol=1e-6)

    with pytest.raises(ValueError, match="does not fit"):
        load_initial_weights(build_model("lenet", (32, 32, 3), 10), source)
    with pytest.raises(ValueError, match="variables"):
        load_initial_weights(build_model("mlp", (28, 28, 1), 10), source)

    resumed = _train(
        tmp_path / "second", data_dir, "--dataset", "mnist", "--arch", "lenet", "--initial-weights", str(source)
    )
    assert resumed["initial_weights"] == str(source)
    chain = warm_start_chain(resumed["initial_weights"])
    assert [(run["arch"], run["version"], run["created_at"]) for run in chain] == [
        ("lenet", first["version"], first["created_at"])
    ]


def test_initial_weights_from_a_version_that_keeps_only_its_serving_graph() -> None:
    """The oldest shipped versions hold their weights only as the signature's captures;
    dropout's random state is not a weight and is left as built."""
    import numpy as np
    import tensorflow as tf

    from training.architectures import build_model
    from training.train import load_initial_weights

    source = Path(__file__).resolve().parents[2] / "models_store" / "mnist" / "custom4" / "1"
    loaded = tf.saved_model.load(str(source))
    assert not hasattr(loaded, "model_variables") and not hasattr(loaded, "variables")
    model = build_model("custom4", (28, 28, 1), 10)
    load_initial_weights(model, source)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    (served,) = loaded.signatures["serving_default"](tf.constant(images)).values()
    np.testing.assert_allclose(model(images, training=False), served.numpy(), atol=1e-5)


def test_flip_average_serves_the_mean_over_the_mirror_image(tmp_path: Path, data_dir: Path) -> None:
    import numpy as np
    import tensorflow as tf

    from training.architectures import build_model
    from training.train import load_initial_weights

    metadata = _train(tmp_path, data_dir, "--dataset", "cifar10", "--arch", "mlp_dropout", "--flip-average")
    assert metadata["test_time_augmentation"] == "flip_average"
    assert metadata["parameter_count"] == 394_634  # the wrapper shares the model's weights
    source = tmp_path / "store" / "cifar10" / "mlp_dropout" / "1"
    serve = tf.saved_model.load(str(source)).signatures["serving_default"]
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    (served,) = serve(tf.constant(images)).values()
    (served_mirrored,) = serve(tf.constant(images[:, :, ::-1])).values()
    np.testing.assert_allclose(served.numpy(), served_mirrored.numpy(), atol=1e-6)

    model = build_model("mlp_dropout", (32, 32, 3), 10)
    load_initial_weights(model, source)
    expected = (model(images, training=False) + model(images[:, :, ::-1], training=False)) / 2
    np.testing.assert_allclose(served.numpy(), expected, atol=1e-6)
    assert not np.allclose(model(images, training=False), expected, atol=1e-4)


def test_flip_average_is_refused_for_digits(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="mirrored"):
        _train(tmp_path, data_dir, "--dataset", "mnist", "--arch", "mlp", "--flip-average")


def test_zoo_file_lists_valid_entries() -> None:
    entries = tomllib.loads(ZOO_FILE.read_text())["model"]
    assert len(entries) >= 25
    for entry in entries:
        assert entry["arch"] in ARCHITECTURES
        assert entry["dataset"] in ("mnist", "fashion_mnist", "cifar10")


def test_zoo_skips_models_in_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mnist" / "mlp" / "1").mkdir(parents=True)
    (tmp_path / "mnist" / "mlp" / "1" / "metadata.json").write_text("{}")
    main(["zoo", "--only", "mnist/mlp", "--output-dir", str(tmp_path)])
    assert "skip mnist/mlp" in capsys.readouterr().out


def test_compare_sums_epochs_and_time_over_a_warm_start_chain() -> None:
    models = {item["arch"]: item for item in read_store(STORE, "cifar10")}
    vgg_bn = models["vgg_bn"]
    chain = [json.loads((STORE / "cifar10" / "vgg_bn" / str(v) / "metadata.json").read_text()) for v in (1, 2, 3)]
    assert vgg_bn["version"] == 3
    assert [item["initial_weights"] for item in chain] == [None, *(f"models_store/cifar10/vgg_bn/{v}" for v in (1, 2))]
    assert vgg_bn["total_epochs"] == sum(item["epochs_run"] for item in chain) == 36 + 18 + 1
    assert vgg_bn["total_training_seconds"] == sum(item["training_seconds"] for item in chain)
    cold = models["mlp_dropout"]
    assert (cold["total_epochs"], cold["total_training_seconds"]) == (cold["epochs_run"], cold["training_seconds"])
