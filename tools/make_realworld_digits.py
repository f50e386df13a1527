"""Build the real-world digit test set in tests/data/realworld/digits/ (not MNIST).

Two sources, saved as a person would upload them:

- UCI handwritten digits (scikit-learn's `load_digits`, 1,797 8x8 scans from 43 writers):
  upscaled to 64-160 px, dark ink on paper-coloured backgrounds and light-on-dark, with
  margins, offsets and JPEG compression.
- Digits drawn with Pillow in handwriting-style fonts from Debian's font packages
  (fonts-comic-neue, fonts-dkg-handwriting, fonts-breip, fonts-bwht, fonts-femkeklaver,
  fonts-humor-sans, fonts-dancingscript, fonts-kaushanscript) on paper-coloured
  backgrounds with uneven lighting and noise, offsets, rotations, blur, JPEG compression,
  a few small digits in a large photo-sized frame, and transparent PNGs as paint
  programs export them.

File names are `<label>_<source>_<index>.<ext>`. Run once (needs scikit-learn and the
fonts); the images are committed, so the tests need neither:

    .venv/bin/python tools/make_realworld_digits.py
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "realworld" / "digits"
FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
FONT_NAMES = (
    "ComicNeue-Regular.otf", "ComicNeue-Bold.otf", "ComicNeue-Italic.otf", "dkg.ttf", "dkgBd.ttf",
    "Breip.ttf", "BecauseWeLearn-Regular.otf", "BecauseWeBuild-Regular.otf", "femkeklaver.ttf",
    "Humor-Sans.ttf", "DancingScript-Regular.otf", "KaushanScript-Regular.otf",
)  # fmt: skip


def paper(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A paper-coloured background with a lighting gradient and sensor noise."""
    width, height = size
    base = np.array([rng.randint(215, 250), rng.randint(210, 245), rng.randint(195, 235)], dtype=np.float32)
    gradient = np.linspace(0, rng.uniform(-35, 10), width, dtype=np.float32)[np.newaxis, :, np.newaxis]
    vertical = np.linspace(0, rng.uniform(-20, 10), height, dtype=np.float32)[:, np.newaxis, np.newaxis]
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 4, (height, width, 1)).astype(np.float32)
    pixels = np.clip(base + gradient + vertical + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def ink_colour(rng: random.Random) -> tuple[int, int, int]:
    """Pen or pencil: black, blue or graphite grey."""
    return rng.choice([(20, 20, 25), (25, 35, 120), (70, 70, 75), (10, 10, 60)])


def uci_digits(rng: random.Random, per_class: int) -> list[tuple[int, Image.Image, str]]:
    """UCI scans upscaled and saved dark-on-light or light-on-dark."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    samples = []
    for label in range(10):
        indices = [i for i, target in enumerate(digits.target) if target == label]
        for index in rng.sample(indices, per_class):
            strength = digits.images[index] / 16.0
            side = rng.choice([64, 96, 128, 160])
            ink = Image.fromarray((strength * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
            margin = rng.randint(side // 8, side // 2)
            canvas_size = (side + 2 * margin + rng.randint(0, side // 2), side + 2 * margin)
            offset = (rng.randint(0, canvas_size[0] - side), rng.randint(0, canvas_size[1] - side))
            if rng.random() < 0.5:
                canvas = paper(rng, canvas_size)
                canvas.paste(Image.new("RGB", (side, side), ink_colour(rng)), offset, ink)
            else:
                canvas = Image.new("L", canvas_size, rng.randint(0, 40))
                canvas.paste(Image.new("L", (side, side), rng.randint(200, 255)), offset, ink)
            samples.append((label, canvas, "jpg" if rng.random() < 0.5 else "png"))
    return samples


def find_fonts() -> list[Path]:
    """The handwriting fonts that are installed."""
    found = {path.name: path for folder in FONT_DIRS if folder.is_dir() for path in folder.rglob("*.[ot]tf")}
    return [found[name] for name in FONT_NAMES if name in found]


def font_digits(rng: random.Random, fonts: list[Path], count: int) -> list[tuple[int, Image.Image, str]]:
    """Digits in handwriting fonts on paper, as photos, scans or paint-program exports."""
    samples = []
    for index in range(count):
        label = index % 10
        font_path = fonts[(index // 10) % len(fonts)]
        glyph_size = rng.randint(48, 220)
        font = ImageFont.truetype(str(font_path), glyph_size)
        layer = Image.new("L", (glyph_size * 3, glyph_size * 3), 0)
        ImageDraw.Draw(layer).text((glyph_size, glyph_size // 2), str(label), fill=255, font=font)
        if rng.random() < 0.3:
            layer = layer.filter(ImageFilter.MaxFilter(3))  # a felt-tip pen
        layer = layer.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC)
        layer = layer.crop(layer.getbbox() or (0, 0, 1, 1))
        style = rng.random()
        if style < 0.12:  # a drawing exported with a transparent background
            canvas = Image.new("RGBA", (layer.width + 40, layer.height + 40), (0, 0, 0, 0))
            stroke = Image.new("RGBA", layer.size, (*ink_colour(rng), 255))
            canvas.paste(stroke, (20, 20), layer)
            samples.append((label, canvas, "png"))
            continue
        if style < 0.25:  # a small digit in a large phone photo
            frame = (rng.randint(600, 1200), rng.randint(500, 900))
        else:
            frame = (layer.width + rng.randint(10, 200), layer.height + rng.randint(10, 160))
        canvas = paper(rng, frame)
        offset = (rng.randint(0, frame[0] - layer.width), rng.randint(0, frame[1] - layer.height))
        canvas.paste(Image.new("RGB", layer.size, ink_colour(rng)), offset, layer)
        if rng.random() < 0.4:
            canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
        photo = max(frame) > 400 or rng.random() < 0.6
        samples.append((label, canvas, "jpg" if photo else "png"))
    return samples


def main() -> None:
    rng = random.Random(2026)
    fonts = find_fonts()
    if len(fonts) < 6:
        raise SystemExit(f"install the handwriting font packages first (found {len(fonts)} fonts)")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    samples = [(*item, "uci") for item in uci_digits(rng, per_class=12)]
    samples += [(*item, "font") for item in font_digits(rng, fonts, count=130)]
    for index, (label, image, ext, source) in enumerate(samples):
        path = OUT / f"{label}_{source}_{index:03d}.{ext}"
        if ext == "jpg":
            image.convert("RGB").save(path, quality=rng.randint(55, 90))
        else:
            image.save(path)
    print(f"wrote {len(samples)} images to {OUT} with {len(fonts)} fonts")


if __name__ == "__main__":
    main()
