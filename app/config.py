"""Service settings, read once from environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BatchingSettings", "Settings", "get_settings"]


class BatchingSettings(BaseModel):
    """Dynamic batching of one model's requests (or the global default).

    Attributes:
        enabled: Stack concurrent requests into one model call; False calls once per image.
        max_batch_size: Most images per model call.
        batch_timeout_ms: Longest wait, in milliseconds, after the first image of a batch
            for more to arrive.
        max_concurrent_batches: Model calls in flight at once (2 pipelines batch forming
            with the previous call).
    """

    enabled: bool = True
    max_batch_size: int = Field(32, ge=1, le=1024)
    batch_timeout_ms: float = Field(2.0, ge=0.0, le=1000.0)
    max_concurrent_batches: int = Field(1, ge=1, le=16)


class Settings(BaseSettings):
    """Every setting of the service; each field is also an environment variable.

    Example: `MODELS_DIR=/srv/models MAX_UPLOAD_BYTES=2000000 uvicorn app.main:app`.
    Per-model batching is JSON: `MODEL_BATCHING='{"mnist/custom2": {"max_batch_size": 64}}'`.
    """

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    models_dir: Path = Path("models_store")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="request body limit, bytes")
    max_image_pixels: int = Field(40_000_000, ge=1, description="declared width x height limit, pixels")
    max_images_per_request: int = Field(64, ge=1)
    inline_preprocess_pixels: int = Field(
        4096, ge=0, description="images up to this many pixels are preprocessed on the event loop (0: never)"
    )
    batching: BatchingSettings = BatchingSettings()
    model_batching: dict[str, BatchingSettings] = {}
    warmup: bool = True
    intra_op_threads: int = Field(
        default_factory=lambda: max(1, (os.cpu_count() or 2) - 1),
        ge=0,
        description="TensorFlow threads per op; one core is left to the event loop (measured best on 2 cores)",
    )
    inter_op_threads: int = Field(2, ge=0)
    log_level: str = "INFO"

    @field_validator("models_dir")
    @classmethod
    def _models_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"models_dir {value} is not a directory (set MODELS_DIR)")
        return value

    def batching_for(self, model_id: str) -> BatchingSettings:
        """The batching settings of `dataset/arch`: its own entry, else the global default."""
        return self.model_batching.get(model_id, self.batching)


@lru_cache
def get_settings() -> Settings:
    """Return the settings, read from the environment on first call.

    Raises:
        pydantic.ValidationError: A setting is invalid, e.g. MODELS_DIR does not exist.
    """
    return Settings()
