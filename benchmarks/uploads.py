"""Fashion-MNIST and CIFAR-10 test images re-saved as people upload them, scored through the API.

For each dataset, `--count` test images (drawn with `--seed`, default 0) are re-saved in several ways and sent to
`/predict`; the accuracy of each way is compared with the accuracy on the same images
sent exactly as the dataset has them (28x28 or 32x32 PNG, `preprocess=none`), which is
the model's test-set accuracy on that subset.

- Fashion-MNIST: `upscaled_jpeg` (4x bicubic, quality 90, light object on black as in the
  dataset), `product_shot` (the garment dark on a white background, as photographed, 4x,
  JPEG), `padded_shot` (that shot padded to 4:3 with white in a grey border),
  `cutout_png` (the garment on a transparent background, RGBA PNG).
- CIFAR-10: `upscaled_jpeg` (128 px, quality 90), `photo_jpeg` (256x192, the frame wider
  than the subject, quality 85), `rgba_png` (64 px with an alpha channel),
  `low_quality_jpeg` (224 px, quality 30), `letterboxed` (180 px in a black 240x180 frame).

    .venv/bin/python benchmarks/uploads.py --dataset fashion_mnist --model fashion_mnist/custom2
    .venv/bin/python benchmarks/uploads.py --dataset cifar10 --model cifar10/custom2
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.realworld import open_client  # noqa: E402

Variant = Callable[[np.ndarray], tuple[bytes, str]]


def _save(image: Image.Image, fmt: str, **options: object) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue(), {"PNG": "image/png", "JPEG": "image/jpeg"}[fmt]


def _gray(pixels: np.ndarray, scale: int) -> Image.Image:
    image = Image.fromarray(pixels.squeeze(-1))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)


FASHION_VARIANTS: dict[str, Variant] = {
    "upscaled_jpeg": lambda x: _save(_gray(x, 4), "JPEG", quality=90),
    "product_shot": lambda x: _save(_gray(255 - x, 4).convert("RGB"), "JPEG", quality=90),
    "padded_shot": lambda x: _save(_padded(_gray(255 - x, 4).convert("RGB")), "JPEG", quality=90),
    "cutout_png": lambda x: _save(
        Image.merge(
            "RGBA",
            [_gray(255 - x, 4)] * 3 + [_gray(np.clip(x.astype(np.int32) * 4, 0, 255).astype(np.uint8), 4)],
        ),
        "PNG",
    ),
}


def _padded(image: Image.Image) -> Image.Image:
    """A product shot padded to 4:3 with white, in a 6 px light grey border, as shops show them."""
    width = image.height * 4 // 3
    canvas = Image.new("RGB", (width, image.height), (255, 255, 255))
    canvas.paste(image, ((width - image.width) // 2, 0))
    framed = Image.new("RGB", (width + 12, image.height + 12), (200, 200, 200))
    framed.paste(canvas, (6, 6))
    return framed


def _letterboxed(x: np.ndarray) -> Image.Image:
    """The 32x32 image enlarged to 180 px in a black 4:3 frame (240x180), as a video still."""
    frame = Image.new("RGB", (240, 180))
    frame.paste(Image.fromarray(x).resize((180, 180), Image.Resampling.BICUBIC), (30, 0))
    return frame


def _photo(x: np.ndarray) -> Image.Image:
    """The 32x32 image enlarged to 192 px and centred in a 256x192 frame of its own edge colour."""
    subject = Image.fromarray(x).resize((192, 192), Image.Resampling.BICUBIC)
    frame = Image.fromarray(x).resize((256, 192), Image.Resampling.BICUBIC)
    frame.paste(subject, (32, 0))
    return frame


CIFAR_VARIANTS: dict[str, Variant] = {
    "upscaled_jpeg": lambda x: _save(
        Image.fromarray(x).resize((128, 128), Image.Resampling.BICUBIC), "JPEG", quality=90
    ),
    "photo_jpeg": lambda x: _save(_photo(x), "JPEG", quality=85),
    "rgba_png": lambda x: _save(Image.fromarray(x).resize((64, 64), Image.Resampling.BICUBIC).convert("RGBA"), "PNG"),
    "low_quality_jpeg": lambda x: _save(
        Image.fromarray(x).resize((224, 224), Image.Resampling.BICUBIC), "JPEG", quality=30
    ),
    "letterboxed": lambda x: _save(_letterboxed(x), "JPEG", quality=85),
}


def load_test_images(dataset: str, data_dir: Path, count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` test images (uint8 NHWC) and labels of a dataset, drawn at random with `seed`."""
    from training.datasets import load_dataset

    data = load_dataset(dataset, data_dir).take(0, count, seed=seed)
    return data.x_test, data.y_test


def score(
    client: httpx.Client, model: str, images: np.ndarray, labels: np.ndarray, variants: dict[str, Variant]
) -> dict[str, float]:
    """Accuracy of each upload variant, plus `dataset_as_is` (exact input, preprocess=none).

    Raises:
        RuntimeError: A request did not answer 200.
    """

    def accuracy(encode: Variant, preprocess: str) -> float:
        correct = 0
        for pixels, label in zip(images, labels, strict=True):
            data, content_type = encode(pixels)
            files = {"image": ("upload", data, content_type)}
            response = client.post("/predict", params={"model": model, "preprocess": preprocess}, files=files)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text}")
            correct += response.json()["class_index"] == int(label)
        return correct / len(labels)

    def as_is(x: np.ndarray) -> tuple[bytes, str]:
        return _save(Image.fromarray(x.squeeze(-1) if x.shape[-1] == 1 else x), "PNG")

    results = {"dataset_as_is": accuracy(as_is, "none")}
    results.update({name: accuracy(encode, "auto") for name, encode in variants.items()})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["fashion_mnist", "cifar10"], required=True)
    parser.add_argument("--model", required=True, help="dataset/arch")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="which random sample of the test set")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--url", help="a running server; default: the app in this process")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models_store")
    args = parser.parse_args(argv)
    images, labels = load_test_images(args.dataset, args.data_dir, args.count, seed=args.seed)
    variants = FASHION_VARIANTS if args.dataset == "fashion_mnist" else CIFAR_VARIANTS
    with open_client(args.url, args.models_dir) as client:
        results = score(client, args.model, images, labels, variants)
    reference = results["dataset_as_is"]
    print(f"{args.model} on {args.count} {args.dataset} test images (seed {args.seed})")
    for name, value in results.items():
        print(f"{name:<16}{value:>8.1%}{(value - reference) * 100:>+8.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
