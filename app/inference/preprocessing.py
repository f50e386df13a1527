"""Turn uploaded image bytes into a model's input, the way its dataset was made.

These are the per-dataset recipes. Decoding and its limits are `app.inference.decoding`,
the analysis of photos of paper `app.inference.paper`, the pixel helpers
`app.inference.pixels`. Every function here is CPU work on one image; the pipeline
(`app.inference.model.image_preparation`) decides where it runs: a bounded pool of worker
threads, or for tiny uploads the batcher's thread.
The result is always a float32 array of the model's input shape (H, W, C) with values
in [0, 1].

Preprocessing methods (named in metadata.json and in every response):

- `mnist`: the MNIST construction (LeCun et al.): ink made bright on a dark background,
  cropped to the bounding box of the digit, the longer side scaled to 20 px with
  anti-aliasing, pasted into 28x28 with its centre of mass at the centre. For photos, the
  paper's uneven lighting is divided out, ruled lines are cleared, and specks apart from
  the digit are left out of its box.
- `fashion_mnist`: grayscale, light-on-dark (a product shot on a light background is
  inverted), the object fitted into the frame keeping its aspect ratio.
- `cifar10`: RGB, the shorter side resized to 32 px, centre crop.
- `resize` (generic image folders) and `none`: convert to the model's channels and
  resize to its input size, nothing else.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageFilter

from app.errors import UnsupportedImage
from app.inference.decoding import WORKING_SIZE, load_image, open_image, reduce_to, to_8bit
from app.inference.paper import (
    digit_box,
    even_lighting,
    ink_gray,
    ink_strength,
    sheet_of_paper,
    stroke_width,
    without_rules,
)
from app.inference.pixels import (
    gray_image,
    gray_pixels,
    level_table,
    light_on_dark,
    max_filter,
    paste_centred,
    resize_smooth,
    stretch,
)
from modelstore import Preprocessing, preprocessing_fits

__all__ = [
    "FRAME_DEPTH",
    "FRAME_TOLERANCE",
    "GARMENT_LEVEL",
    "METHODS",
    "MNIST_BOX",
    "MNIST_STROKE",
    "Method",
    "prepare_image",
    "prepare_opened",
    "preprocess",
    "preprocess_cifar",
    "preprocess_fashion",
    "preprocess_mnist",
    "preprocess_resize",
]

Method = Literal[Preprocessing, "none"]
"""A preprocessing a request may ask for: a model's (`modelstore.Preprocessing`), or `none`
(convert to the model's channels and resize, as `resize`)."""


METHODS: tuple[str, ...] = get_args(Method)


MNIST_BOX = 20
"""MNIST digits are scaled so that their longer side is 20 px inside the 28x28 frame."""


MNIST_STROKE = 0.12
"""Typical MNIST stroke width as a fraction of the digit's longer side (about 2.5 of 20 px)."""


GARMENT_LEVEL = 20
"""Gray level (of 255, after background removal) above which a pixel belongs to the garment.

Above JPEG noise and the faint halo that enlarging an image leaves around the object."""


FRAME_DEPTH = 0.15
"""Deepest frame cut off a product shot (`_without_frame`), as a fraction of its shorter side."""


FRAME_TOLERANCE = 12
"""Gray levels (of 255) by which the pixels of a frame's ring, or of the background inside
it, may differ from their median: JPEG noise around a flat colour."""


def preprocess_mnist(image: Image.Image, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """The MNIST procedure; returns float32 (28, 28, 1) in [0, 1], white ink on black."""
    blank = np.zeros((*size, 1), dtype=np.float32)
    ink = ink_strength(even_lighting(sheet_of_paper(ink_gray(image))))
    if ink is None:
        return blank
    ink = without_rules(ink)
    box = digit_box(ink)
    if box is None:
        return blank
    left, top, right, bottom = box
    digit = _fit_digit(gray_image(ink[top:bottom, left:right]), round(MNIST_BOX * size[0] / 28))
    return paste_centred(digit, size[0], centre_of_mass=True)[..., np.newaxis]


def _fit_digit(ink: Image.Image, box: int) -> Image.Image:
    """Scale a cropped digit so its longer side is `box` px, thickening thin pen strokes.

    The digit is first drawn at twice the target size, where a pen line a fraction of a
    pixel wide would vanish; strokes thinner than MNIST's (about `MNIST_STROKE` of the
    longer side) are widened with a max filter before the final anti-aliased reduction.
    """
    width, height = ink.size
    scale = 2 * box / max(width, height)
    large = stretch(resize_smooth(ink, (max(1, round(width * scale)), max(1, round(height * scale)))))
    missing = MNIST_STROKE * 2 * box - stroke_width(gray_pixels(large) > 127)
    kernel = min(5, 2 * round(missing / 2) + 1) if missing >= 1.0 else 1
    if kernel >= 3:
        large = max_filter(large, kernel)
    return resize_smooth(large, (max(1, round(width * scale / 2)), max(1, round(height * scale / 2))))


def _without_frame(gray: Image.Image) -> Image.Image:
    """An `L` image without the frame a shop or a gallery draws around a picture: outer rings
    of one gray level (within `FRAME_TOLERANCE`) up to `FRAME_DEPTH` of the shorter side,
    cut off when the ring inside them is mostly of another level (the picture's own
    background, which the object may touch). A background that reaches the edge with no
    frame is left as it is."""
    pixels = gray_pixels(gray).astype(np.int16)
    height, width = pixels.shape
    depth = int(FRAME_DEPTH * min(height, width))

    def ring(k: int) -> np.ndarray:
        return np.concatenate([pixels[k, k : width - k], pixels[height - 1 - k, k : width - k],
                               pixels[k : height - k, k], pixels[k : height - k, width - 1 - k]])  # fmt: skip

    outer = ring(0)
    level = int(np.median(outer))
    if np.abs(outer - level).max() > FRAME_TOLERANCE:
        return gray
    for k in range(1, depth + 1):
        inner = ring(k)
        if np.abs(inner - level).max() <= FRAME_TOLERANCE:
            continue
        if abs(int(np.median(inner)) - level) > 2 * FRAME_TOLERANCE:
            return gray.crop((k, k, width - k, height - k))
        return gray
    return gray


def preprocess_fashion(
    image: Image.Image, size: tuple[int, int] = (28, 28), *, sharpen: ImageFilter.Filter | None = None
) -> np.ndarray:
    """Fashion-MNIST style; returns float32 (28, 28, 1) in [0, 1], light object on black.

    Fashion-MNIST products fill the frame: the object's longer side is scaled to 28 px,
    and sharpened with `sharpen` (the model's `Sharpen`) when that shrinks it, as the dataset's construction
    did. Unlike digits, the object's own shading is kept: the background level is
    subtracted and the rest scaled, without ink thresholding.
    """
    gray, background = light_on_dark(_without_frame(reduce_to(to_8bit(image, "L"), WORKING_SIZE)), corners_only=True)
    pixels = np.take(level_table(background), gray_pixels(gray))
    gray = gray_image(pixels)
    rows, columns = np.nonzero(pixels > GARMENT_LEVEL)
    if not len(rows):
        return np.zeros((*size, 1), dtype=np.float32)
    crop = gray.crop((int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1))
    factor = size[0] / max(crop.size)
    fitted = resize_smooth(crop, (max(1, round(crop.width * factor)), max(1, round(crop.height * factor))))
    if factor < 1 and sharpen is not None:
        fitted = fitted.filter(sharpen)
    return paste_centred(fitted, size[0], centre_of_mass=False)[..., np.newaxis]


def preprocess_cifar(
    image: Image.Image, size: tuple[int, int] = (32, 32), *, sharpen: ImageFilter.Filter | None = None
) -> np.ndarray:
    """CIFAR-10 style; returns float32 (32, 32, 3) in [0, 1]: the central region of the
    model's aspect ratio resized to 32 px (shorter side to 32, centre crop), sharpened with
    `sharpen` when that shrinks it.

    The region is cut at fractional pixel edges as part of the resize (Pillow's `box`),
    not after it: rounding the resized width and the crop offset to whole pixels shifted and
    stretched the subject of a wide photo by up to half a pixel, which cost accuracy on such
    photos (`benchmarks/uploads.py`'s `photo_jpeg`; docs/models.md).
    """
    rgb = to_8bit(image, "RGB")
    height, width = size
    scale = max(width / rgb.width, height / rgb.height)
    region_width, region_height = min(rgb.width, width / scale), min(rgb.height, height / scale)
    left, top = max(0.0, (rgb.width - region_width) / 2), max(0.0, (rgb.height - region_height) / 2)
    resized = rgb.resize(
        (width, height),
        Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BOX,
        box=(left, top, left + region_width, top + region_height),
        reducing_gap=3.0,
    )
    if scale < 1 and sharpen is not None:
        resized = resized.filter(sharpen)
    return np.asarray(resized, dtype=np.float32) / 255.0


def preprocess_resize(image: Image.Image, shape: tuple[int, int, int]) -> np.ndarray:
    """Convert to the model's channels and resize to its input size, nothing else."""
    height, width, channels = shape
    converted = to_8bit(image, "L" if channels == 1 else "RGB")
    if converted.size != (width, height):
        resampling = Image.Resampling.BOX if converted.height > 2 * height else Image.Resampling.BILINEAR
        converted = converted.resize((width, height), resampling)
    array = np.asarray(converted, dtype=np.float32) / 255.0
    return array[..., np.newaxis] if channels == 1 else array


def preprocess(
    image: Image.Image, method: str, shape: tuple[int, int, int], *, sharpen: tuple[float, int] | None = None
) -> np.ndarray:
    """Turn a decoded image into one model input.

    Args:
        image: Any Pillow image (mode, size and colour are all handled).
        method: One of `METHODS`.
        shape: The model's input shape (height, width, channels) in pixels.
        sharpen: The model's unsharp mask after a shrink, (radius in pixels, percent), for
            `fashion_mnist` and `cifar10`; None for none (`modelstore.metadata.Sharpen`).

    Returns:
        float32 array of `shape`, values in [0, 1].

    Raises:
        ValueError: Unknown method, or one that does not make inputs of `shape`'s channels
            (the metadata and the request's check rule both out first).
    """
    height, width, channels = shape
    mask = ImageFilter.UnsharpMask(radius=sharpen[0], percent=sharpen[1], threshold=0) if sharpen else None
    if method not in METHODS:
        raise ValueError(f"unknown preprocessing {method!r}; choose from {METHODS}")
    if not preprocessing_fits(method, channels):
        raise ValueError(f"preprocessing {method!r} does not make {channels}-channel inputs")
    if method == "mnist":
        return preprocess_mnist(image, (height, width))
    if method == "fashion_mnist":
        return preprocess_fashion(image, (height, width), sharpen=mask)
    if method == "cifar10":
        return preprocess_cifar(image, (height, width), sharpen=mask)
    return preprocess_resize(image, shape)


def prepare_image(
    data: bytes,
    *,
    method: str,
    shape: tuple[int, int, int],
    max_pixels: int,
    sharpen: tuple[float, int] | None = None,
) -> np.ndarray:
    """Decode upload bytes and preprocess them: `decode_image` then `preprocess`.

    Returns:
        float32 array of `shape`, values in [0, 1].

    Raises:
        UnsupportedImage: Not a decodable image (415).
        PayloadTooLarge: More than `max_pixels` pixels (413).
    """
    return prepare_opened(open_image(data, max_pixels=max_pixels), method, shape, sharpen)


def prepare_opened(
    opened: Image.Image, method: str, shape: tuple[int, int, int], sharpen: tuple[float, int] | None = None
) -> np.ndarray:
    image = load_image(opened)
    try:
        return preprocess(image, method, shape, sharpen=sharpen)
    except (OSError, ValueError) as error:
        raise UnsupportedImage(f"the image could not be converted ({error})") from error
