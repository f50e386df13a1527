"""Preprocessing: any decodable image becomes a valid model input; MNIST's procedure holds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFilter

from app.errors import PayloadTooLarge, UnsupportedImage
from app.inference.decoding import decode_image
from app.inference.preprocessing import prepare_image, preprocess
from tests.conftest import DATA
from tests.images import digit_on_paper, encode, png_declaring

SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3), "none": (28, 28, 1)}
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr"]


def _mnist_digit() -> np.ndarray:
    return np.asarray(Image.open(DATA / "7.png"))


@st.composite
def images(draw: st.DrawFn) -> Image.Image:
    """Images of any supported mode, size from 1x1 to 300x300, random content."""
    mode = draw(st.sampled_from(MODES))
    width = draw(st.integers(1, 300))
    height = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["noise", "flat", "blob"]))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        rgb = np.full((height, width, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        if kind == "blob":
            top, left = rng.integers(0, height), rng.integers(0, width)
            rgb[top : top + max(1, height // 3), left : left + max(1, width // 3)] = rng.integers(0, 256, 3)
    image = Image.fromarray(rgb)
    if mode in ("I", "I;16", "F"):
        values = rgb[..., 0].astype(np.int32) * 257
        converted = Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.int32))
        return converted.convert("F") if mode == "F" else converted
    if mode in ("LA", "PA", "RGBA"):
        image.putalpha(Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)))
    return image.convert(mode)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), method=st.sampled_from(sorted(SHAPES)))
def test_any_image_becomes_a_valid_model_input(image: Image.Image, method: str) -> None:
    shape = SHAPES[method]
    result = preprocess(image, method, shape)
    assert result.shape == shape
    assert result.dtype == np.float32
    assert np.isfinite(result).all()
    assert result.min() >= 0.0 and result.max() <= 1.0


@settings(max_examples=40, deadline=None)
@given(image=images(), fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "HEIF", "AVIF"]))
def test_saved_files_round_trip_through_prepare_image(image: Image.Image, fmt: str) -> None:
    try:
        data = encode(image if fmt not in ("JPEG", "HEIF") else image.convert("RGB"), fmt)
    except (OSError, ValueError):
        return  # Pillow cannot save this mode in this format; nothing to upload
    result = prepare_image(data, method="mnist", shape=(28, 28, 1), max_pixels=10**6)
    assert result.shape == (28, 28, 1) and 0.0 <= result.min() <= result.max() <= 1.0


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF", "AVIF"])
def test_a_phone_photo_reads_alike_in_each_camera_format(fmt: str) -> None:
    """A photo of a digit on paper as phones save it: the sensor's pixels sideways and an
    EXIF orientation (6: turn 90 degrees clockwise) to show it upright; JPEG, HEIC (iPhones)
    or AVIF, all lossy."""
    upright = digit_on_paper(_mnist_digit())
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(upright.rotate(90, expand=True), fmt, exif=exif.tobytes(), quality=90)
    result = prepare_image(data, method="mnist", shape=(28, 28, 1), max_pixels=10**6)
    assert np.abs(result - preprocess(upright, "mnist", (28, 28, 1))).mean() < 0.02


def test_mnist_digit_keeps_its_mnist_geometry() -> None:
    result = preprocess(Image.open(DATA / "7.png"), "mnist", (28, 28, 1))[..., 0]
    rows = np.flatnonzero(result.max(axis=1) > 0)
    columns = np.flatnonzero(result.max(axis=0) > 0)
    assert max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1 in (20, 21, 22)
    total = result.sum()
    centre = (np.indices(result.shape) * result).reshape(2, -1).sum(axis=1) / total
    assert np.allclose(centre, 13.5, atol=1.0)


def test_dark_ink_on_paper_looks_like_the_white_on_black_original() -> None:
    original = preprocess(Image.open(DATA / "7.png"), "mnist", (28, 28, 1))
    photo = preprocess(digit_on_paper(_mnist_digit()), "mnist", (28, 28, 1))
    assert np.abs(original - photo).mean() < 0.06


def test_specks_apart_from_the_digit_do_not_shrink_it() -> None:
    clean = digit_on_paper(_mnist_digit())
    dusty = clean.copy()
    for corner in [(3, 3), (dusty.width - 5, dusty.height - 5), (dusty.width - 6, 10)]:
        dusty.paste((40, 40, 40), (*corner, corner[0] + 2, corner[1] + 2))  # dust: 2x2 px dark dots
    original = preprocess(clean, "mnist", (28, 28, 1))
    # Not bit-identical: the dust's ink takes part in the image's contrast stretch.
    assert np.abs(preprocess(dusty, "mnist", (28, 28, 1)) - original).mean() < 0.01


def test_a_photo_lit_unevenly_reads_like_one_lit_evenly() -> None:
    even = digit_on_paper(_mnist_digit(), scale=20, margin=300)  # 1160 px, the digit 560 px
    pixels = np.asarray(even, dtype=np.float32)
    width = pixels.shape[1]
    falloff = np.linspace(1.0, 0.5, width, dtype=np.float32)[None, :, None]  # a lamp on the left
    uneven = Image.fromarray((pixels * falloff).astype(np.uint8))
    original = preprocess(even, "mnist", (28, 28, 1))
    assert np.abs(preprocess(uneven, "mnist", (28, 28, 1)) - original).mean() < 0.03


def test_a_shadow_across_a_corner_is_not_ink() -> None:
    even = digit_on_paper(_mnist_digit(), scale=20, margin=300)  # 1160 px, the digit 560 px
    pixels = np.asarray(even, dtype=np.float32)
    rows, columns = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    # A phone's shadow over the top right corner, its edge at 30 degrees: a wedge narrower
    # than the wide closing where it meets the border.
    wedge = (columns - 700) * np.sin(np.pi / 6) - rows * np.cos(np.pi / 6) > 0
    shadow = np.asarray(Image.fromarray(np.where(wedge, 140, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(4)))
    shaded = Image.fromarray((pixels * (shadow[..., None] / 255.0)).astype(np.uint8))
    original = preprocess(even, "mnist", (28, 28, 1))
    assert np.abs(preprocess(shaded, "mnist", (28, 28, 1)) - original).mean() < 0.03


@pytest.mark.parametrize("grid", [False, True], ids=["ruled", "graph"])
def test_the_lines_of_notebook_paper_are_not_ink(grid: bool) -> None:
    plain = digit_on_paper(_mnist_digit(), scale=20, margin=300)
    pixels = np.array(plain)
    pixels[np.arange(pixels.shape[0]) % 70 < 3] = (150, 180, 220)  # light blue rules, 3 px
    if grid:
        pixels[:, np.arange(pixels.shape[1]) % 70 < 3] = (150, 180, 220)
    original = preprocess(plain, "mnist", (28, 28, 1))
    assert np.abs(preprocess(Image.fromarray(pixels), "mnist", (28, 28, 1)) - original).mean() < 0.03


def test_a_sheet_on_a_darker_desk_is_cropped_to() -> None:
    sheet = digit_on_paper(_mnist_digit(), scale=20, margin=200)  # 960 px, the digit 560 px
    photo = Image.new("RGB", (1400, 1200), (70, 50, 40))  # dark wood around it
    photo.paste(sheet, (240, 120))
    original = preprocess(sheet, "mnist", (28, 28, 1))
    # The sheet is analysed at 336 px here, at 512 px alone: strokes are drawn a little
    # differently, the box is the same (0.40 before the sheet was found: the desk was ink).
    assert np.abs(preprocess(photo, "mnist", (28, 28, 1)) - original).mean() < 0.06


def test_parts_of_a_broken_digit_are_all_kept() -> None:
    # A 7 whose bar and stem do not touch: both parts are the digit, neither a speck.
    drawing = Image.new("L", (200, 200), 255)
    drawing.paste(0, (40, 30, 160, 50))  # the bar, 120 x 20 px
    drawing.paste(0, (120, 62, 140, 180))  # the stem, 20 x 118 px, 12 px below the bar
    result = preprocess(drawing, "mnist", (28, 28, 1))[..., 0]
    rows = np.flatnonzero(result.max(axis=1) > 0.1)
    assert rows[-1] - rows[0] + 1 in (20, 21, 22)  # the whole 150 px height scaled to 20 px


def test_transparent_drawing_is_flattened_onto_white() -> None:
    digit = _mnist_digit()
    drawing = Image.new("RGBA", (140, 140), (0, 0, 0, 0))
    ink = Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC)
    drawing.paste(Image.new("RGBA", ink.size, (0, 0, 0, 255)), (14, 14), ink)
    result = preprocess(drawing, "mnist", (28, 28, 1))
    original = preprocess(Image.open(DATA / "7.png"), "mnist", (28, 28, 1))
    assert result.max() == pytest.approx(1.0, abs=0.05)
    assert np.abs(original - result).mean() < 0.06


def test_exif_orientation_is_applied() -> None:
    tall = Image.new("L", (40, 80), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(tall, "JPEG", exif=exif)
    assert decode_image(data, max_pixels=10**6).size == (80, 40)


def test_first_frame_of_an_animation_is_used() -> None:
    frames = [Image.new("L", (28, 28), value) for value in (0, 255)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(decode_image(data, max_pixels=10**6).convert("L")).max() == 0


def test_sixteen_bit_image_is_scaled_not_clipped() -> None:
    values = np.zeros((28, 28), dtype=np.uint16)
    values[8:20, 12:16] = 32_000  # mid-grey ink in 16 bits
    result = preprocess(Image.fromarray(values), "none", (28, 28, 1))
    assert result.max() == pytest.approx(32_000 / 65_535, abs=0.01)


def test_cifar_is_resized_by_the_shorter_side_and_centre_cropped() -> None:
    image = Image.new("RGB", (128, 64), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 32, 64))  # a blue band on the left quarter, cropped away
    result = preprocess(image, "cifar10", (32, 32, 3))
    assert result.shape == (32, 32, 3)
    assert result[..., 0].min() > 0.9 and result[..., 2].max() < 0.1


def test_cifar_crop_takes_the_centre_at_fractional_edges() -> None:
    # 256x192 shrinks to 42.67x32: the central 192x192 square must become the 32x32 input
    # exactly, with no column of the frame around it (whole-pixel rounding took a third of one).
    image = Image.new("RGB", (256, 192), (255, 0, 0))
    image.paste((0, 0, 255), (32, 0, 224, 192))
    result = preprocess(image, "cifar10", (32, 32, 3))
    assert result[..., 0].max() < 0.02 and result[..., 2].min() > 0.98


def test_blank_image_gives_a_blank_input() -> None:
    assert preprocess(Image.new("RGB", (50, 50), "white"), "mnist", (28, 28, 1)).max() == 0.0


def test_declared_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode_image(png_declaring(50_000, 50_000), max_pixels=40_000_000)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image", encode(Image.new("L", (64, 64), 128))[:60], b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"],
    ids=["empty", "text", "truncated", "pdf"],
)
def test_undecodable_data_is_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        decode_image(data, max_pixels=10**6)


def _bar_digit(side: int, stroke: int) -> Image.Image:
    """A "7" of two strokes `stroke` px thick, white on black, filling a `side` px square."""
    drawing = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(drawing)
    draw.line([(0, stroke // 2), (side - 1, stroke // 2)], fill=255, width=stroke)
    draw.line([(side - stroke // 2, 0), (side // 3, side - 1)], fill=255, width=stroke)
    return drawing


def test_a_thick_stroke_filling_the_frame_keeps_its_inside() -> None:
    """A bold, blurry digit cropped tight (an upscaled low-resolution scan): strokes a sixth
    of the width that touch the edges must not be taken for background, leaving outlines."""
    bold = _bar_digit(200, 34).filter(ImageFilter.GaussianBlur(4))
    dim = Image.eval(bold, lambda level: 20 + level * 200 // 255)  # a scan: not quite black and white
    result = preprocess(dim, "mnist", (28, 28, 1))[..., 0]
    reference = preprocess(bold.resize((28, 28), Image.Resampling.BOX), "mnist", (28, 28, 1))[..., 0]
    inside = reference > 0.8
    assert inside.sum() > 20
    assert result[inside].mean() > 0.7, "the inside of the strokes was erased"


def test_a_thin_pen_line_in_a_phone_photo_is_kept() -> None:
    """A ballpoint digit (3 px) in a 3000 x 2250 phone photo, saved as JPEG, under a lamp's
    falloff: the line must survive the reduced-scale decoding and the lighting correction."""
    line = Image.new("L", (3000, 2250), 0)
    ImageDraw.Draw(line).line([(1100, 700), (1900, 700), (1400, 1600)], fill=255, width=3)
    strength = np.asarray(line, np.float32) / 255
    falloff = np.linspace(250, 140, 3000, dtype=np.float32)[None, :]
    photo = decode_image(
        encode(Image.fromarray((falloff * (1 - 0.85 * strength)).astype(np.uint8)), "JPEG", quality=85),
        max_pixels=10**8,
    )
    plain = Image.fromarray((245 * (1 - 0.85 * strength)).astype(np.uint8))
    result = preprocess(photo, "mnist", (28, 28, 1))
    assert result.max() > 0.9
    assert np.abs(result - preprocess(plain, "mnist", (28, 28, 1))).mean() < 0.03


def test_a_marker_digit_on_squared_paper_keeps_its_inside() -> None:
    """A bold marker digit photographed close on squared paper under uneven light: the
    grid is not ink and the marker's wide strokes are not paper."""
    ink = np.asarray(_bar_digit(520, 90).filter(ImageFilter.GaussianBlur(2)), np.float32) / 255
    paper = np.full((640, 640), 235, np.float32)
    paper[np.arange(640) % 40 < 2] = 190
    paper[:, np.arange(640) % 40 < 2] = 190
    light = np.linspace(1.0, 0.6, 640, dtype=np.float32)[None, :]
    page = paper.copy()
    page[60:580, 60:580] *= 1 - 0.9 * ink
    photo = Image.fromarray((page * light).astype(np.uint8))
    result = preprocess(photo, "mnist", (28, 28, 1))[..., 0]
    reference = preprocess(Image.fromarray((ink * 255).astype(np.uint8)), "mnist", (28, 28, 1))[..., 0]
    inside = reference > 0.8
    assert result[inside].mean() > 0.7, "the inside of the marker strokes was erased"
    assert np.abs(result - reference).mean() < 0.06


