"""Why a model chose a class: attribution maps computed from the served SavedModel itself.

- **Integrated gradients** (Sundararajan, Taly and Yan 2017, "Axiomatic Attribution for Deep
  Networks", arXiv:1703.01365): the gradient of the class's probability averaged along the
  straight path from a baseline image to the input, times (input - baseline), by the
  trapezoidal rule over `steps` intervals. Two baselines are averaged, a black image and
  the input blurred (a Gaussian of a sixth of its side): black alone gives no attribution
  to black pixels, which for light-on-dark digits is the whole background; the blurred
  image keeps the colours and removes the edges and strokes. The attributions of one
  baseline sum to the class's probability at the input less that at the baseline
  (completeness), which the answer reports as a check.
- **Occlusion** (Zeiler and Fergus 2014, "Visualizing and Understanding Convolutional
  Networks", arXiv:1311.2901), for a signature TensorFlow cannot differentiate: the drop of
  the class's probability when a square patch (a sixth of the side, stride half of it) is
  replaced by the blurred image, averaged over the patches covering each pixel.

Ensembles and flip or translation averaging are part of the served SavedModel's graph, so
they are explained as a whole, test-time augmentation included. A map is (H, W) float32,
signed, summed over the channels, at the model's input size. The work is CPU-bound and
blocking: the caller runs it in a worker thread and may stop it between batches of the
path (`check`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

__all__ = ["Explanation", "Method", "blurred", "explain", "overlay_png"]

Method = Literal["integrated_gradients", "occlusion"]

PATH_BATCH = 16
"""Path points (or occluded copies) per call of the model: bounds the memory of one call and
the time between two `check`s, where a caller may pause the explanation for predictions."""

BLUR_FRACTION = 1 / 6
"""The blurred baseline's Gaussian radius, as a fraction of the input's longer side."""

OCCLUSION_PATCH = 1 / 6
"""The occluding patch's side, as a fraction of the input's longer side (stride: half of it)."""


@dataclass(frozen=True)
class Explanation:
    """An attribution map and how it was made.

    Attributes:
        attribution: float32 (H, W), signed: positive where the pixels raised the class's
            probability.
        method: `integrated_gradients` or `occlusion`.
        baselines: The reference images (`black`, `blurred`).
        steps: Intervals of the integration path (integrated gradients), or occluded patches.
        completeness: (sum of the attributions, probability at the input less the mean
            probability at the baselines); equal up to the integration error for integrated
            gradients, None for occlusion.
    """

    attribution: np.ndarray
    method: Method
    baselines: tuple[str, ...]
    steps: int
    completeness: tuple[float, float] | None


def blurred(image: np.ndarray) -> np.ndarray:
    """`image` (H, W, C float32 in [0, 1]) under a Gaussian blur of standard deviation
    `BLUR_FRACTION` of its longer side (edges replicated), float32 of the same shape."""
    sigma = max(1.0, BLUR_FRACTION * max(image.shape[:2]))
    half = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(image.astype(np.float64), ((half, half), (half, half), (0, 0)), mode="edge")
    rows = np.apply_along_axis(lambda line: np.convolve(line, taps, mode="valid"), 0, padded)
    both = np.apply_along_axis(lambda line: np.convolve(line, taps, mode="valid"), 1, rows)
    return both.astype(np.float32)


def _class_probability(function: Any, input_name: str, output_name: str, batch: Any, class_index: int) -> Any:
    return function(**{input_name: batch})[output_name][:, class_index]


def integrated_gradients(
    function: Any,
    input_name: str,
    output_name: str,
    image: np.ndarray,
    class_index: int,
    baseline: np.ndarray,
    *,
    steps: int,
    check: Callable[[], None],
) -> tuple[np.ndarray, float] | None:
    """Integrated gradients of one baseline: (attribution (H, W, C) float32, the class's
    probability at the baseline), or None when the signature has no gradient.

    Raises:
        Whatever `check` raises between batches (a deadline).
    """
    import tensorflow as tf

    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    gradients = np.zeros((steps + 1, *image.shape), dtype=np.float32)
    at_baseline = 0.0
    for start in range(0, steps + 1, PATH_BATCH):
        check()
        chunk = alphas[start : start + PATH_BATCH][:, None, None, None]
        path = tf.constant(baseline[None] + chunk * (image - baseline)[None])
        with tf.GradientTape() as tape:
            tape.watch(path)
            probability = _class_probability(function, input_name, output_name, path, class_index)
        gradient = tape.gradient(probability, path)
        if gradient is None:
            return None
        gradients[start : start + len(chunk)] = gradient.numpy()
        if start == 0:
            at_baseline = float(probability.numpy()[0])
    average = (gradients[:-1] + gradients[1:]).mean(axis=0) / 2.0
    return ((image - baseline) * average).astype(np.float32), at_baseline


def occlusion(
    predict_batch: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    class_index: int,
    baseline: np.ndarray,
    *,
    check: Callable[[], None],
) -> tuple[np.ndarray, int]:
    """The occlusion map (H, W) float32: the mean drop of the class's probability over the
    patches covering each pixel, and the number of patches.

    Raises:
        Whatever `check` raises between batches (a deadline).
    """
    height, width = image.shape[:2]
    side = max(2, round(OCCLUSION_PATCH * max(height, width)))
    stride = max(1, side // 2)
    boxes = [
        (top, left)
        for top in range(0, max(1, height - side + stride), stride)
        for left in range(0, max(1, width - side + stride), stride)
    ]
    reference = float(predict_batch(image[None])[0, class_index])
    drops = np.zeros((height, width), dtype=np.float64)
    counts = np.zeros((height, width), dtype=np.float64)
    for start in range(0, len(boxes), PATH_BATCH):
        check()
        chunk = boxes[start : start + PATH_BATCH]
        copies = np.repeat(image[None], len(chunk), axis=0)
        for copy, (top, left) in zip(copies, chunk, strict=True):
            copy[top : top + side, left : left + side] = baseline[top : top + side, left : left + side]
        probabilities = predict_batch(copies)[:, class_index]
        for (top, left), probability in zip(chunk, probabilities, strict=True):
            drops[top : top + side, left : left + side] += reference - float(probability)
            counts[top : top + side, left : left + side] += 1
    return (drops / np.maximum(counts, 1)).astype(np.float32), len(boxes)


def explain(
    model: Any,
    image: np.ndarray,
    class_index: int,
    *,
    method: Method = "integrated_gradients",
    steps: int = 50,
    check: Callable[[], None] = lambda: None,
) -> Explanation:
    """Explain `model`'s probability of `class_index` for one model input.

    Args:
        model: A `ServedModel` (its signature `function`, `metadata.input_name` and
            `output_name`, and `predict_batch`).
        image: The model input, float32 (H, W, C) in [0, 1] (as the pipeline made it).
        class_index: The class to explain.
        method: `integrated_gradients` (falls back to occlusion when the signature has no
            gradient, and says so) or `occlusion`.
        steps: Integration intervals (integrated gradients).
        check: Called between batches; raises to stop (a deadline).

    Returns:
        The map and how it was made.
    """
    soft = blurred(image)
    if method == "integrated_gradients":
        maps, at_baselines = [], []
        for baseline in (np.zeros_like(image), soft):
            found = integrated_gradients(
                model.function, model.metadata.input_name, model.metadata.output_name, image, class_index,
                baseline, steps=steps, check=check,
            )  # fmt: skip
            if found is None:
                break
            maps.append(found[0])
            at_baselines.append(found[1])
        else:
            attribution = np.mean(maps, axis=0).sum(axis=-1)
            at_input = float(model.predict_batch(image[None])[0, class_index])
            completeness = (float(attribution.sum()), at_input - float(np.mean(at_baselines)))
            return Explanation(attribution.astype(np.float32), method, ("black", "blurred"), steps, completeness)
    attribution, patches = occlusion(model.predict_batch, image, class_index, soft, check=check)
    return Explanation(attribution, "occlusion", ("blurred",), patches, None)


def overlay_png(model_input: np.ndarray, attribution: np.ndarray, *, scale: int | None = None) -> bytes:
    """The attribution over the model input as a PNG: the input in gray, positive attribution
    in red and negative in blue, each at an opacity growing with its magnitude (relative to
    the map's largest). Enlarged `scale` times with square pixels (default: to about 224 px).

    Args:
        model_input: float32 (H, W, C) in [0, 1].
        attribution: float32 (H, W), signed.

    Returns:
        PNG bytes, (H * scale) x (W * scale) RGB.
    """
    gray = model_input.mean(axis=-1)
    base = np.repeat((0.35 + 0.5 * gray)[..., None], 3, axis=-1)
    peak = float(np.abs(attribution).max()) or 1.0
    strength = np.clip(np.abs(attribution) / peak, 0.0, 1.0)[..., None] ** 0.7
    colour = np.where((attribution >= 0)[..., None], [1.0, 0.1, 0.1], [0.1, 0.35, 1.0])
    mixed = base * (1 - strength) + colour * strength
    pixels = np.clip(np.rint(mixed * 255), 0, 255).astype(np.uint8)
    scale = scale or max(1, round(224 / max(attribution.shape)))
    image = Image.fromarray(pixels).resize(
        (attribution.shape[1] * scale, attribution.shape[0] * scale), Image.Resampling.NEAREST
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
