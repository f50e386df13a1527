"""Turn uploaded image bytes into a model's input, the way its dataset was made.

Every function here is CPU work on one image; the routes run it in a worker thread.
The result is always a float32 array of the model's input shape (H, W, C) with values
in [0, 1].

Preprocessing methods (named in metadata.json and in every response):

- `mnist`: the MNIST construction (LeCun et al.): ink made bright on a dark background,
  cropped to its bounding box, the longer side scaled to 20 px with anti-aliasing, pasted
  into 28x28 with its centre of mass at the centre.
- `fashion_mnist`: grayscale, light-on-dark (a product shot on a light background is
  inverted), the object fitted into the frame keeping its aspect ratio.
- `cifar10`: RGB, the shorter side resized to 32 px, centre crop.
- `resize` (generic image folders) and `none`: convert to the model's channels and
  resize to its input size, nothing else.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from app.errors import PayloadTooLarge, UnsupportedImage

__all__ = [
    "METHODS",
    "SUPPORTED_FORMATS",
    "decode_image",
    "prepare_image",
    "preprocess",
]

SUPPORTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO")
"""Raster formats accepted; vector, document and script formats (SVG, PDF, EPS) are refused."""

METHODS = ("mnist", "fashion_mnist", "cifar10", "resize", "none")

WORKING_SIZE = 512
"""Longer side, in pixels, that large uploads are reduced to before analysis."""

INK_THRESHOLD = 0.2
"""Ink below this fraction of the strongest ink is paper noise (after background removal)."""

MNIST_BOX = 20
"""MNIST digits are scaled so that their longer side is 20 px inside the 28x28 frame."""

MNIST_STROKE = 0.12
"""Typical MNIST stroke width as a fraction of the digit's longer side (about 2.5 of 20 px)."""


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode upload bytes into a Pillow image, safely.

    Applies the EXIF orientation, takes the first frame of animations, and refuses
    decompression bombs by the declared size before any pixel is decoded.

    Args:
        data: The uploaded file's bytes.
        max_pixels: Most pixels (width x height) accepted.

    Returns:
        The decoded image (any Pillow mode), fully loaded.

    Raises:
        UnsupportedImage: Empty, unknown format, truncated or corrupt data.
        PayloadTooLarge: Declared width x height above `max_pixels`.
    """
    if not data:
        raise UnsupportedImage("the uploaded file is empty; send a PNG, JPEG, GIF, BMP, TIFF or WebP image")
    accepted = ", ".join(SUPPORTED_FORMATS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
            width, height = opened.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
                )
            if width < 1 or height < 1:
                raise UnsupportedImage(f"image has no pixels ({width}x{height})")
            opened.seek(0)
            opened.load()
            image: Image.Image = ImageOps.exif_transpose(opened) or opened
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PayloadTooLarge(f"image declares too many pixels ({error}); the limit is {max_pixels:,}") from error
    except UnidentifiedImageError as error:
        raise UnsupportedImage(f"the file is not a decodable image; accepted formats: {accepted}") from error
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as error:
        raise UnsupportedImage(f"the image data is truncated or corrupt ({type(error).__name__})") from error
    return image


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent pixels onto white, as a drawing on paper."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def _to_float(image: Image.Image, channels: int) -> np.ndarray:
    """Pixels as float32 (H, W) for 1 channel or (H, W, 3), in [0, 1], from any mode.

    16- and 32-bit integer and float modes are scaled by their range, not clipped.
    """
    image = _flatten_alpha(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float64)
        array = array - min(0.0, float(array.min()))
        peak = float(array.max())
        scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        gray = np.clip(array / scale, 0.0, 1.0).astype(np.float32)
        return gray if channels == 1 else np.repeat(gray[..., np.newaxis], 3, axis=-1)
    mode = "L" if channels == 1 else "RGB"
    return np.asarray(image.convert(mode), dtype=np.float32) / 255.0


def _reduce(image: Image.Image, longest: int) -> Image.Image:
    """Shrink so the longer side is at most `longest` pixels (anti-aliased); never enlarge."""
    if max(image.size) <= longest:
        return image
    scale = longest / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX if scale < 0.5 else Image.Resampling.LANCZOS)


def _border(gray: np.ndarray) -> np.ndarray:
    """The pixels of the outermost 2-pixel frame of a (H, W) image."""
    band = max(1, min(2, min(gray.shape) // 4))
    return np.concatenate([gray[:band].ravel(), gray[-band:].ravel(), gray[:, :band].ravel(), gray[:, -band:].ravel()])


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink strength in [0, 1] of a (H, W) grayscale image, bright ink on a dark background.

    A light background (median of the border above 0.5) is inverted; the background level
    (median of the border) is subtracted, the strongest ink scaled to 1, and faint noise
    below `INK_THRESHOLD` removed with a soft ramp so edges stay anti-aliased.
    """
    if float(np.median(_border(gray))) > 0.5:
        gray = 1.0 - gray
    background = float(np.median(_border(gray)))
    ink = np.clip(gray - background, 0.0, None)
    peak = float(np.percentile(ink, 99.9)) if ink.size > 1000 else float(ink.max())
    if peak <= 1e-3:
        return np.zeros_like(gray)
    ink = np.clip(ink / peak, 0.0, 1.0)
    return np.clip((ink - INK_THRESHOLD) / (1.0 - INK_THRESHOLD), 0.0, 1.0)


