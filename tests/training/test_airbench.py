"""The airbench-style CIFAR-10 network: its size, its whitening layer, its schedule and
augmentation, and a quick training run through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.airbench import build_airbench, whitening_kernel
from training.airbench_train import _Augmenter, triangle


def test_parameter_count_and_layers() -> None:
    model = build_airbench((32, 32, 3), 10)
    # whiten 2*2*3*24 + 24; blocks (3*3*24*64, 3*3*64*64, 3*3*64*128, 3*3*128*128 * 3);
    # batch norm beta + moving mean/variance per conv (no gamma); dense 128*10 without bias.
    assert model.count_params() == 570_296
    assert model.output_shape == (None, 10)
    assert not any(layer.name.startswith("block") and getattr(layer, "use_bias", False) for layer in model.layers)


def test_whitening_kernel_whitens_patches() -> None:
    rng = np.random.default_rng(0)
    # Correlated channels, so whitening has something to undo.
    base = rng.normal(size=(200, 16, 16, 1)).astype(np.float32)
    noise = rng.normal(size=(200, 16, 16, 2)).astype(np.float32)
    images = np.concatenate([base, base * 0.5 + noise[..., :1], noise[..., 1:] - base], axis=-1).astype(np.float32)
    kernel = whitening_kernel(images)
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
    patches = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))  # (N, 15, 15, C, 2, 2)
    flat = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12).astype(np.float64)
    projected = flat @ kernel[..., :12].reshape(12, 12).astype(np.float64)
    covariance = projected.T @ projected / len(projected)
    # The well-conditioned directions come out with unit variance and uncorrelated.
    np.testing.assert_allclose(np.diag(covariance)[:4], 1.0, rtol=1e-2)
    assert abs(covariance[0, 1]) < 1e-3


def test_triangle_schedule() -> None:
    assert triangle(0, 100) == pytest.approx(0.2)
    assert triangle(23, 100) == pytest.approx(1.0)
    assert triangle(100, 100) == pytest.approx(0.07)
    assert 0.2 < triangle(10, 100) < 1.0


def test_augmenter_translates_and_alternates_the_flip() -> None:
    images = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    augmenter = _Augmenter(images, translate=2, seed=0)
    even, odd = augmenter.epoch(0), augmenter.epoch(1)
    assert even.shape == odd.shape == images.shape
    assert even.dtype == np.uint8
    # Every output is a crop of the reflect-padded (and maybe mirrored) image.
    for index, image in enumerate(even):
        padded = augmenter.padded[index]
        assert any(np.array_equal(image, padded[dy : dy + 8, dx : dx + 8]) for dy in range(5) for dx in range(5))


def test_quick_training_exports_a_flip_averaged_model(data_dir: Path, tmp_path: Path) -> None:
    import json

    from training.cli import main

    argv = ["train", "--arch", "airbench", "--dataset", "cifar10", "--quick", "--flip-average"]
    argv += ["--data-dir", str(data_dir), "--output-dir", str(tmp_path), "--run-dir", str(tmp_path / "run")]
    main(argv)
    metadata = json.loads((tmp_path / "cifar10" / "airbench" / "1" / "metadata.json").read_text())
    assert metadata["test_time_augmentation"] == "flip_average"
    assert len(metadata["epoch_seconds"]) == 1
    assert metadata["seconds_per_epoch"] > 0


def test_augmenter_never_mirrors_digits() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 1), dtype=np.uint8)
    augmenter = _Augmenter(images, translate=0, seed=0, flip=False)
    np.testing.assert_array_equal(augmenter.epoch(0), images)
    np.testing.assert_array_equal(augmenter.epoch(1), images)
