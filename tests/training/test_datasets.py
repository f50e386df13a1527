"""Dataset loaders on the shared offline copies and on image folders made here."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.datasets import load_cifar10, load_dataset, load_fashion_mnist, load_image_folder, load_mnist


def test_mnist_from_local_file(data_dir: Path) -> None:
    dataset = load_mnist(data_dir)
    assert dataset.x_train.shape == (60_000, 28, 28, 1)
    assert dataset.x_test.shape == (10_000, 28, 28, 1)
    assert dataset.x_train.dtype == np.uint8
    assert dataset.y_train.dtype == np.int64
    assert list(dataset.y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(dataset.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert dataset.class_names == tuple("0123456789")
    assert dataset.sha256 == "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"


def test_fashion_mnist_from_idx_files(data_dir: Path) -> None:
    dataset = load_fashion_mnist(data_dir)
    assert dataset.x_train.shape == (60_000, 28, 28, 1)
    assert dataset.x_test.shape == (10_000, 28, 28, 1)
    assert set(np.unique(dataset.y_test)) == set(range(10))
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[9] == "Ankle boot"


def test_cifar10_from_jpeg_archive(data_dir: Path) -> None:
    dataset = load_cifar10(data_dir)
    assert dataset.x_train.shape == (50_000, 32, 32, 3)
    assert dataset.x_test.shape == (10_000, 32, 32, 3)
    assert dataset.x_train.dtype == np.uint8
    assert dataset.y_test.dtype == np.int64
    assert np.bincount(dataset.y_train).tolist() == [5_000] * 10
    assert np.bincount(dataset.y_test).tolist() == [1_000] * 10
    assert dataset.class_names == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    # the JPEG rendition's per-channel train mean, from the archive's README
    np.testing.assert_allclose(dataset.x_train.mean(axis=(0, 1, 2)), [125.27, 122.93, 113.86], atol=0.01)
    assert dataset.sha256 == "0493b9c94c62a5e8a6b98a28016b4eebed4fa9aac8154143eead5d26fc94fabb"


def test_unknown_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)


def _make_folder(root: Path) -> None:
    colours = {"red": (220, 20, 20), "blue": (20, 20, 220)}
    for split, count in (("train", 3), ("test", 2)):
        for name, colour in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (8, 6), colour).save(folder / f"{index}.png")


def test_image_folder_directory(tmp_path: Path) -> None:
    _make_folder(tmp_path / "shapes")
    dataset = load_image_folder(tmp_path / "shapes")
    assert dataset.class_names == ("blue", "red")
    assert dataset.x_train.shape == (6, 6, 8, 3)
    assert dataset.x_test.shape == (4, 6, 8, 3)
    red = dataset.x_train[dataset.y_train == 1]
    assert (red[..., 0] > 200).all()


def test_image_folder_tarball_with_size_and_channels(tmp_path: Path) -> None:
    _make_folder(tmp_path / "shapes")
    archive = tmp_path / "shapes.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "shapes", arcname="shapes")
    dataset = load_dataset(f"folder:{archive}", tmp_path)
    assert dataset.name == "folder_shapes"
    assert dataset.x_train.shape == (6, 6, 8, 3)
    resized = load_image_folder(archive, image_size=(4, 4), channels=1)
    assert resized.x_test.shape == (4, 4, 4, 1)
    assert resized.sha256 is not None


def test_image_folder_without_test_split_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    (folder / "0.png").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="test"):
        load_image_folder(tmp_path)
