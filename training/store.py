"""Reading the model store's metadata: the newest versions and warm-start chains.

A version trained with `--initial-weights models_store/<dataset>/<arch>/<version>`
records that folder in its `metadata.json`; following those links gives the chain of
runs a model comes from, which the leaderboard sums and `history.png` draws.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.config import PROJECT_ROOT

__all__ = ["read_store", "read_versions", "warm_start_chain"]


def _version_key(source: str | Path) -> tuple[str, ...]:
    """(dataset, arch, version) of a version folder path: its last three parts."""
    return Path(source).parts[-3:]


def read_versions(store_dir: Path) -> dict[tuple[str, ...], dict[str, Any]]:
    """Every version's metadata, keyed by (dataset, arch, version folder name)."""
    return {
        path.parent.parts[-3:]: json.loads(path.read_text()) for path in sorted(store_dir.glob("*/*/*/metadata.json"))
    }


def warm_start_chain(
    initial_weights: str | Path | None, versions: dict[tuple[str, ...], dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Metadata of the store versions a model was warm-started from, oldest first.

    Args:
        initial_weights: The model's `initial_weights` (a store version folder, a
            `.weights.h5` file, or None).
        versions: Look versions up here, by the last three parts of the folder path (see
            `read_versions`); by default each folder is read from disk, relative to the
            working directory or else to the project root.

    Returns:
        One metadata dict per earlier version; empty when the model started from random
        weights or from a file outside the store. A cycle or a missing version ends it.
    """
    chain: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()
    source = initial_weights
    while source and _version_key(source) not in seen:
        seen.add(_version_key(source))
        if versions is not None:
            metadata = versions.get(_version_key(source))
        else:
            folder = Path(source) if Path(source).exists() else PROJECT_ROOT / source
            path = folder / "metadata.json"
            metadata = json.loads(path.read_text()) if path.is_file() else None
        if metadata is None:
            break
        chain.insert(0, metadata)
        source = metadata.get("initial_weights")
    return chain


def read_store(store_dir: Path, dataset: str | None = None) -> list[dict[str, Any]]:
    """Metadata of the newest version of every model in the store, optionally of one dataset.

    Each also gets `total_epochs` and `total_training_seconds`, summed over its
    warm-start chain (its own `epochs_run` and `training_seconds` when it has none).
    """
    versions = read_versions(store_dir)
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for metadata in versions.values():
        key = (metadata["dataset"], metadata["arch"])
        if dataset and key[0] != dataset:
            continue
        if key not in newest or metadata["version"] > newest[key]["version"]:
            newest[key] = metadata
    for metadata in newest.values():
        runs = [*warm_start_chain(metadata.get("initial_weights"), versions), metadata]
        metadata["total_epochs"] = sum(run.get("epochs_run") or 0 for run in runs)  # 0 for an ensemble
        metadata["total_training_seconds"] = sum(run.get("training_seconds") or 0 for run in runs)
    return list(newest.values())
