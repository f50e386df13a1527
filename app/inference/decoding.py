"""Decoding uploads safely: the formats accepted and Pillow's process-wide limits
(decompression bombs, PNG text chunks), a large JPEG decoded at a reduced scale, the EXIF
orientation applied, transparency flattened onto white, high bit depths brought to 8 bits.
The recipes (`app.inference.preprocessing`) start from what `load_image` returns.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from app.errors import PayloadTooLarge, UnsupportedImage

__all__ = [
    "FORMAT_NAMES",
    "HIGH_BIT_MODES",
    "SUPPORTED_FORMATS",
    "WORKING_SIZE",
    "decode_image",
    "load_image",
    "open_image",
    "reduce_to",
    "to_8bit",
]

SUPPORTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "HEIF", "AVIF")
"""Raster formats accepted (an allow-list). HEIF is the HEIC of phone cameras (pillow-heif's
plugin, libheif), AVIF Pillow's own. Vector, document and script formats (SVG, PDF, EPS)
are refused, and so is ICO, whose header check already decodes its largest image."""


FORMAT_NAMES = "PNG, JPEG, GIF, BMP, TIFF, WebP, PPM, HEIC or AVIF"
"""`SUPPORTED_FORMATS` as users name them, for messages and the API's documentation."""


# libheif turns a HEIC image as its container says while decoding and pillow-heif resets
# the EXIF orientation to 1, so `load_image`'s EXIF transpose turns it once, like a JPEG.
pillow_heif.register_heif_opener()


# A PNG's compressed text chunks are inflated while its header is read. Pillow allows 1 MB
# per chunk and 64 MB in all; an upload classifier needs none of them.
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024


PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024


WORKING_SIZE = 512
"""Longer side, in pixels, that large uploads are reduced to before analysis."""


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode upload bytes into a Pillow image, safely: `open_image`, then `load_image`.

    Args:
        data: The uploaded file's bytes.
        max_pixels: Most pixels (width x height) accepted.

    Returns:
        The decoded image (any Pillow mode), fully loaded.

    Raises:
        UnsupportedImage: Empty, unknown format, truncated or corrupt data.
        PayloadTooLarge: Declared width x height above `max_pixels`.
    """
    return load_image(open_image(data, max_pixels=max_pixels))


@contextlib.contextmanager
def _decoding(max_pixels: int) -> Iterator[None]:
    """Turn Pillow's failures into the service's errors (415, 413)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PayloadTooLarge(f"image declares too many pixels ({error}); the limit is {max_pixels:,}") from error
    except UnidentifiedImageError as error:
        raise UnsupportedImage(f"the file is not a decodable image; accepted formats: {FORMAT_NAMES}") from error
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as error:
        raise UnsupportedImage(f"the image data is truncated or corrupt ({type(error).__name__})") from error


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Read an upload's header, no pixels, and refuse what must not be decoded.

    Returns:
        The opened image, its size known and its pixels not yet decoded.

    Raises:
        UnsupportedImage: Empty, not an accepted format, or a corrupt header (415).
        PayloadTooLarge: Declared width x height above `max_pixels` (413), refused
            before any pixel is decoded (decompression bombs).
    """
    if not data:
        raise UnsupportedImage(f"the uploaded file is empty; send a {FORMAT_NAMES} image")
    with _decoding(max_pixels):
        opened = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
        width, height = opened.size
    if width * height > max_pixels:
        raise PayloadTooLarge(f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
    if width < 1 or height < 1:
        raise UnsupportedImage(f"image has no pixels ({width}x{height})")
    return opened


def load_image(opened: Image.Image) -> Image.Image:
    """Decode the pixels of an image from `open_image`: the first frame of an animation,
    a large JPEG at a reduced scale, turned as its EXIF orientation says.

    Raises:
        UnsupportedImage: Truncated or corrupt data (415).
    """
    width, height = opened.size
    with _decoding(width * height):
        opened.seek(0)
        if opened.format == "JPEG" and max(width, height) > 4 * WORKING_SIZE:
            opened.draft(opened.mode, (2 * WORKING_SIZE, 2 * WORKING_SIZE))  # decode at reduced scale
        opened.load()
        image: Image.Image = ImageOps.exif_transpose(opened) or opened
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


HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_8bit(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow mode to 8-bit `L` or `RGB`, alpha flattened onto white.

    16- and 32-bit integer and float modes are scaled by their range, not clipped. A large
    one is first reduced to `2 * WORKING_SIZE` pixels on its longer side in its own mode,
    so no full-resolution float copy is made.
    """
    image = _flatten_alpha(image)
    if image.mode in HIGH_BIT_MODES:
        if image.mode.startswith("I;16"):
            image = image.convert("I")
        if max(image.size) > 2 * WORKING_SIZE:
            scale = 2 * WORKING_SIZE / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32)
        array = np.nan_to_num(array - min(0.0, float(np.nanmin(array))), nan=0.0, posinf=0.0)
        peak = float(array.max())
        scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        image = Image.fromarray(np.clip(array * (255.0 / scale), 0, 255).round().astype(np.uint8))
    return image if image.mode == mode else image.convert(mode)


def reduce_to(image: Image.Image, longest: int) -> Image.Image:
    """Shrink so the longer side is at most `longest` pixels (anti-aliased); never enlarge."""
    if max(image.size) <= longest:
        return image
    scale = longest / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX if scale < 0.5 else Image.Resampling.LANCZOS)