def _bounding_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), exclusive ends, of the pixels with ink; None if blank."""
    rows = np.flatnonzero(ink.max(axis=1) > 0)
    columns = np.flatnonzero(ink.max(axis=0) > 0)
    if not len(rows):
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _resize_array(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (H, W) array to (width, height) `size` with anti-aliasing."""
    image = Image.fromarray(array.astype(np.float32))
    filter_ = Image.Resampling.BOX if size[0] < image.width / 2 else Image.Resampling.LANCZOS
    return np.clip(np.asarray(image.resize(size, filter_), dtype=np.float32), 0.0, 1.0)


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels of a boolean (H, W) ink mask: 2 x area / perimeter."""
    area = int(mask.sum())
    if not area:
        return 0.0
    padded = np.pad(mask, 1)
    interior = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    perimeter = max(1, area - int(interior.sum()))
    return 2.0 * area / perimeter


def _fit_digit(ink: np.ndarray, box: int) -> np.ndarray:
    """Scale a cropped digit so its longer side is `box` px, thickening thin pen strokes.

    The digit is first drawn at twice the target size, where a pen line a fraction of a
    pixel wide would vanish; strokes thinner than MNIST's (about `MNIST_STROKE` of the
    longer side) are widened with a max filter before the final anti-aliased reduction.
    """
    height, width = ink.shape
    scale = 2 * box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    large = _resize_array(ink, size)
    if large.max() > 0:
        large = np.clip(large / large.max(), 0.0, 1.0)
    missing = MNIST_STROKE * 2 * box - _stroke_width(large > 0.5)
    if missing >= 1.0:
        kernel = min(5, 2 * round(missing / 2) + 1)
        if kernel >= 3:
            large = np.asarray(Image.fromarray(large).filter(ImageFilter.MaxFilter(kernel)))
    size = (max(1, round(width * scale / 2)), max(1, round(height * scale / 2)))
    return _resize_array(large, size)


def _paste_centred(patch: np.ndarray, side: int, *, centre_of_mass: bool) -> np.ndarray:
    """Place a (h, w) patch in a (side, side) black frame, centred by mass or by box."""
    frame = np.zeros((side, side), dtype=np.float32)
    height, width = patch.shape
    if centre_of_mass and patch.sum() > 0:
        rows, columns = np.indices(patch.shape)
        total = float(patch.sum())
        centre_y = float((rows * patch).sum()) / total
        centre_x = float((columns * patch).sum()) / total
        top = round(side / 2 - 0.5 - centre_y)
        left = round(side / 2 - 0.5 - centre_x)
    else:
        top, left = (side - height) // 2, (side - width) // 2
    top = min(max(top, 0), side - height) if height <= side else 0
    left = min(max(left, 0), side - width) if width <= side else 0
    frame[top : top + height, left : left + width] = patch[: side - top, : side - left]
    return frame


def _crop_to_ink(image: Image.Image) -> np.ndarray | None:
    """Ink map of a grayscale image cropped to its bounding box; None if it has no ink."""
    ink = _ink(_to_float(_reduce(image, WORKING_SIZE), 1))
    box = _bounding_box(ink)
    if box is None:
        return None
    top, bottom, left, right = box
    return ink[top:bottom, left:right]


def preprocess_mnist(image: Image.Image, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """The MNIST procedure; returns float32 (28, 28, 1) in [0, 1], white ink on black."""
    crop = _crop_to_ink(image)
    if crop is None:
        return np.zeros((*size, 1), dtype=np.float32)
    box = round(MNIST_BOX * size[0] / 28)
    digit = _fit_digit(crop, box)
    return _paste_centred(digit, size[0], centre_of_mass=True)[..., np.newaxis]


def preprocess_fashion(image: Image.Image, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Fashion-MNIST style; returns float32 (28, 28, 1) in [0, 1], light object on black.

    Fashion-MNIST products fill the frame: the object's longer side is scaled to 28 px.
    Unlike digits, the object's own shading is kept (no ink thresholding beyond the
    background removal).
    """
    gray = _to_float(_reduce(image, WORKING_SIZE), 1)
    if float(np.median(_border(gray))) > 0.5:
        gray = 1.0 - gray
    background = float(np.median(_border(gray)))
    gray = np.clip((gray - background) / max(1e-3, 1.0 - background), 0.0, 1.0)
    mask = np.where(gray > 0.05, gray, 0.0)
    box = _bounding_box(mask)
    if box is None:
        return np.zeros((*size, 1), dtype=np.float32)
    top, bottom, left, right = box
    crop = gray[top:bottom, left:right]
    scale = size[0] / max(crop.shape)
    target = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return _paste_centred(_resize_array(crop, target), size[0], centre_of_mass=False)[..., np.newaxis]


