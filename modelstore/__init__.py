"""The contract between training and serving: the model store's layout and metadata schema.

Training writes every version through this package and the service validates every
version with it at load; neither imports the other.
"""

from __future__ import annotations

from modelstore.layout import (
    INPUT_NAME,
    METADATA_FILE,
    OUTPUT_NAME,
    REPORT_IMAGES,
    SAVED_MODEL_FILE,
    SIGNATURE_NAME,
    next_version,
    staging_folder,
    version_folders,
)
from modelstore.metadata import (
    NAME_PATTERN,
    PREPROCESSING_CHANNELS,
    ModelMetadata,
    Preprocessing,
    SplitMetrics,
    preprocessing_fits,
    public_command,
)

__all__ = [
    "INPUT_NAME",
    "METADATA_FILE",
    "NAME_PATTERN",
    "OUTPUT_NAME",
    "PREPROCESSING_CHANNELS",
    "REPORT_IMAGES",
    "SAVED_MODEL_FILE",
    "SIGNATURE_NAME",
    "ModelMetadata",
    "Preprocessing",
    "SplitMetrics",
    "next_version",
    "preprocessing_fits",
    "public_command",
    "staging_folder",
    "version_folders",
]
