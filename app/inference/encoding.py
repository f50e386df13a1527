"""What the model received, as a PNG file for people to look at (`include_input=true`, the
page's model's-eye view)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["encode_model_input"]


def encode_model_input(model_input: np.ndarray) -> bytes:
    """A model input as a PNG file: what the model sees, for people to look at.

    Args:
        model_input: float32 (H, W, C) in [0, 1], C 1 (grayscale) or 3 (RGB), as the
            pipeline hands it to the model.

    Returns:
        PNG bytes, H x W pixels, 8 bits per channel (values rounded to the nearest of 256).
    """
    pixels = np.clip(np.rint(model_input * 255.0), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