def preprocess_cifar(image: Image.Image, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """CIFAR-10 style; returns float32 (32, 32, 3) in [0, 1]: shorter side to 32, centre crop."""
    rgb = Image.fromarray((_to_float(image, 3) * 255).round().astype(np.uint8))
    height, width = size
    scale = max(width / rgb.width, height / rgb.height)
    resized = rgb.resize(
        (max(width, round(rgb.width * scale)), max(height, round(rgb.height * scale))),
        Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BOX,
        reducing_gap=3.0,
    )
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    cropped = resized.crop((left, top, left + width, top + height))
    return np.asarray(cropped, dtype=np.float32) / 255.0


def preprocess_resize(image: Image.Image, shape: tuple[int, int, int]) -> np.ndarray:
    """Convert to the model's channels and resize to its input size, nothing else."""
    height, width, channels = shape
    array = _to_float(image, 1 if channels == 1 else 3)
    if array.shape[:2] != (height, width):
        resampling = Image.Resampling.BOX if array.shape[0] > 2 * height else Image.Resampling.BILINEAR
        if channels == 1:
            array = np.asarray(Image.fromarray(array).resize((width, height), resampling))
        else:
            rgb = Image.fromarray((array * 255).round().astype(np.uint8))
            array = np.asarray(rgb.resize((width, height), resampling), dtype=np.float32) / 255.0
    array = np.clip(array.astype(np.float32), 0.0, 1.0)
    return array[..., np.newaxis] if channels == 1 else array


def preprocess(image: Image.Image, method: str, shape: tuple[int, int, int]) -> np.ndarray:
    """Turn a decoded image into one model input.

    Args:
        image: Any Pillow image (mode, size and colour are all handled).
        method: One of `METHODS`.
        shape: The model's input shape (height, width, channels) in pixels.

    Returns:
        float32 array of `shape`, values in [0, 1].

    Raises:
        ValueError: Unknown method.
    """
    height, width, channels = shape
    if method == "mnist" and channels == 1:
        return preprocess_mnist(image, (height, width))
    if method == "fashion_mnist" and channels == 1:
        return preprocess_fashion(image, (height, width))
    if method == "cifar10" and channels == 3:
        return preprocess_cifar(image, (height, width))
    if method in METHODS:
        return preprocess_resize(image, shape)
    raise ValueError(f"unknown preprocessing {method!r}; choose from {METHODS}")


def prepare_image(data: bytes, *, method: str, shape: tuple[int, int, int], max_pixels: int) -> np.ndarray:
    """Decode upload bytes and preprocess them: `decode_image` then `preprocess`.

    Returns:
        float32 array of `shape`, values in [0, 1].

    Raises:
        UnsupportedImage: Not a decodable image (415).
        PayloadTooLarge: More than `max_pixels` pixels (413).
    """
    image = decode_image(data, max_pixels=max_pixels)
    try:
        return preprocess(image, method, shape)
    except (OSError, ValueError) as error:
        raise UnsupportedImage(f"the image could not be converted ({error})") from error
