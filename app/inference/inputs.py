"""What a protocol adapter hands to the pipeline: encoded image files or ready tensors.

Adapters only parse their protocol into these; decoding base64, checking shapes and
limits, and turning everything into float32 model inputs happen in the pipeline.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import BadRequest, PayloadTooLarge

__all__ = ["EncodedImage", "InputLimits", "ModelInput", "Tensor", "expand"]


@dataclass(frozen=True, slots=True)
class InputLimits:
    """What one request may cost; every protocol is held to the same limits. Built from
    `Settings` (`Settings.input_limits`), which holds their defaults.

    Attributes:
        max_images: Images or tensor rows per request (413 above).
        max_tensor_elements: Numbers in one request's tensors (413 above).
        max_image_pixels: Declared width x height of one image, pixels (413 above).
        inline_preprocess_pixels: Uploads up to this many pixels are preprocessed in the
            batcher's thread (on the event loop without batching), larger ones in the worker pool.
        max_queued_inputs: Inputs waiting for one model (queued in its batcher or being
            prepared); a request that would pass it is shed with 503 at once.
    """

    max_images: int
    max_tensor_elements: int
    max_image_pixels: int
    inline_preprocess_pixels: int
    max_queued_inputs: int


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """One image file (PNG, JPEG, ...), as raw bytes or as base64 text (JSON protocols).

    `index` is the input's position in its request, for error messages.
    """

    data: bytes | str
    index: int = 0

    def file_bytes(self) -> bytes:
        """The file's bytes.

        Raises:
            BadRequest: `data` is text that is not valid base64 (400).
        """
        if isinstance(self.data, bytes):
            return self.data
        try:
            return base64.b64decode(self.data.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"input {self.index} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class Tensor:
    """Pixels already in the model's input layout, values in [0, 1].

    Attributes:
        values: Nested lists, a flat row-major list, a numpy array, or raw little-endian
            float32 bytes (binary protocols).
        shape: The tensor's shape when `values` is flat or raw; None to take the shape of
            nested `values`.
        batched: The first axis is the batch (one model input per row); otherwise the
            tensor is one input, (H, W, C) or (H, W) for one channel.
    """

    values: Any
    shape: tuple[int, ...] | None = None
    batched: bool = False

    def elements(self) -> int | None:
        """Numbers it holds, when known without converting it."""
        if self.shape is not None:
            return math.prod(self.shape)
        if isinstance(self.values, np.ndarray):
            return int(self.values.size)
        return None

    def rows(self, input_shape: tuple[int, int, int], *, max_elements: int) -> list[np.ndarray]:
        """The model inputs it holds: float32 (H, W, C) each, finite.

        Raises:
            PayloadTooLarge: More than `max_elements` numbers (413).
            BadRequest: Not numeric, irregular, the wrong shape or size, NaN or infinite (400).
        """
        declared = self.elements()
        if declared is not None and declared > max_elements:
            raise PayloadTooLarge(f"tensor of {declared:,} elements; the limit is {max_elements:,}")
        try:
            if isinstance(self.values, bytes | bytearray | memoryview):
                if len(self.values) % 4:
                    raise BadRequest(f"raw tensor data of {len(self.values)} bytes is not a whole number of FP32")
                array = np.frombuffer(self.values, dtype="<f4").astype(np.float32)
            else:
                array = np.asarray(self.values, dtype=np.float32)
        except (ValueError, TypeError, OverflowError):
            raise BadRequest("the tensor is not numeric with a regular shape") from None
        if array.size > max_elements:
            raise PayloadTooLarge(f"tensor of {array.size:,} elements; the limit is {max_elements:,}")
        if self.shape is not None:
            if array.size != math.prod(self.shape):
                raise BadRequest(
                    f"tensor data has {array.size} elements; shape {list(self.shape)} needs {math.prod(self.shape)}"
                )
            array = array.reshape(self.shape)
        items = list(array) if self.batched else [array]
        height, width, channels = input_shape
        rows = []
        for item in items:
            if item.shape == (height, width) and channels == 1:
                item = item[..., np.newaxis]
            if item.shape != input_shape:
                wanted = [-1, *input_shape] if self.batched else list(input_shape)
                got = [len(items), *item.shape] if self.batched else list(item.shape)
                raise BadRequest(f"tensor shape {got} does not match the model input {wanted}")
            rows.append(item)
        if not all(np.isfinite(row).all() for row in rows):
            raise BadRequest("the tensor contains NaN or infinity")
        return rows


ModelInput = EncodedImage | Tensor


def expand(
    inputs: Sequence[ModelInput], input_shape: tuple[int, int, int], limits: InputLimits
) -> list[EncodedImage | np.ndarray]:
    """One entry per model input: encoded images as they are, tensors split into rows.

    Raises:
        BadRequest: No inputs, or a malformed tensor (400).
        PayloadTooLarge: Over `limits` in images or tensor elements (413).
    """
    if not inputs:
        raise BadRequest("the request holds no inputs")
    declared = sum(item.elements() or 0 for item in inputs if isinstance(item, Tensor))
    if declared > limits.max_tensor_elements:
        raise PayloadTooLarge(f"tensors of {declared:,} elements; the limit is {limits.max_tensor_elements:,}")
    expanded: list[EncodedImage | np.ndarray] = []
    for item in inputs:
        if isinstance(item, Tensor):
            expanded.extend(item.rows(input_shape, max_elements=limits.max_tensor_elements))
        else:
            expanded.append(item)
        if len(expanded) > limits.max_images:
            raise PayloadTooLarge(f"more than {limits.max_images} images in one request (MAX_IMAGES_PER_REQUEST)")
    return expanded
