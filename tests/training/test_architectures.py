"""Each architecture builds with the parameter count of its reference notebook."""

from __future__ import annotations

import pytest

from training.architectures import ARCHITECTURES, build_model

# (input shape, parameter count) from the reference notebooks and issues #2 and #3.
EXPECTED = {
    "mlp": ((28, 28, 1), 101_770),
    "lenet": ((28, 28, 1), 61_706),
    "custom1": ((28, 28, 1), 121_994),
    "custom2": ((28, 28, 1), 436_202),
    "custom3": ((28, 28, 1), 435_306),
    "custom4": ((28, 28, 1), 435_306),
    "custom5": ((28, 28, 1), 436_202),
    "custom2_robust": ((28, 28, 1), 436_202),
    "mlp_dropout": ((28, 28, 1), 101_770),
    "quickstart": ((28, 28, 1), 407_050),
    "keras_cnn": ((28, 28, 1), 1_199_882),
    "mlp2": ((28, 28, 1), 235_146),
    "mlp4": ((28, 28, 1), 317_450),
    "mlp4_dropout": ((28, 28, 1), 317_450),
    "mlp4_l2": ((28, 28, 1), 317_450),
    "mlp4_bn": ((28, 28, 1), 320_562),
    "mlp4_decay": ((28, 28, 1), 317_450),
    "cifar_cnn1": ((32, 32, 3), 1_602_058),
    "cifar_cnn2": ((32, 32, 3), 1_602_058),
    "cifar_cnn3": ((32, 32, 3), 11_018_058),
    "vgg_bn": ((32, 32, 3), 308_842),
    "airbench": ((32, 32, 3), 570_296),
    "airbench94": ((32, 32, 3), 1_973_944),
}


def test_every_architecture_has_an_expected_count() -> None:
    assert set(EXPECTED) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_count(name: str) -> None:
    input_shape, count = EXPECTED[name]
    model = build_model(name, input_shape, 10)
    assert model.count_params() == count
    assert model.output_shape == (None, 10)


def test_architectures_adapt_to_input_shape_and_classes() -> None:
    model = build_model("custom2", (32, 32, 3), 4)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 4)


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet999", (28, 28, 1), 10)


def test_option_an_architecture_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="does not take"):
        build_model("lenet", (28, 28, 1), 10, dropout=0.5)
