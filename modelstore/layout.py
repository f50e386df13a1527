"""Where things are in a model store: `<store>/<dataset>/<arch>/<version>/`.

This is TensorFlow Serving's layout: `<store>/<dataset>/<arch>` is a model base path whose
integer-named subfolders are its versions. A version folder holds the SavedModel
(`saved_model.pb`, `variables/`) with one `serving_default` signature, `metadata.json`
(see `modelstore.metadata`) and the training reports. Training writes a version into a
hidden staging folder and renames it at the end, so a reader never sees half a version.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "INPUT_NAME",
    "METADATA_FILE",
    "OUTPUT_NAME",
    "REPORT_IMAGES",
    "SAVED_MODEL_FILE",
    "SIGNATURE_NAME",
    "next_version",
    "staging_folder",
    "version_folders",
]

SIGNATURE_NAME = "serving_default"
"""The SavedModel signature that serves, the one TensorFlow Serving calls by default."""

INPUT_NAME = "images"
"""The signature's input: float32 (N, height, width, channels), values in [0, 1]."""

OUTPUT_NAME = "probabilities"
"""The signature's output: float32 (N, classes), softmax probabilities summing to 1 per row."""

METADATA_FILE = "metadata.json"

REPORT_IMAGES = ("history", "confusion_matrix", "errors")
"""Training report images a version folder may hold, as `<name>.png`."""


SAVED_MODEL_FILE = "saved_model.pb"


def version_folders(store_dir: Path, *, bare: bool = False) -> Iterator[tuple[str, str, int, Path]]:
    """Every complete version folder of the store, sorted by dataset, arch and version.

    Args:
        store_dir: The store's root folder.
        bare: Also yield folders that hold a SavedModel (`saved_model.pb`) and no
            `metadata.json`: models this project did not make (the service lists them as
            failed, or serves them with `INFER_METADATA`).

    Yields:
        (dataset, arch, version, folder) for each `<dataset>/<arch>/<integer>/` folder that
        holds a `metadata.json` (or, with `bare`, a `saved_model.pb`). Staging folders
        (hidden names) are skipped.
    """
    names = (METADATA_FILE, SAVED_MODEL_FILE) if bare else (METADATA_FILE,)
    found = set()
    for name in names:
        for path in store_dir.glob(f"*/*/*/{name}"):
            folder = path.parent
            if folder.name.isdigit() and not folder.parent.name.startswith("."):
                found.add((folder.parent.parent.name, folder.parent.name, int(folder.name), folder))
    yield from sorted(found)


def next_version(store_dir: Path, dataset: str, arch: str) -> int:
    """One more than the newest integer version of `dataset/arch` in the store, else 1."""
    folder = store_dir / dataset / arch
    versions = [int(path.name) for path in folder.glob("*") if path.is_dir() and path.name.isdigit()]
    return max(versions, default=0) + 1


def staging_folder(target: Path) -> Path:
    """The hidden folder a version is written into before it is renamed to `target`."""
    return target.with_name(f".{target.name}.tmp")
