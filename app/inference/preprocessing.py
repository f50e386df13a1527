"""Turn uploaded image bytes into a model's input, the way its dataset was made.

Every function here is CPU work on one image; the pipeline (`app.inference.model`) runs it
in a bounded pool of worker threads, or for tiny uploads in the batcher's thread.
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

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from typing import Literal, get_args

import numpy as np
import pillow_heif
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageFilter, ImageOps, PngImagePlugin, UnidentifiedImageError

from app.errors import PayloadTooLarge, UnsupportedImage
from modelstore import Preprocessing, preprocessing_fits

__all__ = [
    "METHODS",
    "SUPPORTED_FORMATS",
    "decode_image",
    "encode_model_input",
    "image_preparation",
    "prepare_image",
    "preprocess",
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

Method = Literal[Preprocessing, "none"]
"""A preprocessing a request may ask for: a model's (`modelstore.Preprocessing`), or `none`
(convert to the model's channels and resize, as `resize`)."""

METHODS: tuple[str, ...] = get_args(Method)

INLINE_HEADER_BYTES = 65536
"""Uploads up to this many bytes have their header read on the event loop to decide
where to preprocess them; larger ones go to a worker thread unread (a PNG's header parse
inflates its text chunks)."""

# A PNG's compressed text chunks are inflated while its header is read. Pillow allows 1 MB
# per chunk and 64 MB in all; an upload classifier needs none of them.
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024

WORKING_SIZE = 512
"""Longer side, in pixels, that large uploads are reduced to before analysis."""

INK_THRESHOLD = 0.2
"""Ink below this fraction of the strongest ink is paper noise (after background removal)."""

MNIST_BOX = 20
"""MNIST digits are scaled so that their longer side is 20 px inside the 28x28 frame."""

LIGHTING_GRID = 64
"""Longer side, in pixels, of the thumbnail on which the paper's brightness is estimated."""

LIGHTING_KERNEL = 0.1
"""Least side of the closing that removes the ink from that thumbnail, as a fraction of its
longer side: wider than the strokes of a digit photographed with paper around it, narrower
than most shadows (0.1 read shadows best of 0.1, 0.15, 0.2 and 0.3 in
benchmarks/paper_photos.py). Thicker strokes widen it (`STROKE_MARGIN`)."""

STROKE_MARGIN = 2.0
"""The closing is at least this many times as wide as the image's own strokes (measured on
the thumbnail, `_ink_stroke_width`), plus a pixel each side: a kernel narrower than a stroke
takes the stroke for background, and subtracting it leaves only the stroke's outline."""

MAX_LIGHTING_KERNEL = 0.4
"""Widest closing, as a fraction of the thumbnail's longer side. Strokes that would need a
wider one fill the frame (a close-up, a tight crop of a bold digit): there is no paper
around them to estimate the lighting from, and the image is left as it is."""

LIGHT_INK = 0.8
"""Highest reflectance, relative to the paper near it, that counts as surely ink
(`_ink_mask`); paper dimmed less than this by a shadow is never ink."""

INK_SPAN = 0.35
"""Where between the darkest ink of an image and its paper the surely-ink threshold lies
(at least `INK_RATIO`): dark ink keeps `INK_RATIO`, a light ink gets a threshold near it."""

KEPT_CONTRAST = 0.5
"""Share of a surely-ink pixel's contrast against the paper near it that it keeps against a
right lighting estimate; a stroke taken for paper keeps next to none."""

LOST_INK = 0.2
"""Fraction of the surely-ink pixels that may fall below `KEPT_CONTRAST` (a stroke's soft
edge, ink in a shadow) before the estimate is judged to have taken strokes for paper and the
correction is skipped."""

LOCAL_PAPER = 0.35
"""Side of the window, as a fraction of the thumbnail's longer side, whose brightest pixel
is taken for the paper near a pixel when the ink is told from the paper for measuring the
strokes: wider than any stroke whose lighting can still be corrected."""

SHADOW_KERNEL = 0.03
"""Side of the narrower closing that follows a shadow's edge, as a fraction of the
thumbnail's longer side. The wide closing (`LIGHTING_KERNEL`) fills a shadow's wedge that is
narrower than its kernel, where the border meets the shadow's edge at an angle, and the
shadow is then read as ink; this one also keeps the thicker strokes, which `INK_RATIO` tells
apart."""

INK_RATIO = 0.45
"""Ink reflects less than this fraction of the light that the paper around it reflects; a
shadow on a page dims it less. Where the narrow closing is darker than this fraction of the
wide one, it kept a stroke, and the wide estimate is used there (0.45 read the most edge
shadows without losing a close-up in benchmarks/paper_photos.py among 0.4-0.7)."""

STROKE_EDGE = 0.1
"""How far around such a stroke the wide estimate is also used, as a kernel of this fraction
of the thumbnail's side: over the soft edge of a thick stroke, which is lighter than ink
(0.06 lost one close-up of 60 in benchmarks/paper_photos.py, 0.1 none)."""

UNEVEN_LIGHTING = 20
"""Gray levels (of 255) that the paper's estimated brightness must vary by along the
image's border (between its 10th and 90th percentiles) before it is evened out: paper lit
evenly, a scan or a drawing is left as it is. 20 read the tuning split of the real-world
digits best of 10, 20 and 40 (`benchmarks/realworld.py --split tune`)."""

PAPER_KERNEL = 0.25
"""Side of the opening that finds a sheet of paper in a photo, as a fraction of the
thumbnail's longer side: it removes every stroke of a digit, even one filling the frame,
and keeps a sheet that covers a fifth of the photo or more (`PAPER_AREA`)."""

PAPER_AREA = 0.2
"""Least fraction of the photo a sheet of paper covers; a bold digit, light on a dark ground,
may survive the opening in part, but covers less."""

PAPER_FLATNESS = 32
"""Most gray levels (of 255) between the 10th and 90th percentiles of a sheet's bright pixels:
paper, lit evenly or not, spread 1-20 on photos of sheets on desks and of shadowed paper; the
bright parts of bold, blurry light digits on a dark ground that survive the opening spread
47-117 (the tuning split of the real-world digits)."""

SHEET_FILL = 0.85
"""Least fraction of a sheet's box that is bright once the ink's holes are filled, and of
the bright pixels that lie in the box: a sheet photographed from above fills its box and the
desk around it is dark; the lit part of shadowed paper, cut by the shadow's slanted edge,
leaves a wedge of the box dark or a wedge of itself outside."""

INK_BESIDE = 4
"""Thumbnail pixels of ink outside a bright region that make it a lit part of shadowed
paper rather than a sheet on a desk (`_ink_beside`)."""

PAPER_CONTRAST = 60
"""Gray levels (of 255) by which a sheet must be brighter than the border of the photo (a
desk, a table) to be cropped to."""

RULE_COVERAGE = 0.6
"""A row (column) of ink is part of a ruled line of notebook paper if at least this fraction
of its pixels are ink and its ink reaches both edges of the image."""

RULE_THICKNESS = 0.015
"""Thickest ruled line, as a fraction of the image's height (width for a column): thinner
than any stroke of a digit."""

SPECK_FRACTION = 0.02
"""Ink apart from the digit whose mass is below this fraction of the heaviest band's is a
speck (dust, paper grain, a JPEG block) and does not widen the digit's box. The parts of a
broken handwritten digit (a 5's flag, a 4's open top) weigh far more."""

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

POLARITY_MARGIN = 3
"""The lighting correction reads the paper as light or dark by its border; it takes the other
reading when that one finds this many times less ink (ink is the thin minority)."""

COLOUR_CONTRAST = 1.5
"""A colour channel replaces the luminance for digits when the ink stands this many times
farther from the paper in it (`_ink_gray`): for black or grey ink every channel is alike."""

LIGHT_BACKGROUND = 127
"""A border median (gray level of 255) above this is a light background: the image is inverted."""

MIN_CONTRAST = 8
"""Ink must stand at least this many gray levels (of 255) above the paper, else the image is blank."""


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


def _to_8bit(image: Image.Image, mode: str) -> Image.Image:
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


def _reduce(image: Image.Image, longest: int) -> Image.Image:
    """Shrink so the longer side is at most `longest` pixels (anti-aliased); never enlarge."""
    if max(image.size) <= longest:
        return image
    scale = longest / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX if scale < 0.5 else Image.Resampling.LANCZOS)


