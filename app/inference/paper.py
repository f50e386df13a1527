"""Photos of paper, as people upload a digit they wrote: the sheet found on a darker desk,
uneven lighting (a shadow, a lamp's falloff) divided out, ruled and squared lines cleared,
the digit's box found apart from specks, ink read from the colour channel where it stands
out. MNIST's recipe (`app.inference.preprocessing.preprocess_mnist`) runs this analysis
before it builds the 28x28 input. Every threshold is a named constant that says what it
separates.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from app.inference.decoding import WORKING_SIZE, reduce_to, to_8bit
from app.inference.pixels import (
    LIGHT_BACKGROUND,
    border_median,
    gray_contrast,
    gray_image,
    gray_pixels,
    max_filter,
    min_filter,
    odd_size,
    quantile,
    read_only,
)

__all__ = [
    "COLOUR_CONTRAST",
    "INK_BESIDE",
    "INK_RATIO",
    "INK_SPAN",
    "INK_THRESHOLD",
    "KEPT_CONTRAST",
    "LIGHTING_GRID",
    "LIGHTING_KERNEL",
    "LIGHT_INK",
    "LOCAL_PAPER",
    "LOST_INK",
    "MAX_LIGHTING_KERNEL",
    "MIN_CONTRAST",
    "PAPER_AREA",
    "PAPER_CONTRAST",
    "PAPER_FLATNESS",
    "PAPER_KERNEL",
    "POLARITY_MARGIN",
    "RULE_COVERAGE",
    "RULE_THICKNESS",
    "SHADOWED_PAPER_INK",
    "SHADOW_KERNEL",
    "SHEET_FILL",
    "SPECK_FRACTION",
    "STROKE_EDGE",
    "STROKE_MARGIN",
    "STRONGEST_INK_PIXELS",
    "UNEVEN_LIGHTING",
    "digit_box",
    "even_lighting",
    "ink_gray",
    "ink_strength",
    "sheet_of_paper",
    "stroke_width",
    "without_rules",
]

INK_THRESHOLD = 0.2
"""Ink below this fraction of the strongest ink is paper noise (after background removal)."""


MIN_CONTRAST = 8
"""Ink must stand at least this many gray levels (of 255) above the paper, else the image is blank."""


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


FILLED_FRAME = 0.9
"""Ink spanning this share of an image's height or width makes it a crop of the digit, whose
lighting is left as it is: with no paper around the digit, a faint stroke touching the
border (the bar of a blurry seven) looks like a shadow's edge. 0.75 to 0.9 read the
2,000-image tuning set of the real-world digits alike (`tight` 93.0% without, 95.5-96.0%
with: docs/models.md); 0.9 still corrects a close-up whose digit spans 83% of the photo
(`benchmarks/paper_photos.py`'s `closeup`)."""


POLARITY_MARGIN = 3
"""The lighting correction reads the paper as light or dark by its border; it takes the other
reading when that one finds this many times less ink (ink is the thin minority)."""


SHADOWED_PAPER_INK = 0.35
"""Share of the thumbnail under which the ink of a dark-border reading may be lit paper whose
border lies in a shadow: `even_lighting` then takes the paper reading whenever it finds less
ink, not `POLARITY_MARGIN` times less. On the 2,000-image tuning set of the real-world digits
the lit part of such pages covered 15-30% of the thumbnail and the strokes of tight crops of
light digits on black 41% or more (`benchmarks/realworld.py`: `shadow` 94.5% to 97.5%, every
other kind unchanged)."""


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


COLOUR_CONTRAST = 1.5
"""A colour channel replaces the luminance for digits when the ink stands this many times
farther from the paper in it (`ink_gray`): for black or grey ink every channel is alike."""


STRONGEST_INK_PIXELS = 48
"""Pixels that make an image's strongest ink (its 0.1% quantile otherwise). A digit 15 px
high in a 500 px photo covers less than 0.1% of it, and that quantile would be the paper's
noise, taken for ink. 48 read best of 12, 24, 48 and 100 on the real-world digits' tuning
split (custom2_robust 97.8 -> 98.6%, custom2 96.8 -> 97.2%; `benchmarks/realworld.py`)."""


def _thumbnail(gray: Image.Image) -> tuple[Image.Image, int] | None:
    """`gray` reduced by a whole factor to about `LIGHTING_GRID` pixels on its longer side,
    and that factor; None for an image smaller than `LIGHTING_GRID` on either side (a crop
    of the digit, a drawing or an MNIST-sized image, with no room for a sheet or a shadow)."""
    if min(gray.size) < LIGHTING_GRID:
        return None
    factor = max(1, max(gray.size) // LIGHTING_GRID)
    return (gray.reduce(factor) if factor > 1 else gray), factor


def sheet_of_paper(gray: Image.Image) -> Image.Image:
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
    opened = gray_pixels(_without_strokes(small, odd_size(PAPER_KERNEL * max(small.size)), dark=False))
    desk = border_median(gray_pixels(small))
    sheet = opened >= desk + PAPER_CONTRAST
    if sheet.mean() < PAPER_AREA:  # no sheet
        return gray
    # Paper is flat apart from its ink; the bright parts of a bold, blurry light digit on a
    # dark ground, which the opening may keep, are not.
    lit = gray_pixels(small) >= desk + PAPER_CONTRAST
    low, high = np.percentile(gray_pixels(small)[sheet & lit], [10, 90])
    if high - low > PAPER_FLATNESS or _ink_beside(small, lit):
        return gray
    # The sheet's extent: rows and columns at least half as bright-covered as the most; a
    # digit near the sheet's edge lowers its rows' cover, the desk leaves none.
    bright = gray_pixels(small) >= (desk + int(np.median(opened[sheet]))) // 2
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
    within `LIGHTING_KERNEL` of them, at least `INK_BESIDE` pixels that each touch another.
    Then the darker part is paper in a shadow, not a desk, and the digit may lie in it."""
    pixels = gray_pixels(small)
    away = ~gray_pixels(max_filter(gray_image(sheet.astype(np.uint8) * 255), 5)).astype(bool)
    darker = gray_image(np.where(away, pixels, 0).astype(np.uint8))
    local = gray_pixels(max_filter(darker, odd_size(LIGHTING_KERNEL * max(small.size)))).astype(np.float32)
    ink = away & (pixels < INK_RATIO * local)
    # Specks are dropped, not lines: a stroke a thumbnail pixel wide, which a 3x3 median
    # would erase, keeps its pixels because each has an inked neighbour.
    padded = np.pad(ink, 1)
    height, width = ink.shape
    neighbours = [padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    ink &= np.logical_or.reduce([shifted for index, shifted in enumerate(neighbours) if index != 4])
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


def even_lighting(gray: Image.Image) -> Image.Image:
    """Divide out uneven lighting (a shadow, a lamp's falloff) from a photo of ink on paper.

    The paper's brightness is estimated on a thumbnail (`LIGHTING_GRID`, `_paper_estimate`).
    If the estimate varies by `UNEVEN_LIGHTING` or more along the border or beside the
    digit (`_uneven`), each pixel's ink becomes its contrast relative to the paper behind
    it: flat-field correction, as in document scanners. A shadow darkens the ink as much as
    the paper, so the ratio is what stays the same.

    A stroke is never taken for paper: the estimate's kernel starts at twice the width of
    the image's own strokes (`STROKE_MARGIN`, at least `LIGHTING_KERNEL`) and is widened by
    half while the estimate still erases the inside of strokes (`_takes_ink_for_paper`: a
    dense loop, a blurry stroke); strokes too wide for `MAX_LIGHTING_KERNEL` fill the frame,
    and the image is left as it is, as is a digit that fills the frame (`FILLED_FRAME`).

    Returns:
        The `L` image with the paper made even at its brightest level (dark paper at its
        darkest), or `gray` itself if the lighting is even, the digit or its strokes fill the
        frame or the image is smaller than `LIGHTING_GRID` (a crop of the digit, with no
        room for a shadow).
    """
    if (thumbnail := _thumbnail(gray)) is None:
        return gray
    small, _ = thumbnail
    light_paper = border_median(gray_pixels(small)) > LIGHT_BACKGROUND
    histogram = np.bincount(gray_pixels(gray).ravel(), minlength=256)
    ink = _ink_mask(small, light_paper=light_paper, darkest=_darkest_ink(histogram, light_paper=light_paper))
    # Ink is the thin minority: the reading that finds far less of it is the right one. A
    # shadow darkens a border but never lights one, so a dark border whose board reading
    # makes the lit paper "ink" (short of a crop's frame-filling strokes) needs only less.
    other = _ink_mask(small, light_paper=not light_paper, darkest=_darkest_ink(histogram, light_paper=not light_paper))
    margin = 1 if not light_paper and ink.mean() < SHADOWED_PAPER_INK else POLARITY_MARGIN
    if np.count_nonzero(other) * margin < np.count_nonzero(ink):
        light_paper, ink = not light_paper, other
    if _fills_frame(ink):
        return gray
    side = max(small.size)
    kernel = max(odd_size(LIGHTING_KERNEL * side), odd_size(STROKE_MARGIN * stroke_width(ink) + 2))
    while True:
        if kernel > MAX_LIGHTING_KERNEL * side:
            return gray
        paper = _paper_estimate(small, kernel, ink, light_paper=light_paper)
        cells = gray_pixels(paper)
        if not _uneven(cells, ink, kernel):
            return gray
        if not _takes_ink_for_paper(small, cells, ink, light_paper=light_paper):
            break
        kernel = odd_size(1.5 * kernel)
    behind = gray_pixels(paper.resize(gray.size, Image.Resampling.BILINEAR))
    pixels = gray_pixels(gray).astype(np.float32)
    behind = behind.astype(np.float32)
    if light_paper:  # darkness relative to the paper, then back to dark ink on white
        contrast = (behind - pixels) / np.maximum(behind, 1.0)
        levels = 255.0 * (1.0 - np.clip(contrast, 0.0, 1.0))
    else:
        contrast = (pixels - behind) / np.maximum(255.0 - behind, 1.0)
        levels = 255.0 * np.clip(contrast, 0.0, 1.0)
    return gray_image(levels.round().astype(np.uint8))


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the true pixels of a boolean (H, W) mask, bottom and
    right exclusive, in pixels; None if it has none."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _fills_frame(ink: np.ndarray) -> bool:
    """Whether the surely-ink (boolean (H, W), `_ink_mask`) spans `FILLED_FRAME` or more of
    the frame's height or width: a crop of the digit, with no paper around it on which a
    shadow could be told from a faint stroke."""
    if (box := _bounding_box(ink)) is None:
        return False
    top, bottom, left, right = box
    return max((bottom - top) / ink.shape[0], (right - left) / ink.shape[1]) >= FILLED_FRAME


def _uneven(paper: np.ndarray, ink: np.ndarray, margin: int) -> bool:
    """Whether a lighting estimate (uint8 (H, W)) varies by `UNEVEN_LIGHTING` or more between
    its 10th and 90th percentiles along the border, where a digit rarely is and a shadow from
    an edge or a lamp's falloff reaches, or outside the box of the surely-ink (`ink`,
    boolean (H, W)) grown by `margin` px, for a shadow inside the page. Not near the box,
    where the grey rim of a blurry stroke may be left in the estimate; percentiles, not the
    extremes, for a digit that touches the border."""
    border = np.concatenate([paper[[0, -1]].ravel(), paper[1:-1, [0, -1]].ravel()])
    beside = np.ones_like(ink)
    if (box := _bounding_box(ink)) is not None:
        top, bottom, left, right = box
        beside[max(0, top - margin) : bottom + margin, max(0, left - margin) : right + margin] = False
    spreads = [np.ptp(np.percentile(part, [10, 90])) for part in (border, paper[beside]) if part.size]
    return max(spreads) >= UNEVEN_LIGHTING


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
    wide = gray_pixels(paper).astype(np.float32)
    narrow = gray_pixels(_without_strokes(small, odd_size(SHADOW_KERNEL * side), dark=True)).astype(np.float32)
    # Where the narrow closing is as dark as ink, it kept a stroke: the wide estimate
    # holds there and around it, over the stroke's soft edge.
    strokes = gray_image(np.where((narrow < INK_RATIO * wide) | ink, 255, 0).astype(np.uint8))
    near_strokes = gray_pixels(max_filter(strokes, odd_size(STROKE_EDGE * side)))
    return gray_image(np.where(near_strokes > 0, wide, narrow).astype(np.uint8))


def _ink_mask(small: Image.Image, *, light_paper: bool, darkest: float) -> np.ndarray:
    """The surely-ink pixels of a thumbnail (`L`), boolean (H, W): those that reflect less
    than `INK_RATIO` (more for light inks: `INK_SPAN`, `LIGHT_INK`) of the brightest paper
    within `LOCAL_PAPER` of them (bright chalk on a dark board is inverted first). `darkest`
    is the reflectance of the image's darkest ink relative to its paper (`_darkest_ink`),
    measured at full size: thin dark strokes look light in a thumbnail. A shadow dims paper
    and ink alike, so it is not ink; a 3x3 median drops specks. `stroke_width` of the mask
    is the width of the image's strokes."""
    pixels = gray_pixels(small) if light_paper else 255 - gray_pixels(small)
    paper = gray_pixels(max_filter(gray_image(pixels), odd_size(LOCAL_PAPER * max(small.size))))
    paper = np.maximum(paper.astype(np.float32), 1.0)
    # Light ink (orange, yellow, a grey pencil) reflects more than INK_RATIO: the threshold
    # rises with the darkest ink of the image at full size, up to LIGHT_INK.
    ratio = min(LIGHT_INK, max(INK_RATIO, darkest + INK_SPAN * (1.0 - darkest)))
    ink = pixels < ratio * paper
    # The median only removes: filling a loop's small hole would make paper ink.
    return ink & (gray_pixels(gray_image(ink.astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(3))) > 127)


def _darkest_ink(histogram: np.ndarray, *, light_paper: bool) -> float:
    """Reflectance (0-1) of the darkest ink of an image relative to its paper, from the
    256-bin histogram of its gray levels at full size: its strongest ink
    (`STRONGEST_INK_PIXELS`) over the 90th percentile (inverted for a dark board)."""
    if not light_paper:
        histogram = histogram[::-1]
    return quantile(histogram, _extreme_fraction(histogram)) / max(1, quantile(histogram, 0.9))


def _extreme_fraction(histogram: np.ndarray) -> float:
    """The share of an image's pixels (0-1) that counts as its strongest ink, from its
    256-bin histogram: a thousandth, or `STRONGEST_INK_PIXELS` pixels where that is less (a
    small digit in a large frame); none, the extreme level itself, for images of 1,000
    pixels or less."""
    total = int(histogram.sum())
    return min(0.001, STRONGEST_INK_PIXELS / total) if total > 1000 else 0.0


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
    pixels = gray_pixels(small) if light_paper else 255 - gray_pixels(small)
    near = gray_pixels(max_filter(gray_image(pixels), odd_size(LOCAL_PAPER * max(small.size))))
    estimate = (paper if light_paper else 255 - paper).astype(np.float32)[inner]
    values = pixels.astype(np.float32)[inner]
    against_near = 1.0 - values / np.maximum(near.astype(np.float32)[inner], 1.0)
    against_estimate = 1.0 - values / np.maximum(estimate, 1.0)
    return float((against_estimate < KEPT_CONTRAST * against_near).mean()) > LOST_INK


def _without_strokes(small: Image.Image, kernel: int, *, dark: bool) -> Image.Image:
    """`small` without its strokes narrower than a square kernel of side `kernel` (odd,
    pixels): a grayscale closing (max then min filter) removes dark strokes, an opening
    (min then max) bright ones (`dark=False`)."""
    first, second = (max_filter, min_filter) if dark else (min_filter, max_filter)
    return second(first(small, kernel), kernel)


def ink_strength(gray: Image.Image) -> np.ndarray | None:
    """Ink strength of an `L` image, bright ink on black, uint8 (H, W); None if blank.

    A light background is inverted; the background level (median of the border) is
    subtracted, the strongest ink (`STRONGEST_INK_PIXELS`) scaled to 255, and faint noise below
    `INK_THRESHOLD` removed with a soft ramp so edges stay anti-aliased. All of it is one
    256-entry lookup table.
    """
    pixels = gray_pixels(gray)
    background = border_median(pixels)
    histogram = np.bincount(pixels.ravel(), minlength=256)
    invert = background > LIGHT_BACKGROUND  # as light_on_dark, folded into the lookup table
    if invert:
        histogram, background = histogram[::-1], 255 - background
    peak = quantile(histogram, 1.0 - _extreme_fraction(histogram))
    if peak - background < MIN_CONTRAST:
        return None
    return np.take(_ink_table(background, peak, invert), pixels)


@lru_cache(maxsize=4096)
def _ink_table(background: int, peak: int, invert: bool) -> np.ndarray:
    """The lookup table of `ink_strength`: gray level (0-255) to ink strength (0-255), uint8 (256,)."""
    levels = np.arange(256, dtype=np.float32)
    if invert:
        levels = 255.0 - levels
    ink = np.clip((levels - background) / (peak - background), 0.0, 1.0)
    ramp = np.clip((ink - INK_THRESHOLD) / (1.0 - INK_THRESHOLD), 0.0, 1.0)
    return read_only((ramp * 255.0).round().astype(np.uint8))


def without_rules(ink: np.ndarray) -> np.ndarray:
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
    belong to ruled lines (`without_rules`)."""
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


def digit_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
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


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels of a boolean (H, W) ink mask: 2 x area / perimeter."""
    area = int(mask.sum())
    if not area:
        return 0.0
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    perimeter = max(1, area - int(inner.sum()))
    return 2.0 * area / perimeter


def ink_gray(image: Image.Image) -> Image.Image:
    """An upload as an `L` image of at most `WORKING_SIZE` pixels on its longer side, in
    which its ink stands out most: the luminance, or for coloured ink on paper of another
    colour (blue ink on blue-grey paper, red on pink) the colour channel in which the ink
    stands `COLOUR_CONTRAST` times farther from the paper."""
    if image.mode in ("1", "L", "LA", "La", "I", "F") or image.mode.startswith("I;16"):
        return reduce_to(to_8bit(image, "L"), WORKING_SIZE)
    rgb = reduce_to(to_8bit(image, "RGB"), WORKING_SIZE)
    gray = rgb.convert("L")
    best, best_contrast = gray, COLOUR_CONTRAST * gray_contrast(gray_pixels(gray))
    for channel in rgb.split():
        if (contrast := gray_contrast(gray_pixels(channel))) > best_contrast:
            best, best_contrast = channel, contrast
    return best
