"""Augmentation that makes MNIST digits look like the digits people upload.

MNIST digits are written with one pen, scanned, size-normalised and centred. Uploads are
drawn with markers and pencils, slanted, photographed out of focus, small in the frame or
scanned at low resolution, on noisy paper, and
reach the model through the same MNIST preprocessing (`app/inference/preprocessing.py`).
Each training image gets, at random, what that leaves over: a thicker or thinner and
lighter stroke, a slant, rotation, anisotropic scale and small shift, an elastic
distortion (Simard, Steinkraus and Platt, "Best practices for convolutional neural
networks applied to visual document analysis", ICDAR 2003: a random displacement field
smoothed by a Gaussian), a loss of resolution (down to 8-16 pixels and back, as a digit a
few pixels high in a photo, or an 8x8 scan, reaches the model), blur and noise. A
fraction of the images is left as it is, so the model keeps its accuracy on MNIST itself.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw
from scipy import ndimage

__all__ = ["HandwritingAugmentation"]


class HandwritingAugmentation:
    """Random handwriting-like distortions of batches of digit images.

    Call it on float32 (N, H, W, 1) images in [0, 1], white digits on black (MNIST's
    polarity), in a `tf.data` map; it returns a tensor of the same shape and dtype. The
    distortions run in NumPy/SciPy (`tf.numpy_function`), a few milliseconds per batch of
    64 28x28 images, off the training step.

    Args:
        seed: Seed of the random generator (one stream for the whole run).
        clean_fraction: Share of the images passed through unchanged.
        max_rotation: Largest rotation, degrees.
        max_shear: Largest slant, as the horizontal shift per row (0.3 is about 17 degrees).
        scale_range: Range of the scale factor, drawn separately for width and height.
        max_shift: Largest translation, pixels.
        elastic_alpha: Largest elastic displacement scale, pixels (Simard et al. use 34 with
            sigma 4 on 28x28 digits).
        elastic_sigma: Standard deviation of the Gaussian that smooths the field, pixels.
        low_resolution_fraction: Share of the images reduced to 8-16 pixels and enlarged back.
        flagged_ones: Share of the ones given a flag (`_flag`); the augmentation then takes
            the batch's labels too (`uses_labels`).
    """

    def __init__(
        self,
        seed: int,
        *,
        clean_fraction: float = 0.15,
        max_rotation: float = 15.0,
        max_shear: float = 0.3,
        scale_range: tuple[float, float] = (0.8, 1.15),
        max_shift: float = 2.5,
        elastic_alpha: float = 30.0,
        elastic_sigma: float = 4.0,
        low_resolution_fraction: float = 0.0,
        flagged_ones: float = 0.0,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.clean_fraction = clean_fraction
        self.max_rotation = max_rotation
        self.max_shear = max_shear
        self.scale_range = scale_range
        self.max_shift = max_shift
        self.elastic_alpha = elastic_alpha
        self.elastic_sigma = elastic_sigma
        self.low_resolution_fraction = low_resolution_fraction
        self.flagged_ones = flagged_ones

    @property
    def uses_labels(self) -> bool:
        """Whether the augmentation is called as `(images, labels)` (`flagged_ones`)."""
        return self.flagged_ones > 0

    def __call__(self, images: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        if labels is None:
            labels = tf.fill(tf.shape(images)[:1], tf.constant(-1, tf.int64))
        distorted = tf.numpy_function(
            self.distort_batch, [images, tf.cast(labels, tf.int64)], tf.float32, stateful=True
        )
        distorted.set_shape(images.shape)
        return distorted

    def distort_batch(self, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Distort each image of a float32 (N, H, W, 1) batch in [0, 1]; `labels`, int64 (N,)
        class indices (-1 unknown), tell which are ones. Returns a new array."""
        out = np.empty_like(images, dtype=np.float32)
        for index, image in enumerate(images):
            one = labels is not None and labels[index] == 1
            pixels = image[..., 0]
            if one and self.rng.random() < self.flagged_ones:
                pixels = self._flag(pixels)
            elif self.rng.random() < self.clean_fraction:
                out[index] = image
                continue
            out[index, ..., 0] = self.distort(pixels)
        return out

    def distort(self, image: np.ndarray) -> np.ndarray:
        """One float32 (H, W) image in [0, 1] with a random set of distortions applied."""
        rng = self.rng
        image = self._stroke(image)
        image = self._warp(image)
        if rng.random() < self.low_resolution_fraction:
            image = self._low_resolution(image)
        if rng.random() < 0.3:
            image = ndimage.gaussian_filter(image, rng.uniform(0.3, 1.0))
        if rng.random() < 0.3:
            image = image + rng.normal(0.0, rng.uniform(0.02, 0.1), image.shape)
        return np.clip(image, 0.0, 1.0).astype(np.float32)

    def _stroke(self, image: np.ndarray) -> np.ndarray:
        """Thicker (marker) or thinner (fine pen) strokes, and lighter ink (pencil)."""
        rng = self.rng
        draw = rng.random()
        if draw < 0.25:
            image = ndimage.grey_dilation(image, size=(2, 2))
        elif draw < 0.35:
            image = ndimage.grey_dilation(image, size=(3, 3))
        elif draw < 0.5:
            image = ndimage.grey_erosion(image, size=(2, 2))
        if rng.random() < 0.25:
            image = image * rng.uniform(0.5, 1.0)
        return image

    def _flag(self, image: np.ndarray) -> np.ndarray:
        """A one with the flag many writers (and most fonts) give it: a stroke of the digit's
        own width from its top down to the left, 20-45% of its height long, 30-65 degrees
        below the horizontal. MNIST's ones are nearly all bare strokes; uploaded ones with a
        flag were read as sevens (the largest error of the tuning digits)."""
        rng = self.rng
        rows, cols = np.nonzero(image > 0.5)
        if rows.size == 0:
            return image
        top = int(rows.min())
        height = int(rows.max()) - top + 1
        at_top = cols[rows <= top + 1]
        width = max(1.0, float(np.median(np.bincount(rows))))  # ink pixels per row of a stroke
        length = rng.uniform(0.2, 0.45) * height
        angle = np.deg2rad(rng.uniform(30, 65))
        scale = 4  # drawn at 4x and reduced, for an anti-aliased stroke
        canvas = Image.new("L", (image.shape[1] * scale, image.shape[0] * scale))
        start = ((float(at_top.mean()) + 0.5) * scale, (top + 0.5) * scale)
        end = (start[0] - length * np.cos(angle) * scale, start[1] + length * np.sin(angle) * scale)
        ImageDraw.Draw(canvas).line([start, end], fill=255, width=max(1, round(width * scale)))
        flag = np.asarray(canvas.resize(image.shape[::-1], Image.Resampling.BOX), dtype=np.float32) / 255.0
        return np.maximum(image, flag * float(image.max()))

    def _low_resolution(self, image: np.ndarray) -> np.ndarray:
        """The image at 8-16 pixels a side, enlarged back with bilinear interpolation."""
        side = int(self.rng.integers(8, 17))
        small = ndimage.zoom(image, side / image.shape[0], order=1, prefilter=False)
        restored = ndimage.zoom(small, image.shape[0] / small.shape[0], order=1, prefilter=False)
        return restored[: image.shape[0], : image.shape[1]]

    def _warp(self, image: np.ndarray) -> np.ndarray:
        """Affine (rotation, slant, scale, shift) and elastic distortion in one resampling."""
        rng = self.rng
        height, width = image.shape
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
        center_row, center_col = (height - 1) / 2, (width - 1) / 2
        angle = np.deg2rad(rng.uniform(-self.max_rotation, self.max_rotation))
        shear = rng.uniform(-self.max_shear, self.max_shear)
        scale_row, scale_col = rng.uniform(*self.scale_range, size=2)
        shift_row, shift_col = rng.uniform(-self.max_shift, self.max_shift, size=2)
        # The inverse map: for each output pixel, where to read in the input.
        y = (rows - center_row - shift_row) / scale_row
        x = (cols - center_col - shift_col) / scale_col
        cos, sin = np.cos(angle), np.sin(angle)
        source_row = cos * y - sin * x + center_row
        source_col = sin * y + cos * x + center_col + shear * y
        if rng.random() < 0.7:
            alpha = rng.uniform(0.0, self.elastic_alpha)
            for coordinates in (source_row, source_col):
                field = ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, image.shape), self.elastic_sigma)
                coordinates += alpha * field
        return ndimage.map_coordinates(image, [source_row, source_col], order=1, mode="constant", cval=0.0)