def _pixels(gray: Image.Image) -> np.ndarray:
    """The uint8 (H, W) pixels of an `L` image, read-only.

    Through `tobytes`: `np.asarray` on a Pillow image takes about twice as long, which
    counts for small uploads, prepared one after another in the batcher's thread.
    """
    return np.frombuffer(gray.tobytes(), dtype=np.uint8).reshape(gray.height, gray.width)


def _gray_image(pixels: np.ndarray) -> Image.Image:
    """An `L` image of uint8 (H, W) pixels."""
    return Image.frombytes("L", (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels).tobytes())


def _apply_table(gray: Image.Image, table: np.ndarray) -> Image.Image:
    """Map every gray level of an `L` image through a uint8 (256,) lookup table.

    Equivalent to `Image.point(table)`, which rounds the 256 entries in Python on every
    call, the larger cost for a small image.
    """
    return _gray_image(np.take(table, _pixels(gray)))


def _quantile(histogram: np.ndarray, fraction: float) -> int:
    """The gray level below which `fraction` of the pixels of a 256-bin histogram lie."""
    cumulative = np.cumsum(histogram)
    return int(np.searchsorted(cumulative, fraction * cumulative[-1]))


def _border_median(pixels: np.ndarray, *, corners_only: bool = False) -> int:
    """Median gray level (0-255) of the outermost frame of uint8 (H, W) pixels.

    Args:
        pixels: The image's pixels (`_pixels`).
        corners_only: Use only the four corner squares (an eighth of the shorter side
            each), for objects like garments that may touch the middle of every edge.
    """
    height, width = pixels.shape
    if corners_only:
        side = max(1, min(width, height) // 8)
        strips = [pixels[:side, :side], pixels[:side, -side:], pixels[-side:, :side], pixels[-side:, -side:]]
    else:
        band = max(1, min(2, min(width, height) // 4))
        strips = [pixels[:band], pixels[-band:], pixels[:, :band], pixels[:, -band:]]
    values = np.concatenate([strip.ravel() for strip in strips])
    middle = (values.size - 1) // 2  # the lower median: a gray level that occurs in the frame
    return int(np.partition(values, middle)[middle])


def _rank_filter(image: Image.Image, size: int, *, maximum: bool) -> Image.Image:
    """Pillow's `MaxFilter(size)` (or `MinFilter`) of an `L` image, the same pixels (edges
    replicated, as Pillow does), computed separably: a square window's maximum is the
    maximum of its rows' maxima. O(size) per pixel where Pillow's rank filter is O(size**2):
    0.3 ms against 21 ms for a 31-pixel window on a 75x75 thumbnail."""
    half = size // 2
    padded = np.pad(_pixels(image), half, mode="edge")
    reduce = np.max if maximum else np.min
    rows = reduce(sliding_window_view(padded, size, axis=1), axis=-1)
    return _gray_image(np.ascontiguousarray(reduce(sliding_window_view(rows, size, axis=0), axis=-1)))


def _max_filter(image: Image.Image, size: int) -> Image.Image:
    """`ImageFilter.MaxFilter(size)` of an `L` image (`_rank_filter`)."""
    return _rank_filter(image, size, maximum=True)


def _min_filter(image: Image.Image, size: int) -> Image.Image:
    """`ImageFilter.MinFilter(size)` of an `L` image (`_rank_filter`)."""
    return _rank_filter(image, size, maximum=False)


def _thumbnail(gray: Image.Image) -> tuple[Image.Image, int] | None:
    """`gray` reduced by a whole factor to about `LIGHTING_GRID` pixels on its longer side,
    and that factor; None for an image smaller than `LIGHTING_GRID` on either side (a crop
    of the digit, a drawing or an MNIST-sized image, with no room for a sheet or a shadow)."""
    if min(gray.size) < LIGHTING_GRID:
        return None
    factor = max(1, max(gray.size) // LIGHTING_GRID)
    return (gray.reduce(factor) if factor > 1 else gray), factor


def _paper(gray: Image.Image) -> Image.Image:
    """Crop a photo of a sheet of paper lying on a darker desk to the sheet.

    Otherwise the desk, darker than the paper all along the border, would be taken for the
    background and the paper for a huge bright stroke. The sheet is what is left bright
    after an opening (min then max filter, `PAPER_KERNEL`) of a `LIGHTING_GRID` thumbnail,
    which removes strokes of any width a digit has; it must be `PAPER_CONTRAST` brighter than
    the border's median. The crop is inset by 1.5% of each side, past the sheet's edge and
    its shadow.

    Returns:
        The sheet, cropped from `gray`, or `gray` itself if there is none (the paper fills
        the photo, or the image is a scan, a drawing or smaller than `LIGHTING_GRID`).
    """
    if (thumbnail := _thumbnail(gray)) is None:
        return gray
    small, factor = thumbnail
    opened = _pixels(_without_strokes(small, _odd(PAPER_KERNEL * max(small.size)), dark=False))
    desk = _border_median(_pixels(small))
    sheet = opened >= desk + PAPER_CONTRAST
    if sheet.mean() < PAPER_AREA:  # no sheet
        return gray
    # Paper is flat apart from its ink; the bright parts of a bold, blurry light digit on a
    # dark ground, which the opening may keep, are not.
    lit = _pixels(small) >= desk + PAPER_CONTRAST
    low, high = np.percentile(_pixels(small)[sheet & lit], [10, 90])
    if high - low > PAPER_FLATNESS or _ink_beside(small, lit):
        return gray
    # The sheet's extent: rows and columns at least half as bright-covered as the most; a
    # digit near the sheet's edge lowers its rows' cover, the desk leaves none.
    bright = _pixels(small) >= (desk + int(np.median(opened[sheet]))) // 2
    row_cover, column_cover = bright.mean(axis=1), bright.mean(axis=0)
    rows = np.flatnonzero(row_cover >= row_cover.max() / 2)
    columns = np.flatnonzero(column_cover >= column_cover.max() / 2)
    # A sheet fills its box but for its ink, and little of it is outside; the lit part of
    # paper beside a shadow's slanted edge (a wedge, a trapezium) is neither.
    inside = bright[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    if _filled_holes(inside).mean() < SHEET_FILL or np.count_nonzero(inside) < SHEET_FILL * np.count_nonzero(bright):
        return gray
    inset_x, inset_y = round(0.015 * gray.width), round(0.015 * gray.height)
    box = (
        min(gray.width, int(columns[0]) * factor + inset_x),
        min(gray.height, int(rows[0]) * factor + inset_y),
        max(0, (int(columns[-1]) + 1) * factor - inset_x),
        max(0, (int(rows[-1]) + 1) * factor - inset_y),
    )
    if box[2] - box[0] < LIGHTING_GRID or box[3] - box[1] < LIGHTING_GRID:
        return gray
    return gray.crop(box)


def _ink_beside(small: Image.Image, sheet: np.ndarray) -> bool:
    """Whether the darker part of a thumbnail (`L`), two pixels away from its bright pixels
    (`sheet`, boolean (H, W)), holds ink: strokes darker than `INK_RATIO` of the brightest of that part
    within `LIGHTING_KERNEL` of them. Then the darker part is paper in a shadow, not a desk,
    and the digit may lie in it."""
    pixels = _pixels(small)
    away = ~_pixels(_max_filter(_gray_image(sheet.astype(np.uint8) * 255), 5)).astype(bool)
    darker = _gray_image(np.where(away, pixels, 0).astype(np.uint8))
    local = _pixels(_max_filter(darker, _odd(LIGHTING_KERNEL * max(small.size)))).astype(np.float32)
    ink = away & (pixels < INK_RATIO * local)
    ink &= _pixels(_gray_image(ink.astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(3))) > 127
    return int(np.count_nonzero(ink)) >= INK_BESIDE


def _filled_holes(mask: np.ndarray) -> np.ndarray:
    """A boolean (H, W) mask with its holes filled (the ink on a sheet): every pixel that
    cannot be reached from the border through pixels outside the mask (4-connected) joins
    it. Morphological reconstruction by repeated one-pixel dilation: at most H x W / 2
    steps, a few dozen on a thumbnail."""
    free = ~mask
    outside = np.zeros_like(mask)
    outside[[0, -1]] = free[[0, -1]]
    outside[:, [0, -1]] |= free[:, [0, -1]]
    while True:
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= free
        if np.array_equal(grown, outside):
            return ~outside
        outside = grown


def _even_lighting(gray: Image.Image) -> Image.Image:
    """Divide out uneven lighting (a shadow, a lamp's falloff) from a photo of ink on paper.

    The paper's brightness is estimated on a thumbnail (`LIGHTING_GRID`, `_paper_estimate`).
    If the estimate varies by `UNEVEN_LIGHTING` or more along the border, each pixel's ink
    becomes its contrast relative to the paper behind it: flat-field correction, as in
    document scanners. A shadow darkens the ink as much as the paper, so the ratio is what
    stays the same.

    A stroke is never taken for paper: the estimate's kernel starts at twice the width of
    the image's own strokes (`STROKE_MARGIN`, at least `LIGHTING_KERNEL`) and is widened by
    half while the estimate still erases the inside of strokes (`_takes_ink_for_paper`: a
    dense loop, a blurry stroke); strokes too wide for `MAX_LIGHTING_KERNEL` fill the frame,
    and the image is left as it is.

    Returns:
        The `L` image with the paper made even at its brightest level (dark paper at its
        darkest), or `gray` itself if the lighting is even, the strokes fill the frame or the
        image is smaller than `LIGHTING_GRID` (a crop of the digit, with no room for a shadow).
    """
    if (thumbnail := _thumbnail(gray)) is None:
        return gray
    small, _ = thumbnail
    light_paper = _border_median(_pixels(small)) > LIGHT_BACKGROUND
    histogram = np.bincount(_pixels(gray).ravel(), minlength=256)
    ink = _ink_mask(small, light_paper=light_paper, darkest=_darkest_ink(histogram, light_paper=light_paper))
    # Paper mostly in a shadow has a dark border, yet it is light paper: its ink is the
    # thin minority, where reading it as a dark board would make the lit paper the "ink".
    other = _ink_mask(small, light_paper=not light_paper, darkest=_darkest_ink(histogram, light_paper=not light_paper))
    if np.count_nonzero(other) * POLARITY_MARGIN < np.count_nonzero(ink):
        light_paper, ink = not light_paper, other
    side = max(small.size)
    kernel = max(_odd(LIGHTING_KERNEL * side), _odd(STROKE_MARGIN * _stroke_width(ink) + 2))
    while True:
        if kernel > MAX_LIGHTING_KERNEL * side:
            return gray
        paper = _paper_estimate(small, kernel, ink, light_paper=light_paper)
        cells = _pixels(paper)
        # Along the border, where a digit rarely is and a shadow or a lamp's falloff nearly
        # always reaches; percentiles, not the extremes, for a digit that touches the border.
        border = np.concatenate([cells[[0, -1]].ravel(), cells[1:-1, [0, -1]].ravel()])
        darkest, brightest = np.percentile(border, [10, 90])
        if brightest - darkest < UNEVEN_LIGHTING:
            return gray
        if not _takes_ink_for_paper(small, cells, ink, light_paper=light_paper):
            break
        kernel = _odd(1.5 * kernel)
    behind = _pixels(paper.resize(gray.size, Image.Resampling.BILINEAR))
    pixels = _pixels(gray).astype(np.float32)
    behind = behind.astype(np.float32)
    if light_paper:  # darkness relative to the paper, then back to dark ink on white
        contrast = (behind - pixels) / np.maximum(behind, 1.0)
        levels = 255.0 * (1.0 - np.clip(contrast, 0.0, 1.0))
    else:
        contrast = (pixels - behind) / np.maximum(255.0 - behind, 1.0)
        levels = 255.0 * np.clip(contrast, 0.0, 1.0)
    return _gray_image(levels.round().astype(np.uint8))


def _paper_estimate(small: Image.Image, kernel: int, ink: np.ndarray, *, light_paper: bool) -> Image.Image:
    """The paper's brightness behind a thumbnail (`L`, the thumbnail's size).

    A grayscale closing (max then min filter, side `kernel`) removes dark strokes but keeps a
    shadow's edge, for light paper, or an opening for a dark board. On light paper a
    narrower closing (`SHADOW_KERNEL`) follows a shadow into the narrow wedges the wide one
    fills, and is used wherever it is neither as dark as ink (`INK_RATIO`, or in `ink`, the
    boolean (H, W) `_ink_mask`) nor next to such ink (`STROKE_EDGE`).
    """
    paper = _without_strokes(small, kernel, dark=light_paper)
    if not light_paper:
        return paper
    side = max(small.size)
    wide = _pixels(paper).astype(np.float32)
    narrow = _pixels(_without_strokes(small, _odd(SHADOW_KERNEL * side), dark=True)).astype(np.float32)
    # Where the narrow closing is as dark as ink, it kept a stroke: the wide estimate
    # holds there and around it, over the stroke's soft edge.
    strokes = _gray_image(np.where((narrow < INK_RATIO * wide) | ink, 255, 0).astype(np.uint8))
    near_strokes = _pixels(_max_filter(strokes, _odd(STROKE_EDGE * side)))
    return _gray_image(np.where(near_strokes > 0, wide, narrow).astype(np.uint8))


def _odd(size: float) -> int:
    """The odd kernel side (pixels, at least 1) nearest to `size`, as Pillow's rank filters need."""
    return 2 * round(size / 2) + 1


def _ink_mask(small: Image.Image, *, light_paper: bool, darkest: float) -> np.ndarray:
    """The surely-ink pixels of a thumbnail (`L`), boolean (H, W): those that reflect less
    than `INK_RATIO` (more for light inks: `INK_SPAN`, `LIGHT_INK`) of the brightest paper
    within `LOCAL_PAPER` of them (bright chalk on a dark board is inverted first). `darkest`
    is the reflectance of the image's darkest ink relative to its paper (`_darkest_ink`),
    measured at full size: thin dark strokes look light in a thumbnail. A shadow dims paper
    and ink alike, so it is not ink; a 3x3 median drops specks. `_stroke_width` of the mask
    is the width of the image's strokes."""
    pixels = _pixels(small) if light_paper else 255 - _pixels(small)
    paper = _pixels(_max_filter(_gray_image(pixels), _odd(LOCAL_PAPER * max(small.size))))
    paper = np.maximum(paper.astype(np.float32), 1.0)
    # Light ink (orange, yellow, a grey pencil) reflects more than INK_RATIO: the threshold
    # rises with the darkest ink of the image at full size, up to LIGHT_INK.
    ratio = min(LIGHT_INK, max(INK_RATIO, darkest + INK_SPAN * (1.0 - darkest)))
    ink = pixels < ratio * paper
    # The median only removes: filling a loop's small hole would make paper ink.
    return ink & (_pixels(_gray_image(ink.astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(3))) > 127)


def _darkest_ink(histogram: np.ndarray, *, light_paper: bool) -> float:
    """Reflectance (0-1) of the darkest ink of an image relative to its paper, from the
    256-bin histogram of its gray levels at full size: the 0.1th percentile over the 90th
    (inverted for a dark board)."""
    if not light_paper:
        histogram = histogram[::-1]
    return _quantile(histogram, 0.001) / max(1, _quantile(histogram, 0.9))


def _takes_ink_for_paper(small: Image.Image, paper: np.ndarray, ink: np.ndarray, *, light_paper: bool) -> bool:
    """Whether a lighting estimate would erase strokes: more than `LOST_INK` of the inner
    pixels of the surely-ink (`_ink_mask`, less its one-pixel rim) of the thumbnail keep less
    than `KEPT_CONTRAST` of their contrast against the paper near them (the brightest within
    `LOCAL_PAPER`) when it is taken against the estimate (`paper`, uint8 (H, W), the
    thumbnail's size). A stroke wider than the estimate's kernel is taken for paper inside
    it, and correcting would leave only its outline; strokes two pixels wide or less have no
    inside and are left to the kernel's width."""
    inner = np.zeros_like(ink)
    inner[1:-1, 1:-1] = ink[1:-1, 1:-1] & ink[:-2, 1:-1] & ink[2:, 1:-1] & ink[1:-1, :-2] & ink[1:-1, 2:]
    if not inner.any():
        return False
    pixels = _pixels(small) if light_paper else 255 - _pixels(small)
    near = _pixels(_max_filter(_gray_image(pixels), _odd(LOCAL_PAPER * max(small.size))))
    estimate = (paper if light_paper else 255 - paper).astype(np.float32)[inner]
    values = pixels.astype(np.float32)[inner]
    against_near = 1.0 - values / np.maximum(near.astype(np.float32)[inner], 1.0)
    against_estimate = 1.0 - values / np.maximum(estimate, 1.0)
    return float((against_estimate < KEPT_CONTRAST * against_near).mean()) > LOST_INK


def _without_strokes(small: Image.Image, kernel: int, *, dark: bool) -> Image.Image:
    """`small` without its strokes narrower than a square kernel of side `kernel` (odd,
    pixels): a grayscale closing (max then min filter) removes dark strokes, an opening
    (min then max) bright ones (`dark=False`)."""
    first, second = (_max_filter, _min_filter) if dark else (_min_filter, _max_filter)
    return second(first(small, kernel), kernel)


def _light_on_dark(gray: Image.Image, *, corners_only: bool = False) -> tuple[Image.Image, int]:
    """Invert an `L` image whose background is light; return it and its background level."""
    median = _border_median(_pixels(gray), corners_only=corners_only)
    if median > LIGHT_BACKGROUND:
        return ImageOps.invert(gray), 255 - median
    return gray, median


def _ink(gray: Image.Image) -> np.ndarray | None:
    """Ink strength of an `L` image, bright ink on black, uint8 (H, W); None if blank.

    A light background is inverted; the background level (median of the border) is
    subtracted, the strongest ink (99.9th percentile) scaled to 255, and faint noise below
    `INK_THRESHOLD` removed with a soft ramp so edges stay anti-aliased. All of it is one
    256-entry lookup table.
    """
    pixels = _pixels(gray)
    background = _border_median(pixels)
    histogram = np.bincount(pixels.ravel(), minlength=256)
    invert = background > LIGHT_BACKGROUND  # as _light_on_dark, folded into the lookup table
    if invert:
        histogram, background = histogram[::-1], 255 - background
    peak = _quantile(histogram, 0.999) if gray.width * gray.height > 1000 else int(np.flatnonzero(histogram)[-1])
    if peak - background < MIN_CONTRAST:
        return None
    return np.take(_ink_table(background, peak, invert), pixels)


@lru_cache(maxsize=4096)
def _ink_table(background: int, peak: int, invert: bool) -> np.ndarray:
    """The lookup table of `_ink`: gray level (0-255) to ink strength (0-255), uint8 (256,)."""
    levels = np.arange(256, dtype=np.float32)
    if invert:
        levels = 255.0 - levels
    ink = np.clip((levels - background) / (peak - background), 0.0, 1.0)
    ramp = np.clip((ink - INK_THRESHOLD) / (1.0 - INK_THRESHOLD), 0.0, 1.0)
    return _read_only((ramp * 255.0).round().astype(np.uint8))


def _read_only(table: np.ndarray) -> np.ndarray:
    """`table`, made immutable: the lookup tables are cached and shared."""
    table.flags.writeable = False
    return table


def _without_rules(ink: np.ndarray) -> np.ndarray:
    """Ink (uint8 (H, W), bright on black) without the ruled lines of notebook or graph paper.

    A ruled line is a band of rows (columns) each mostly ink (`RULE_COVERAGE`) from one edge
    of the image to the other, and thinner than a stroke (`RULE_THICKNESS`); its pixels are
    cleared, which leaves a gap of a pixel or two where the digit crosses it, gone once the
    digit is scaled to 20 px. A crop smaller than `LIGHTING_GRID` is returned as it is.
    """
    if min(ink.shape) < LIGHTING_GRID:
        return ink
    inked = ink > 0
    rows = _rules(inked, axis=1)
    columns = _rules(inked, axis=0)
    if not rows.any() and not columns.any():
        return ink
    cleared = ink.copy()
    cleared[rows] = 0
    cleared[:, columns] = 0
    return cleared


def _rules(inked: np.ndarray, *, axis: int) -> np.ndarray:
    """Boolean mask of the rows (`axis=1`) or columns (`axis=0`) of a boolean ink mask that
    belong to ruled lines (`_without_rules`)."""
    length = inked.shape[axis]
    margin = max(1, length // 32)
    edge_to_edge = inked.take(range(margin), axis=axis).any(axis=axis)
    edge_to_edge &= inked.take(range(length - margin, length), axis=axis).any(axis=axis)
    lines = edge_to_edge & (inked.mean(axis=axis) >= RULE_COVERAGE)
    if not lines.any():
        return lines
    thickest = max(2, round(RULE_THICKNESS * inked.shape[1 - axis]))
    for start, end in zip(*_bands(np.flatnonzero(lines)), strict=True):
        if end - start > thickest:  # a stroke, not a line
            lines[start:end] = False
    return lines


def _bands(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs of consecutive values in sorted, non-empty int indices: (starts, ends), each
    run being [start, end)."""
    breaks = np.flatnonzero(np.diff(indices) > 1)
    starts = indices[np.concatenate(([0], breaks + 1))]
    ends = indices[np.concatenate((breaks, [len(indices) - 1]))] + 1
    return starts, ends


def _digit_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (left, top, right, bottom) in pixels of the digit in an ink image
    (uint8 (H, W), bright on black), without specks apart from it; None if it is blank.

    Recursive XY cuts, as page-layout analysis does: the ink's column and row profiles
    split it at empty bands, and the bands lighter than `SPECK_FRACTION` of the heaviest
    are cut off, alternately across and down, until nothing more is cut. A speck sharing
    no row or no column with the digit is cut; one inside the digit's box changes nothing.
    """
    if not ink.any():
        return None
    top, left, (bottom, right) = 0, 0, ink.shape
    while True:
        window = ink[top:bottom, left:right]
        (cut_left, cut_right), whole_columns = _heavy_span(window.sum(axis=0, dtype=np.int64))
        (cut_top, cut_bottom), whole_rows = _heavy_span(window[:, cut_left:cut_right].sum(axis=1, dtype=np.int64))
        unchanged = (cut_left, cut_right, cut_top, cut_bottom) == (0, right - left, 0, bottom - top)
        left, top, right, bottom = left + cut_left, top + cut_top, left + cut_right, top + cut_bottom
        # One band each way cut nothing but empty margins: the box now holds all the ink
        # of the window, whose profiles another pass would find unchanged.
        if unchanged or (whole_columns and whole_rows):
            return left, top, right, bottom


def _heavy_span(profile: np.ndarray) -> tuple[tuple[int, int], bool]:
    """The span [start, end) of a 1-D ink profile from the first to the last of its
    non-empty bands whose mass is at least `SPECK_FRACTION` of the heaviest band's, and
    whether the profile had a single band (nothing but empty margins cut)."""
    inked = np.flatnonzero(profile)
    first, last = int(inked[0]), int(inked[-1])
    if last - first + 1 == len(inked):  # one band: the common case of a digit alone
        return (first, last + 1), True
    starts, ends = _bands(inked)
    cumulative = np.concatenate(([0], np.cumsum(profile)))
    masses = cumulative[ends] - cumulative[starts]
    heavy = np.flatnonzero(masses >= SPECK_FRACTION * masses.max())
    return (int(starts[heavy[0]]), int(ends[heavy[-1]])), False


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels of a boolean (H, W) ink mask: 2 x area / perimeter."""
    area = int(mask.sum())
    if not area:
        return 0.0
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    perimeter = max(1, area - int(inner.sum()))
    return 2.0 * area / perimeter


def _stretch(image: Image.Image) -> Image.Image:
    """Scale an `L` image so its brightest pixel is 255."""
    peak = int(image.getextrema()[1])  # type: ignore[arg-type]  # (min, max) for an L image
    if not 0 < peak < 255:
        return image
    return _apply_table(image, _stretch_table(peak))


@lru_cache(maxsize=256)
def _stretch_table(peak: int) -> np.ndarray:
    """Lookup table scaling gray level `peak` to 255, uint8 (256,)."""
    return _read_only(np.array([min(255, round(level * 255 / peak)) for level in range(256)], dtype=np.uint8))


@lru_cache(maxsize=256)
def _level_table(background: int) -> np.ndarray:
    """`preprocess_fashion`'s lookup table: `background` to 0, 255 kept, levels between
    scaled linearly; uint8 (256,)."""
    scale = 255.0 / max(1, 255 - background)
    return _read_only(
        np.array([min(255, max(0, round((level - background) * scale))) for level in range(256)], dtype=np.uint8)
    )


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Anti-aliased resize to (width, height): BOX when shrinking a lot, LANCZOS otherwise."""
    shrinking = size[0] < image.width / 2
    return image.resize(size, Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS)


def _fit_digit(ink: Image.Image, box: int) -> Image.Image:
    """Scale a cropped digit so its longer side is `box` px, thickening thin pen strokes.

    The digit is first drawn at twice the target size, where a pen line a fraction of a
    pixel wide would vanish; strokes thinner than MNIST's (about `MNIST_STROKE` of the
    longer side) are widened with a max filter before the final anti-aliased reduction.
    """
    width, height = ink.size
    scale = 2 * box / max(width, height)
    large = _stretch(_resize(ink, (max(1, round(width * scale)), max(1, round(height * scale)))))
    missing = MNIST_STROKE * 2 * box - _stroke_width(_pixels(large) > 127)
    kernel = min(5, 2 * round(missing / 2) + 1) if missing >= 1.0 else 1
    if kernel >= 3:
        large = _max_filter(large, kernel)
    return _resize(large, (max(1, round(width * scale / 2)), max(1, round(height * scale / 2))))


def _paste_centred(patch: Image.Image, side: int, *, centre_of_mass: bool) -> np.ndarray:
    """Place an `L` patch in a black (side, side) frame, centred by mass or by box.

    Returns:
        float32 (side, side) in [0, 1].
    """
    array = _pixels(patch).astype(np.float32) / 255.0
    height, width = array.shape
    total = float(array.sum())
    if centre_of_mass and total > 0:
        centre_y = float(array.sum(axis=1) @ np.arange(height)) / total
        centre_x = float(array.sum(axis=0) @ np.arange(width)) / total
        top, left = round(side / 2 - 0.5 - centre_y), round(side / 2 - 0.5 - centre_x)
    else:  # odd margins put the extra pixel before the object, as Fashion-MNIST's padding does
        top, left = (side - height + 1) // 2, (side - width + 1) // 2
    top = min(max(top, 0), side - height) if height <= side else 0
    left = min(max(left, 0), side - width) if width <= side else 0
    frame = np.zeros((side, side), dtype=np.float32)
    frame[top : top + height, left : left + width] = array[: side - top, : side - left]
    return frame


def _contrast(pixels: np.ndarray) -> int:
    """Gray levels between the border's median of uint8 (H, W) pixels and the farther of
    their 0.5th and 99.5th percentiles: how far the ink stands from the paper."""
    histogram = np.bincount(pixels.ravel(), minlength=256)
    paper = _border_median(pixels)
    return max(paper - _quantile(histogram, 0.005), _quantile(histogram, 0.995) - paper)


def _ink_gray(image: Image.Image) -> Image.Image:
    """An upload as an `L` image of at most `WORKING_SIZE` pixels on its longer side, in
    which its ink stands out most: the luminance, or for coloured ink on paper of another
    colour (blue ink on blue-grey paper, red on pink) the colour channel in which the ink
    stands `COLOUR_CONTRAST` times farther from the paper."""
    if image.mode in ("1", "L", "LA", "La", "I", "F") or image.mode.startswith("I;16"):
        return _reduce(_to_8bit(image, "L"), WORKING_SIZE)
    rgb = _reduce(_to_8bit(image, "RGB"), WORKING_SIZE)
    gray = rgb.convert("L")
    best, best_contrast = gray, COLOUR_CONTRAST * _contrast(_pixels(gray))
    for channel in rgb.split():
        if (contrast := _contrast(_pixels(channel))) > best_contrast:
            best, best_contrast = channel, contrast
    return best


def preprocess_mnist(image: Image.Image, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """The MNIST procedure; returns float32 (28, 28, 1) in [0, 1], white ink on black."""
    blank = np.zeros((*size, 1), dtype=np.float32)
    ink = _ink(_even_lighting(_paper(_ink_gray(image))))
    if ink is None:
        return blank
    ink = _without_rules(ink)
    box = _digit_box(ink)
    if box is None:
        return blank
    left, top, right, bottom = box
    digit = _fit_digit(_gray_image(ink[top:bottom, left:right]), round(MNIST_BOX * size[0] / 28))
    return _paste_centred(digit, size[0], centre_of_mass=True)[..., np.newaxis]


def _without_frame(gray: Image.Image) -> Image.Image:
    """An `L` image without the frame a shop or a gallery draws around a picture: outer rings
    of one gray level (within `FRAME_TOLERANCE`) up to `FRAME_DEPTH` of the shorter side,
    cut off when the ring inside them is mostly of another level (the picture's own
    background, which the object may touch). A background that reaches the edge with no
    frame is left as it is."""
    pixels = _pixels(gray).astype(np.int16)
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
    gray, background = _light_on_dark(_without_frame(_reduce(_to_8bit(image, "L"), WORKING_SIZE)), corners_only=True)
    pixels = np.take(_level_table(background), _pixels(gray))
    gray = _gray_image(pixels)
    rows, columns = np.nonzero(pixels > GARMENT_LEVEL)
    if not len(rows):
        return np.zeros((*size, 1), dtype=np.float32)
    crop = gray.crop((int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1))
    factor = size[0] / max(crop.size)
    fitted = _resize(crop, (max(1, round(crop.width * factor)), max(1, round(crop.height * factor))))
    if factor < 1 and sharpen is not None:
        fitted = fitted.filter(sharpen)
    return _paste_centred(fitted, size[0], centre_of_mass=False)[..., np.newaxis]


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
    rgb = _to_8bit(image, "RGB")
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
    converted = _to_8bit(image, "L" if channels == 1 else "RGB")
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
    return _prepare_opened(open_image(data, max_pixels=max_pixels), method, shape, sharpen)


def _prepare_opened(
    opened: Image.Image, method: str, shape: tuple[int, int, int], sharpen: tuple[float, int] | None = None
) -> np.ndarray:
    image = load_image(opened)
    try:
        return preprocess(image, method, shape, sharpen=sharpen)
    except (OSError, ValueError) as error:
        raise UnsupportedImage(f"the image could not be converted ({error})") from error


def image_preparation(
    data: bytes,
    *,
    method: str,
    shape: tuple[int, int, int],
    max_pixels: int,
    inline_pixels: int,
    sharpen: tuple[float, int] | None = None,
) -> tuple[Callable[[], np.ndarray], bool]:
    """The blocking function that decodes and preprocesses an upload (`prepare_image`), and
    whether the upload is small.

    An upload of at most `INLINE_HEADER_BYTES` bytes and `inline_pixels` pixels (by its
    header, read here once) is small: preparing it takes a few hundred microseconds (28x28),
    about as much as handing it to a thread, so it is prepared in a thread that is already
    running (the batcher's) or on the event loop. Anything larger belongs in a worker thread.

    Returns:
        (prepare, small): `prepare()` returns the float32 model input of `shape`, values in
        [0, 1], and raises as `prepare_image` does.

    Raises:
        UnsupportedImage, PayloadTooLarge: A small upload's header is refused at once (415,
            413), as `open_image`.
    """
    if len(data) <= INLINE_HEADER_BYTES:
        opened = open_image(data, max_pixels=max_pixels)
        if opened.width * opened.height <= inline_pixels:
            return partial(_prepare_opened, opened, method, shape, sharpen), True
    return partial(prepare_image, data, method=method, shape=shape, max_pixels=max_pixels, sharpen=sharpen), False


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