def test_a_phone_photo_with_a_shadow_beside_the_digit_reads_like_one_without() -> None:
    """A phone's shadow over half the page, its edge slanted, the digit in the light: the
    lit part is not a sheet on a desk, and the shadow is not ink."""
    even = digit_on_paper(_mnist_digit(), scale=12, margin=200)  # 736 px
    pixels = np.asarray(even, dtype=np.float32)
    rows, columns = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    shade = np.where(columns + 0.6 * rows > 780, 0.6, 1.0).astype(np.float32)
    shade = np.asarray(Image.fromarray((shade * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(6)), np.float32)
    digit_area = (rows > 200) & (rows < 536) & (columns > 200) & (columns < 536)
    shade[digit_area] = 255  # the digit itself in the light
    shaded = Image.fromarray((pixels * (shade[..., None] / 255.0)).astype(np.uint8))
    original = preprocess(even, "mnist", (28, 28, 1))
    assert np.abs(preprocess(shaded, "mnist", (28, 28, 1)) - original).mean() < 0.03


def test_a_small_digit_in_a_large_photo_of_paper_is_found() -> None:
    """A digit 22 px high in a 500 x 460 photo of paper with a gentle gradient and sensor
    noise, JPEG: its ink covers under 0.1% of the photo, and the paper's grain must not be
    taken for the strongest ink."""
    digit = Image.fromarray(_mnist_digit()).resize((22, 22), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(0)
    paper = 225 - np.linspace(0, 30, 500, dtype=np.float32)[None, :] + rng.normal(0, 4, (460, 500))
    ink = np.zeros((460, 500), np.float32)
    ink[300:322, 120:142] = np.asarray(digit, np.float32) / 255
    photo = Image.fromarray(np.clip(paper * (1 - 0.85 * ink), 0, 255).astype(np.uint8)).convert("RGB")
    result = preprocess(decode_image(encode(photo, "JPEG", quality=85), max_pixels=10**6), "mnist", (28, 28, 1))
    reference = preprocess(digit, "mnist", (28, 28, 1))
    assert np.abs(result - reference).mean() < 0.06


def test_a_thin_pen_digit_in_the_shadowed_part_of_the_page_is_read() -> None:
    """A phone's shadow over most of the page, the digit in the shadow: the lit band is not
    a sheet on a darker desk, although the pen line is one pixel wide in the thumbnail
    the analysis runs on (where a 3x3 median would erase it)."""
    rows, columns = np.mgrid[0:420, 0:640]
    lit = columns + 0.1 * rows < 220  # the lit part a band that fills its box, as a sheet would
    paper = np.where(lit, 232.0, 128.0)
    paper = np.asarray(Image.fromarray(paper.astype(np.uint8)).filter(ImageFilter.GaussianBlur(5)), np.float32)
    line = Image.new("L", (640, 420), 0)
    ImageDraw.Draw(line).line([(380, 140), (500, 140), (420, 300)], fill=255, width=10)
    ink = np.asarray(line, np.float32) / 255
    photo = Image.fromarray((paper * (1 - 0.8 * ink)).astype(np.uint8))
    result = preprocess(photo, "mnist", (28, 28, 1))
    reference = preprocess(Image.fromarray((ink * 255).astype(np.uint8)), "mnist", (28, 28, 1))
    assert np.abs(result - reference).mean() < 0.05


def test_a_faint_bar_touching_the_edge_of_a_tight_crop_is_kept() -> None:
    """A blurry seven cropped tight from an upscaled 8x8 scan (`tools/make_realworld_digits.py`'s
    `tight` kind, tuning seed), its bar half as dark as its stem and cut by the top edge:
    with no paper around the digit, the bar is not a shadow's edge."""
    result = preprocess(Image.open(DATA / "tight_seven.png"), "mnist", (28, 28, 1))[..., 0]
    inked_columns = (result[:10] > 0.5).any(axis=0).sum()
    assert inked_columns >= 10, f"the bar was taken for a shadow and erased: {inked_columns} columns inked at the top"


def test_lit_paper_beside_a_shadow_over_the_border_is_not_ink() -> None:
    """A phone photo of a zero (`tools/make_realworld_digits.py`'s `shadow` kind, tuning seed)
    whose hard-edged shadow covers most of the border, so the border reads dark: the lit part
    of the page is paper, not a light stroke on a dark board, and the zero keeps its hole."""
    result = preprocess(Image.open(DATA / "shadowed_zero.jpg"), "mnist", (28, 28, 1))[..., 0]
    hole = float(result[11:17, 12:16].mean())
    assert hole < 0.3, f"the lit paper was read as ink: the zero's middle is {hole:.2f} inked"


def test_a_shadow_inside_the_page_is_not_ink() -> None:
    """A round shadow inside the page, away from the border and beside the digit: the
    border is evenly lit, yet the shadow must be evened out, not read as a dark blob."""
    even = digit_on_paper(_mnist_digit(), scale=12, margin=300)  # 936 px, the digit at 300-636
    pixels = np.asarray(even, dtype=np.float32)
    rows, columns = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    disc = (rows - 470) ** 2 + (columns - 720) ** 2 < 200**2
    shade = np.where(disc & (columns > 660), 0.55, 1.0)
    shade = np.asarray(Image.fromarray((shade * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(10)), np.float32)
    shaded = Image.fromarray((pixels * (shade[..., None] / 255.0)).astype(np.uint8))
    original = preprocess(even, "mnist", (28, 28, 1))
    assert np.abs(preprocess(shaded, "mnist", (28, 28, 1)) - original).mean() < 0.03
