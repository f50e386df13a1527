"""Datasets the project trains on, read from local copies with a Keras-download fallback.

Every loader returns a `Dataset`: uint8 images of shape (N, H, W, C) and int64 labels,
split into the official train and test sets, with the class names and the name of the
preprocessing the service must apply to uploads for models trained on it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "TEST_FRACTION",
    "Dataset",
    "file_sha256",
    "load_dataset",
    "load_image_folder",
]

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset split into its official train and test sets.

    Attributes:
        name: Dataset id used in the store, e.g. `mnist`.
        class_names: Name of each class, indexed by class index.
        x_train: uint8 array (N, H, W, C), pixel values 0-255.
        y_train: int64 array (N,), class indices.
        x_test: uint8 array (M, H, W, C).
        y_test: int64 array (M,).
        preprocessing: Name of the upload preprocessing the service applies for models
            trained on this data (`mnist`, `fashion_mnist`, `cifar10` or `resize`).
        source: The local file or folder read, or `keras.datasets` for a download.
        sha256: sha256 of the local file read (of each file, joined, for several), or None.
    """

    name: str
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: str
    source: str
    sha256: str | None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (height, width, channels) in pixels."""
        height, width, channels = self.x_train.shape[1:]
        return (int(height), int(width), int(channels))

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def take(self, train: int, test: int, *, seed: int = 0) -> Dataset:
        """A copy with `train` and `test` images drawn at random (quick mode, samples).

        Random rather than the first ones: image-folder datasets are stored class by
        class, so their first images are all of one class.
        """
        rng = np.random.default_rng(seed)
        train_idx = np.sort(rng.permutation(len(self.y_train))[:train])
        test_idx = np.sort(rng.permutation(len(self.y_test))[:test])
        return Dataset(
            name=self.name,
            class_names=self.class_names,
            x_train=self.x_train[train_idx],
            y_train=self.y_train[train_idx],
            x_test=self.x_test[test_idx],
            y_test=self.y_test[test_idx],
            preprocessing=self.preprocessing,
            source=self.source,
            sha256=self.sha256,
        )


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _as_nhwc(images: np.ndarray) -> np.ndarray:
    """Add a channel axis to (N, H, W) grayscale images."""
    return images[..., np.newaxis] if images.ndim == 3 else images


def load_mnist(data_dir: Path) -> Dataset:
    """Load MNIST from `data_dir/mnist.npz` (Keras layout), else download it with Keras.

    Returns:
        60,000 train and 10,000 test images of shape (28, 28, 1).
    """
    path = data_dir / "mnist.npz"
    if path.is_file():
        with np.load(path) as data:
            arrays = [data[key] for key in ("x_train", "y_train", "x_test", "y_test")]
        source, sha256 = str(path), file_sha256(path)
    else:
        logger.warning("%s not found; downloading MNIST with keras.datasets", path)
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        arrays = [x_train, y_train, x_test, y_test]
        source, sha256 = "keras.datasets.mnist", None
    x_train, y_train, x_test, y_test = arrays
    return Dataset(
        name="mnist",
        class_names=MNIST_CLASSES,
        x_train=_as_nhwc(x_train),
        y_train=y_train.astype(np.int64),
        x_test=_as_nhwc(x_test),
        y_test=y_test.astype(np.int64),
        preprocessing="mnist",
        source=source,
        sha256=sha256,
    )


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the original MNIST/Fashion-MNIST format) as uint8.

    Raises:
        ValueError: The header's magic number is not an unsigned-byte IDX file.
    """
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic})")
    ndim = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(data_dir: Path) -> Dataset:
    """Load Fashion-MNIST from the IDX files in `data_dir/fashion-mnist/`, else download.

    Returns:
        60,000 train and 10,000 test images of shape (28, 28, 1).
    """
    folder = data_dir / "fashion-mnist"
    names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    paths = [folder / name for name in names]
    if all(path.is_file() for path in paths):
        x_train, y_train, x_test, y_test = (_read_idx(path) for path in paths)
        source = str(folder)
        sha256 = ",".join(file_sha256(path) for path in paths)
    else:
        logger.warning("%s not found; downloading Fashion-MNIST with keras.datasets", folder)
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
        source, sha256 = "keras.datasets.fashion_mnist", None
    return Dataset(
        name="fashion_mnist",
        class_names=FASHION_MNIST_CLASSES,
        x_train=_as_nhwc(x_train),
        y_train=y_train.astype(np.int64),
        x_test=_as_nhwc(x_test),
        y_test=y_test.astype(np.int64),
        preprocessing="fashion_mnist",
        source=source,
        sha256=sha256,
    )


