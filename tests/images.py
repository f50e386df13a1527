"""Image bytes for tests, made with Pillow in memory."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

import app.inference.decoding  # noqa: F401  (registers pillow-heif's HEIF plugin, as the service does)


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    """The bytes of `image` saved in `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (1 + width) * 1)  # one row; the rest is missing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def digit_on_paper(digit: np.ndarray, *, scale: int = 8, margin: int = 40) -> Image.Image:
    """An MNIST digit (uint8 28x28, white on black) drawn dark on light paper, enlarged."""
    ink = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (28 * scale + 2 * margin, 28 * scale + 2 * margin), (238, 232, 220))
    canvas.paste(Image.new("RGB", ink.size, (30, 30, 90)), (margin, margin), ink)
    return canvas
