"""Build the real-world digit sets in tests/data/realworld/digits/{tune,test}/ (not MNIST).

Digits as people upload them, in kinds (the second part of each file name):

- `scan`: UCI handwritten digits (scikit-learn's `load_digits`, 8x8 scans from 43 writers)
  upscaled to 64-160 px, dark ink on paper or light on a dark ground, with margins;
- `tight`: bold, blurry digits cropped tight to 200 x 200 (strokes near a sixth of the
  width, touching the edges): an upscaled low-resolution scan or a marker photographed
  close, in both polarities;
- `upscaled`: digits drawn at 8-20 px, enlarged 6-20 times by nearest, bilinear, bicubic or
  Lanczos filters, with a margin, in both polarities;
- `font`: handwriting fonts from Debian's packages on paper under uneven light, rotated,
  blurred, some small in a photo-sized frame, some transparent PNGs as paint programs save;
- `pen`: random pen trajectories of each digit's shape (`STROKES`), from hairline to marker
  width, dark on paper or light on dark, scanned (PNG) or saved as JPEG;
- `colour`: the same in red, green, purple, orange or blue ink on white or tinted paper;
- `squared`: pen or marker on squared or ruled notebook paper, photographed (JPEG);
- `shadow`: phone photos: a digit on paper with a shadow across it, vignetting, sensor
  noise and phone-camera JPEG;
- `mouse`: drawn with a mouse as on the service's page: white strokes 20 px wide on a
  280 x 280 black canvas, PNG;
- `margin`: a small digit in a large, plain frame.

The two splits share no UCI scan (even indices go to `tune/`, odd to `test/`) and no font
(`TUNE_FONTS`, `TEST_FONTS`), and their pen strokes come from other random seeds. Choices
(preprocessing, thresholds, models, ensembles) are made on `tune/`; `test/` is only
reported. File names are `<label>_<kind>_<index>.<ext>`. Run once (needs scikit-learn and
the fonts: `apt-get install fonts-comic-neue fonts-dkg-handwriting fonts-breip fonts-bwht
fonts-femkeklaver fonts-humor-sans fonts-dancingscript fonts-kaushanscript fonts-dejavu
fonts-liberation fonts-freefont-ttf`); the images are committed, so the tests need neither:

    .venv/bin/python tools/make_realworld_digits.py

Choices that the committed tuning split is too small to tell apart (a few images each way)
are made on a larger one drawn from the same sources, kept out of git:

    .venv/bin/python tools/make_realworld_digits.py --split tune --per-kind 200 --seed 1 --out runs/digits-tune-200
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "realworld" / "digits"
FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
TUNE_FONTS = (
    "ComicNeue-Regular.otf", "ComicNeue-Bold.otf", "ComicNeue-Italic.otf", "dkg.ttf", "dkgBd.ttf",
    "BecauseWeBuild-Regular.otf", "BecauseWeConnect-Regular.otf", "DancingScript-Regular.otf",
    "LiberationSans-Regular.ttf", "DejaVuSans.ttf",
)  # fmt: skip
TEST_FONTS = (
    "Breip.ttf", "BecauseWeLearn-Regular.otf", "BecauseWeMentor-Regular.otf", "femkeklaver.ttf",
    "Humor-Sans.ttf", "KaushanScript-Regular.otf", "DancingScript-Bold.otf", "ComicNeue-LightItalic.otf",
    "FreeSans.ttf", "DejaVuSerif.ttf",
)  # fmt: skip
PER_KIND = 50
"""Images of each kind in each split, five of each digit: one image is 2 points of a kind."""

Point = tuple[float, float]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> list[Point]:
    """Points of an elliptic arc in the unit square, angles in degrees (0 right, 90 down)."""
    steps = max(4, int(abs(end - start) / 10))
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, steps)
    ]


STROKES: dict[int, list[list[Point]]] = {
    0: [_arc(0.5, 0.5, 0.3, 0.45, -100, 265)],
    1: [[(0.36, 0.2), (0.52, 0.05), (0.5, 0.95)]],
    2: [[*_arc(0.5, 0.3, 0.3, 0.24, -160, 30), (0.18, 0.94), (0.86, 0.94)]],
    3: [_arc(0.5, 0.28, 0.28, 0.22, -160, 90) + _arc(0.5, 0.7, 0.3, 0.22, -90, 160)],
    4: [[(0.6, 0.05), (0.15, 0.65), (0.85, 0.65)], [(0.66, 0.3), (0.66, 0.95)]],
    5: [[(0.8, 0.06), (0.32, 0.06), (0.29, 0.46), *_arc(0.48, 0.66, 0.3, 0.26, -130, 150)]],
    6: [[(0.72, 0.05), (0.45, 0.2), (0.3, 0.45), (0.27, 0.68), *_arc(0.5, 0.7, 0.23, 0.22, 180, 540)]],
    7: [[(0.15, 0.08), (0.85, 0.08), (0.4, 0.95)]],
    8: [_arc(0.5, 0.27, 0.2, 0.2, 90, 450), _arc(0.5, 0.72, 0.25, 0.23, -90, 270)],
    9: [_arc(0.5, 0.3, 0.24, 0.22, 0, 360), [(0.74, 0.3), (0.7, 0.95)]],
}
"""Each digit's pen strokes, polylines in the unit square (x right, y down)."""