def _iter_folder_files(root: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """Yield (relative posix path, reader) for every file under a folder or in a .tar.gz."""
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file():
                yield path.relative_to(root).as_posix(), path.read_bytes
        return
    with tarfile.open(root, "r:*") as archive:
        members = sorted(
            (member for member in archive.getmembers() if member.isfile()),
            key=lambda member: member.name,
        )
        for member in members:
            handle = archive.extractfile(member)
            if handle is not None:
                data = handle.read()
                yield member.name.lstrip("./"), partial(bytes, data)


TEST_FRACTION = 0.2
"""Of a folder of class folders, the share of each class held out as the test split."""


def _held_out(flat: list[tuple[str, bytes]]) -> dict[str, list[tuple[str, bytes]]]:
    """Split (class, image) pairs into train and test: `TEST_FRACTION` of each class (at least
    one image when it has two or more), chosen with seed 0 in the pairs' order."""
    rng = np.random.default_rng(0)
    split: dict[str, list[tuple[str, bytes]]] = {"train": [], "test": []}
    for label in sorted({label for label, _ in flat}):
        items = [item for item in flat if item[0] == label]
        order = rng.permutation(len(items))
        held = max(1, round(len(items) * TEST_FRACTION)) if len(items) > 1 else 0
        split["test"] += [items[index] for index in order[:held]]
        split["train"] += [items[index] for index in order[held:]]
    return split


def load_image_folder(
    root: Path,
    *,
    name: str | None = None,
    class_names: tuple[str, ...] | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    preprocessing: str = "resize",
) -> Dataset:
    """Load an image-folder dataset: `train/<class>/*` and `test/<class>/*`, or one folder
    per class (`<class>/*`, as Keras' `image_dataset_from_directory` reads), of which a
    fixed fifth of each class (`TEST_FRACTION`, seed 0) is held out as the test split.

    Args:
        root: A directory or a .tar.gz archive holding `train/` and `test/`, or the class
            folders (a single top-level folder around them is allowed).
        name: Dataset id; defaults to `folder_<root stem>`.
        class_names: Class order; defaults to the sorted names of the `train/` subfolders.
        image_size: (height, width) in pixels; defaults to the size of the first image.
            Other sizes are resized to it.
        channels: 1 (grayscale) or 3 (RGB); defaults to 1 if the first image is grayscale.
        preprocessing: Upload preprocessing recorded for models trained on it.

    Returns:
        The images as uint8 (N, H, W, C) with labels in class-name order.

    Raises:
        ValueError: No `train/` or `test/` images, or a test class unknown to train.
    """
    samples: dict[str, list[tuple[str, bytes]]] = {"train": [], "test": []}
    flat: list[tuple[str, bytes]] = []
    for relative, read in _iter_folder_files(root):
        parts = relative.split("/")
        if not relative.lower().endswith(IMAGE_SUFFIXES) or len(parts) < 2:
            continue
        if len(parts) >= 3 and parts[-3] in samples:
            samples[parts[-3]].append((parts[-2], read()))
        else:
            flat.append((parts[-2], read()))
    if not samples["train"] and not samples["test"] and flat:
        samples = _held_out(sorted(flat, key=lambda item: item[0]))
    if not samples["train"] or not samples["test"]:
        raise ValueError(f"{root}: expected images in <class>/ folders, or in train/<class>/ and test/<class>/")
    names = class_names or tuple(sorted({label for label, _ in samples["train"]}))
    index = {label: i for i, label in enumerate(names)}
    unknown = {label for label, _ in samples["test"]} - index.keys()
    if unknown:
        raise ValueError(f"{root}: test classes {sorted(unknown)} not among {list(names)}")

    with Image.open(io.BytesIO(samples["train"][0][1])) as first:
        size = image_size or (first.height, first.width)
        mode = {1: "L", 3: "RGB"}[channels] if channels else ("L" if first.mode in ("L", "1", "I;16") else "RGB")

    def decode(split: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for label, data in samples[split]:
            with Image.open(io.BytesIO(data)) as opened:
                image = opened.convert(mode)
            if (image.height, image.width) != size:
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            images.append(np.asarray(image, dtype=np.uint8))
            labels.append(index[label])
        return _as_nhwc(np.stack(images)), np.asarray(labels, dtype=np.int64)

    x_train, y_train = decode("train")
    x_test, y_test = decode("test")
    return Dataset(
        name=name or f"folder_{root.name.split('.')[0]}",
        class_names=names,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        preprocessing=preprocessing,
        source=str(root),
        sha256=file_sha256(root) if root.is_file() else None,
    )


def load_cifar10(data_dir: Path) -> Dataset:
    """Load CIFAR-10 from `data_dir/cifar10-jpeg.tar.gz` (a JPEG rendition), else download.

    The local archive is a JPEG (quality 75) rendition of the official images, so
    accuracies on it read about a point lower than on the official test set.

    Returns:
        50,000 train and 10,000 test images of shape (32, 32, 3).
    """
    path = data_dir / "cifar10-jpeg.tar.gz"
    if path.is_file():
        return load_image_folder(
            path,
            name="cifar10",
            class_names=CIFAR10_CLASSES,
            image_size=(32, 32),
            channels=3,
            preprocessing="cifar10",
        )
    logger.warning("%s not found; downloading CIFAR-10 with keras.datasets", path)
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return Dataset(
        name="cifar10",
        class_names=CIFAR10_CLASSES,
        x_train=x_train,
        y_train=y_train.reshape(-1).astype(np.int64),
        x_test=x_test,
        y_test=y_test.reshape(-1).astype(np.int64),
        preprocessing="cifar10",
        source="keras.datasets.cifar10",
        sha256=None,
    )


DATASETS: dict[str, Callable[[Path], Dataset]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}


def load_dataset(
    name: str, data_dir: Path, *, image_size: tuple[int, int] | None = None, channels: int | None = None
) -> Dataset:
    """Load a dataset by name: one of `DATASETS` or `folder:PATH` (`load_image_folder`, its
    images resized to `image_size` (height, width) and converted to `channels` if given).

    Raises:
        ValueError: Unknown dataset name.
    """
    if name.startswith("folder:"):
        return load_image_folder(Path(name.removeprefix("folder:")), image_size=image_size, channels=channels)
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)} or folder:PATH") from None
    return loader(data_dir)
