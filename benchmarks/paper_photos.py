"""Accuracy on photos of digits on paper: MNIST test digits as ink, under uneven light, on ruled paper.

Each of the first `--count` MNIST test digits is drawn as dark ink (420 px) at a random place
on a 1600x1200 photo of paper, JPEG quality 85, in six conditions:

- `even`: the paper at one brightness;
- `falloff`: a lamp's falloff, from 250 to about 120 gray levels across the page;
- `shadow`: a half-disc shadow 110 levels deep inside the page (soft edge);
- `edge_shadow`: a shadow entering from an edge at a random angle, 100 levels deep, with
  vignetting;
- `ruled`: evenly lit notebook paper, light blue lines 3 px thick every 70 px;
- `grid`: the same lines across and down (graph paper);
- `desk`: the sheet, evenly lit, covering 60-85% of each side of a photo of a darker desk;
- `closeup`: the digit 1,000 px tall (its strokes near a tenth of the photo's side), under
  the falloff: a close-up whose thick strokes a lighting estimate must not take for paper.

Each photo goes through the service's preprocessing (`prepare_image`, method `mnist`) and the
model's SavedModel; the script prints the accuracy per condition.

    .venv/bin/python benchmarks/paper_photos.py --model models_store/mnist/ensemble/4 --count 60
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ("even", "falloff", "shadow", "edge_shadow", "ruled", "grid", "desk", "closeup")
RULE_COLOUR = (150, 180, 220)
DESK_COLOURS = [(60, 45, 35), (150, 120, 90), (90, 90, 95)]  # dark wood, light wood, grey
WIDTH, HEIGHT, DIGIT, CLOSEUP = 1600, 1200, 420, 1000


def lighting(kind: str, rng: np.random.Generator) -> np.ndarray:
    """The paper's brightness, float32 (HEIGHT, WIDTH) in gray levels."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    if kind in ("even", "ruled", "grid", "desk"):
        return np.full((HEIGHT, WIDTH), 225.0, np.float32)
    if kind in ("falloff", "closeup"):
        return 250 - 130 * (xx / WIDTH) * (0.6 + 0.4 * yy / HEIGHT)
    if kind == "shadow":
        cx, cy = rng.uniform(0.2, 0.8) * WIDTH, rng.uniform(0.2, 0.8) * HEIGHT
        light = 235.0 - 110 * ((((xx - cx) ** 2 + (yy - cy) ** 2) < (0.35 * WIDTH) ** 2) & (xx > cx))
        blur = 25
    else:
        angle = rng.uniform(0, 2 * np.pi)
        across = (xx - WIDTH / 2) * np.cos(angle) + (yy - HEIGHT / 2) * np.sin(angle)
        vignette = ((xx - WIDTH / 2) / WIDTH) ** 2 + ((yy - HEIGHT / 2) / HEIGHT) ** 2
        light = 235.0 - 100 * (across > rng.uniform(0.25, 0.45) * min(WIDTH, HEIGHT)) - 40 * vignette
        blur = 15
    soft = Image.fromarray(light.astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(soft, dtype=np.float32)


def photo(digit: np.ndarray, kind: str, rng: np.random.Generator) -> bytes:
    """JPEG bytes of an MNIST digit (uint8 28x28, white on black) as ink on paper in condition `kind`."""
    ink = np.zeros((HEIGHT, WIDTH), np.float32)
    if kind == "closeup":
        side = CLOSEUP
        left, top = int(rng.uniform(0, WIDTH - side)), int(rng.uniform(0, HEIGHT - side))
    else:
        side = DIGIT
        left, top = int(rng.uniform(300, 800)), int(rng.uniform(200, 600))
    enlarged = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    ink[top : top + side, left : left + side] = np.asarray(enlarged, np.float32) / 255
    paper = lighting(kind, rng)[..., None] * np.array([1.0, 0.97, 0.9], np.float32)
    if kind in ("ruled", "grid"):
        paper = np.broadcast_to(paper, (HEIGHT, WIDTH, 3)).copy()
        paper[np.arange(HEIGHT) % 70 < 3] = RULE_COLOUR
        if kind == "grid":
            paper[:, np.arange(WIDTH) % 70 < 3] = RULE_COLOUR
    if kind == "desk":  # the sheet around the digit, the rest a desk
        top, bottom = int(rng.uniform(0.05, 0.15) * HEIGHT), int(rng.uniform(0.85, 0.95) * HEIGHT)
        sheet_left, sheet_right = int(rng.uniform(0.05, 0.15) * WIDTH), int(rng.uniform(0.85, 0.95) * WIDTH)
        desk = np.broadcast_to(np.array(rng.choice(DESK_COLOURS), np.float32), (HEIGHT, WIDTH, 3)).copy()
        desk[top:bottom, sheet_left:sheet_right] = paper[top:bottom, sheet_left:sheet_right]
        paper = desk
    pixels = paper * (1 - 0.8 * ink[..., None]) + rng.normal(0, 6, (HEIGHT, WIDTH, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models_store" / "mnist" / "ensemble" / "4")
    parser.add_argument("--count", type=int, default=60, help="MNIST test digits, each under every lighting")
    parser.add_argument("--seed", type=int, default=0, help="which random sample of the test digits")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import tensorflow as tf

    from app.inference.preprocessing import prepare_image
    from training.datasets import load_dataset

    dataset = load_dataset("mnist", args.data_dir).take(10, args.count, seed=args.seed)
    serve = tf.saved_model.load(str(args.model)).signatures["serving_default"]
    rng = np.random.default_rng(0)
    correct = dict.fromkeys(CONDITIONS, 0)
    for digit, label in zip(dataset.x_test[..., 0], dataset.y_test, strict=True):
        for kind in CONDITIONS:
            model_input = prepare_image(photo(digit, kind, rng), method="mnist", shape=(28, 28, 1), max_pixels=10**8)
            (probabilities,) = serve(images=tf.constant(model_input[np.newaxis])).values()
            correct[kind] += int(np.argmax(probabilities[0]) == label)
    print(f"{args.model} on {args.count} MNIST test digits (seed {args.seed}) photographed on paper")
    for kind in CONDITIONS:
        print(f"{kind:<12}{correct[kind] / args.count:>8.1%}  ({correct[kind]}/{args.count})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