def pen_digit(rng: random.Random, label: int, size: int, width: float) -> Image.Image:
    """A digit drawn along a random pen trajectory of its shape: white ink on black `L`,
    `size` px square, strokes `width` px wide (anti-aliased, round ends), filling about
    80% of the height; the shape slanted, sheared, squeezed and its points wobbled."""
    scale = 4  # drawn large, reduced: anti-aliased edges
    canvas = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    angle = math.radians(rng.uniform(-14, 14))
    shear = rng.uniform(-0.25, 0.15)
    squeeze = rng.uniform(0.6, 1.05)
    wobble = rng.uniform(0.0, 0.035)
    phase = [rng.uniform(0, 2 * math.pi) for _ in range(4)]
    pen = max(1, round(width * scale))
    for stroke in STROKES[label]:
        points = []
        for index, (x, y) in enumerate(stroke):
            x += wobble * math.sin(3 * index / len(stroke) * math.pi + phase[0]) + rng.gauss(0, wobble / 3)
            y += wobble * math.sin(2 * index / len(stroke) * math.pi + phase[1]) + rng.gauss(0, wobble / 3)
            x, y = (x - 0.5) * squeeze + shear * (y - 0.5), y - 0.5
            x, y = x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)
            points.append(((0.5 + 0.8 * x) * size * scale, (0.5 + 0.8 * y) * size * scale))
        draw.line(points, fill=255, width=pen, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    return canvas.resize((size, size), Image.Resampling.BOX)


def paper(rng: random.Random, size: tuple[int, int], *, tint: bool = False) -> Image.Image:
    """A paper-coloured background with a lighting gradient and sensor noise."""
    width, height = size
    if tint:
        base = np.array([rng.randint(170, 250) for _ in range(3)], dtype=np.float32)
    else:
        base = np.array([rng.randint(215, 250), rng.randint(210, 245), rng.randint(195, 235)], dtype=np.float32)
    gradient = np.linspace(0, rng.uniform(-35, 10), width, dtype=np.float32)[np.newaxis, :, np.newaxis]
    vertical = np.linspace(0, rng.uniform(-20, 10), height, dtype=np.float32)[:, np.newaxis, np.newaxis]
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 4, (height, width, 1)).astype(np.float32)
    pixels = np.clip(base + gradient + vertical + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def ink_colour(rng: random.Random) -> tuple[int, int, int]:
    """Pen or pencil: black, blue or graphite grey."""
    return rng.choice([(20, 20, 25), (25, 35, 120), (70, 70, 75), (10, 10, 60)])


def on_paper(rng: random.Random, ink: Image.Image, frame: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    """`ink` (white-on-black `L` mask) in `colour` at a random place on paper of `frame` px."""
    canvas = paper(rng, frame)
    offset = (rng.randint(0, frame[0] - ink.width), rng.randint(0, frame[1] - ink.height))
    canvas.paste(Image.new("RGB", ink.size, colour), offset, ink)
    return canvas


def on_dark(rng: random.Random, ink: Image.Image, frame: tuple[int, int]) -> Image.Image:
    """`ink` light on a dark ground (a blackboard, a dark canvas) of `frame` px, `L`."""
    canvas = Image.new("L", frame, rng.randint(0, 45))
    offset = (rng.randint(0, frame[0] - ink.width), rng.randint(0, frame[1] - ink.height))
    canvas.paste(Image.new("L", ink.size, rng.randint(190, 255)), offset, ink)
    return canvas


class Sources:
    """The raw digits of one split: UCI scans, fonts and pen strokes, none shared with the other."""

    def __init__(self, split: str, rng: random.Random) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        parity = 0 if split == "tune" else 1
        self.rng = rng
        self.uci = {
            label: [digits.images[i] / 16.0 for i in np.flatnonzero(digits.target == label) if i % 2 == parity]
            for label in range(10)
        }
        names = TUNE_FONTS if split == "tune" else TEST_FONTS
        found = {path.name: path for folder in FONT_DIRS if folder.is_dir() for path in folder.rglob("*.[ot]tf")}
        self.fonts = [found[name] for name in names if name in found]
        if len(self.fonts) < 6:
            raise SystemExit(f"install the font packages first (found {len(self.fonts)} of {len(names)} fonts)")

    def scan(self, label: int, side: int) -> Image.Image:
        """A UCI scan of `label`, `side` px, white on black `L` (bicubic)."""
        strength = self.rng.choice(self.uci[label])
        return Image.fromarray((strength * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)

    def font(self, label: int, size: int, *, bold: int = 0) -> Image.Image:
        """`label` in a random font of the split, glyph `size` px, rotated, cropped to its
        ink; white on black `L`; thickened by a max filter of `bold` px."""
        font = ImageFont.truetype(str(self.rng.choice(self.fonts)), size)
        layer = Image.new("L", (size * 3, size * 3), 0)
        ImageDraw.Draw(layer).text((size, size // 2), str(label), fill=255, font=font)
        if bold >= 3:
            layer = layer.filter(ImageFilter.MaxFilter(bold | 1))
        layer = layer.rotate(self.rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC)
        return layer.crop(layer.getbbox() or (0, 0, 1, 1))

    def pen(self, label: int, size: int, width: float) -> Image.Image:
        """A pen trajectory of `label` (`pen_digit`), cropped to its ink."""
        layer = pen_digit(self.rng, label, size, width)
        return layer.crop(layer.getbbox() or (0, 0, 1, 1))

    def any_digit(self, label: int, size: int) -> Image.Image:
        """A scan, a font or a pen stroke, about `size` px tall, white on black `L`."""
        choice = self.rng.random()
        if choice < 0.3:
            return self.scan(label, size)
        if choice < 0.6:
            return self.font(label, size)
        return self.pen(label, size, self.rng.uniform(0.04, 0.14) * size)


def make_scan(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    side = rng.choice([64, 96, 128, 160])
    ink = src.scan(label, side)
    margin = rng.randint(side // 8, side // 2)
    frame = (side + 2 * margin + rng.randint(0, side // 2), side + 2 * margin)
    image = on_paper(rng, ink, frame, ink_colour(rng)) if rng.random() < 0.5 else on_dark(rng, ink, frame)
    return image, rng.choice(["png", "jpg"])


def make_tight(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    if rng.random() < 0.5:
        low = Image.fromarray((rng.choice(src.uci[label]) * 255).astype(np.uint8))
    else:
        low = src.pen(label, 24, rng.uniform(3.5, 5.0)).resize((8, 8), Image.Resampling.BOX)
    filters = [Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.LANCZOS]
    ink = low.resize((200, 200), rng.choice(filters))
    if rng.random() < 0.5:
        ink = ink.filter(ImageFilter.GaussianBlur(rng.uniform(2, 6)))
    levels = np.asarray(ink, dtype=np.float32) / 255.0
    if rng.random() < 0.5:  # white on black
        pixels = rng.randint(0, 30) + levels * rng.randint(180, 225)
    else:
        pixels = rng.randint(220, 255) - levels * rng.randint(180, 220)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), rng.choice(["png", "jpg"])


def make_upscaled(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    small = rng.randint(8, 20)
    ink = src.any_digit(label, 4 * small)
    ink = ink.resize((max(1, ink.width // 4), max(1, ink.height // 4)), Image.Resampling.BOX)
    factor = rng.randint(6, 20)
    resample = rng.choice(
        [Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS]
    )
    ink = ink.resize((ink.width * factor, ink.height * factor), resample)
    frame = (ink.width + rng.randint(20, 120), ink.height + rng.randint(20, 120))
    if rng.random() < 0.5:
        image = on_dark(rng, ink, frame)
    else:
        canvas = Image.new("L", frame, rng.randint(225, 255))
        canvas.paste(
            Image.new("L", ink.size, rng.randint(0, 40)),
            ((frame[0] - ink.width) // 2, (frame[1] - ink.height) // 2),
            ink,
        )
        image = canvas
    return image, "png"


def make_font(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    glyph = rng.randint(48, 220)
    ink = src.font(label, glyph, bold=3 if rng.random() < 0.3 else 0)
    style = rng.random()
    if style < 0.12:  # a drawing exported with a transparent background
        canvas = Image.new("RGBA", (ink.width + 40, ink.height + 40), (0, 0, 0, 0))
        canvas.paste(Image.new("RGBA", ink.size, (*ink_colour(rng), 255)), (20, 20), ink)
        return canvas, "png"
    frame = (
        (rng.randint(600, 1000), rng.randint(500, 800))
        if style < 0.25
        else (ink.width + rng.randint(10, 200), ink.height + rng.randint(10, 160))
    )
    image = on_paper(rng, ink, frame, ink_colour(rng))
    if rng.random() < 0.4:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return image, "jpg" if max(frame) > 400 or rng.random() < 0.6 else "png"


def make_pen(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    size = rng.randint(60, 400)
    width = size * rng.choice([0.01, 0.03, 0.06, 0.1, 0.15, 0.2])  # hairline to marker
    ink = src.pen(label, size, max(0.8, width))
    frame = (ink.width + rng.randint(16, size // 2 + 16), ink.height + rng.randint(16, size // 2 + 16))
    image = on_paper(rng, ink, frame, ink_colour(rng)) if rng.random() < 0.6 else on_dark(rng, ink, frame)
    return image, rng.choice(["png", "jpg"])


def make_colour(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    size = rng.randint(60, 300)
    ink = src.any_digit(label, size)
    colour = rng.choice([(200, 30, 30), (30, 140, 50), (120, 40, 150), (230, 120, 20), (30, 80, 220)])
    frame = (ink.width + rng.randint(20, 160), ink.height + rng.randint(20, 160))
    canvas = paper(rng, frame, tint=rng.random() < 0.5)
    canvas.paste(
        Image.new("RGB", ink.size, colour),
        (rng.randint(0, frame[0] - ink.width), rng.randint(0, frame[1] - ink.height)),
        ink,
    )
    return canvas, "png" if rng.random() < 0.25 else "jpg"


def make_squared(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    size = rng.randint(160, 420)
    ink = src.pen(label, size, size * rng.uniform(0.02, 0.14)) if rng.random() < 0.6 else src.font(label, size)
    frame = (ink.width + rng.randint(60, 400), ink.height + rng.randint(60, 300))
    canvas = np.array(paper(rng, frame))
    pitch = rng.randint(18, 60)
    thickness = rng.randint(1, 3)
    line = rng.choice([(150, 180, 220), (170, 190, 215), (190, 190, 195), (200, 160, 160)])
    offset = rng.randint(0, pitch)
    canvas[(np.arange(frame[1]) + offset) % pitch < thickness] = line
    if rng.random() < 0.6:  # squared, else ruled
        canvas[:, (np.arange(frame[0]) + offset) % pitch < thickness] = line
    image = Image.fromarray(canvas)
    image.paste(
        Image.new("RGB", ink.size, ink_colour(rng)),
        (rng.randint(0, frame[0] - ink.width), rng.randint(0, frame[1] - ink.height)),
        ink,
    )
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2)))
    return image, "jpg"


def make_shadow(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    size = rng.randint(150, 400)
    ink = src.any_digit(label, size)
    frame = (rng.randint(560, 900), rng.randint(420, 700))
    pixels = np.asarray(on_paper(rng, ink, frame, ink_colour(rng)), dtype=np.float32)
    rows, columns = np.mgrid[0 : frame[1], 0 : frame[0]]
    angle = rng.uniform(0, 2 * math.pi)
    edge = (columns - rng.uniform(0.2, 0.8) * frame[0]) * math.cos(angle) + (
        rows - rng.uniform(0.2, 0.8) * frame[1]
    ) * math.sin(angle)
    shade = np.where(edge > 0, rng.uniform(0.5, 0.8), 1.0).astype(np.float32)
    shade = (
        np.asarray(
            Image.fromarray((shade * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(3, 20))),
            dtype=np.float32,
        )
        / 255
    )
    centre = ((columns / frame[0] - 0.5) ** 2 + (rows / frame[1] - 0.5) ** 2).astype(np.float32)
    vignette = 1.0 - rng.uniform(0.05, 0.3) * centre
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 5, pixels.shape).astype(np.float32)
    photo = np.clip(pixels * (shade * vignette)[..., None] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(photo), "jpg"


def make_mouse(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    ink = src.pen(label, rng.randint(120, 250), 20)  # the page's INK_WIDTH on its 280 px canvas
    canvas = Image.new("RGB", (280, 280), (0, 0, 0))
    left, top = rng.randint(0, max(0, 280 - ink.width)), rng.randint(0, max(0, 280 - ink.height))
    canvas.paste(Image.new("RGB", ink.size, (255, 255, 255)), (left, top), ink)
    return canvas, "png"


def make_margin(src: Sources, rng: random.Random, label: int) -> tuple[Image.Image, str]:
    size = rng.randint(40, 90)
    ink = src.any_digit(label, size)
    frame = (rng.randint(400, 800), rng.randint(300, 600))
    if rng.random() < 0.6:  # a photo of paper: JPEG
        return on_paper(rng, ink, frame, ink_colour(rng)), "jpg"
    return on_dark(rng, ink, frame), "png"


KINDS: dict[str, Callable[[Sources, random.Random, int], tuple[Image.Image, str]]] = {
    "scan": make_scan,
    "tight": make_tight,
    "upscaled": make_upscaled,
    "font": make_font,
    "pen": make_pen,
    "colour": make_colour,
    "squared": make_squared,
    "shadow": make_shadow,
    "mouse": make_mouse,
    "margin": make_margin,
}


SEEDS = {"tune": 2026, "test": 7919}
"""The random seed of each split: the committed images are these seeds' first `PER_KIND` of each kind."""


def write_split(split: str, folder: Path, per_kind: int, seed: int) -> None:
    """Write `per_kind` images of each kind of `split`'s sources (fonts, UCI scans) to `folder`,
    replacing what it held."""
    rng = random.Random(seed)
    sources = Sources(split, rng)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*"):
        old.unlink()
    index = 0
    for kind, make in KINDS.items():
        for item in range(per_kind):
            label = item % 10
            image, ext = make(sources, rng, label)
            path = folder / f"{label}_{kind}_{index:04d}.{ext}"
            if ext == "jpg":
                image.convert("RGB").save(path, quality=rng.randint(55, 92))
            else:
                image.save(path, optimize=True)
            index += 1
    print(f"wrote {index} images to {folder} with {len(sources.fonts)} fonts")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=sorted(SEEDS), help="one split only; default: both")
    parser.add_argument("--per-kind", type=int, default=PER_KIND, help="images of each kind")
    parser.add_argument("--seed", type=int, help="another random seed (a larger, uncommitted tuning set)")
    parser.add_argument("--out", type=Path, help="folder for --split (default: the committed one)")
    args = parser.parse_args(argv)
    for split in [args.split] if args.split else sorted(SEEDS, reverse=True):
        folder = args.out if args.out and args.split else OUT / split
        write_split(split, folder, args.per_kind, SEEDS[split] if args.seed is None else args.seed)


if __name__ == "__main__":
    main()
