"""Settings of the offline training code, read from the environment once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class TrainingSettings(BaseSettings):
    """Where training reads data and writes models.

    Attributes:
        data_dir: Folder with the offline dataset copies (`mnist.npz`, `fashion-mnist/`,
            `cifar10-jpeg.tar.gz`). Environment variable `DATA_DIR`. A dataset missing
            there falls back to the Keras download.
        models_dir: Root of the model store, `<dataset>/<arch>/<version>/`. Environment
            variable `MODELS_DIR`.
        runs_dir: Scratch folder for checkpoints and logs of runs in progress (not
            committed). Environment variable `RUNS_DIR`.
    """

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    data_dir: Path = PROJECT_ROOT.parent / "shared" / "datasets"
    models_dir: Path = PROJECT_ROOT / "models_store"
    runs_dir: Path = PROJECT_ROOT / "runs"


@lru_cache
def get_settings() -> TrainingSettings:
    """Return the settings, read from the environment on first call."""
    return TrainingSettings()
