"""Make a small image-folder dataset: drawn circles, squares and triangles, one folder per class.

    .venv/bin/python tests/make_shapes.py /tmp/shapes [--per-class 60] [--seed 0]

Each image is an RGB PNG of 40 to 80 pixels a side (sizes differ, as photos do): a shape of
random colour, size and position on a noisy background of another colour. The example of
training on your own images (docs/training.md) and of the tests of folder datasets; nothing
is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")


def draw_shape(kind: str, rng: np.random.Generator) -> Image.Image:
    """One RGB image of `kind` (a name of `CLASSES`), 40-80 pixels a side."""
    width, height = (int(size) for size in rng.integers(40, 81, size=2))
    background = rng.integers(0, 256, size=3)
    noise = rng.normal(0, 12, size=(height, width, 3))
    image = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))
    colour = tuple(int(value) for value in (255 - background + rng.integers(-40, 41, size=3)) % 256)
    side = rng.uniform(0.45, 0.8) * min(width, height)
    left = rng.uniform(0, width - side)
    top = rng.uniform(0, height - side)
    box = (left, top, left + side, top + side)
    draw = ImageDraw.Draw(image)
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(left + side / 2, top), (left, top + side), (left + side, top + side)], fill=colour)
    return image


def make_shapes(root: Path, *, per_class: int = 60, seed: int = 0) -> Path:
    """Write `root/<class>/NNNN.png`, `per_class` images of each class; return `root`."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw_shape(kind, rng).save(folder / f"{index:04d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder to write the class folders into")
    parser.add_argument("--per-class", type=int, default=60, help="images of each class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_shapes(args.root, per_class=args.per_class, seed=args.seed)
    print(f"wrote {args.per_class} images of each of {', '.join(CLASSES)} into {args.root}")


if __name__ == "__main__":
    main()
