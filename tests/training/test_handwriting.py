"""The handwriting augmentation's flagged ones: only ones get a flag, drawn where a writer puts it."""

from __future__ import annotations

import numpy as np

from training.handwriting import HandwritingAugmentation

STILL = {"max_rotation": 0.0, "max_shear": 0.0, "scale_range": (1.0, 1.0), "max_shift": 0.0, "elastic_alpha": 0.0}
"""No geometric distortion: the flag stays where it was drawn."""


def _flag_ink(image: np.ndarray) -> int:
    """Ink pixels left of the stem in its upper half, where a flag goes."""
    return int(np.count_nonzero(image[:14, :12] > 0.5))


def _bare_one() -> np.ndarray:
    """A 28x28 float32 one as MNIST has most of them: a vertical stroke, 3 px wide."""
    image = np.zeros((28, 28), dtype=np.float32)
    image[4:24, 13:16] = 1.0
    return image


def test_a_flag_runs_from_the_top_down_to_the_left() -> None:
    one = _bare_one()
    flagged = HandwritingAugmentation(0)._flag(one)
    added = (flagged > 0.5) & (one == 0)
    rows, cols = np.nonzero(added)
    assert rows.size >= 6  # a stroke, not a speck
    assert cols.max() < 14 and rows.max() < 14  # left of the stem, in its upper half
    assert np.all(flagged >= one)  # the stem itself is kept


def test_only_ones_get_a_flag() -> None:
    seven = _bare_one()
    seven[4:7, 6:16] = 1.0
    images = np.stack([_bare_one(), seven])[..., np.newaxis]
    augmentation = HandwritingAugmentation(0, clean_fraction=1.0, flagged_ones=1.0, **STILL)
    assert augmentation.uses_labels
    out = augmentation.distort_batch(images, np.array([1, 7]))
    assert _flag_ink(out[0, ..., 0]) >= 4 and _flag_ink(images[0, ..., 0]) == 0  # the one, flagged
    np.testing.assert_array_equal(out[1], images[1])  # the seven, passed through clean
    np.testing.assert_array_equal(augmentation.distort_batch(images), images)  # no labels: no flags


def test_the_training_pipeline_hands_the_labels_over() -> None:
    from training.runs import make_pipeline

    images = np.stack([(_bare_one() * 255).astype(np.uint8)] * 4)[..., np.newaxis]
    labels = np.array([1, 1, 7, 7], dtype=np.int64)
    augmentation = HandwritingAugmentation(0, clean_fraction=1.0, flagged_ones=1.0, **STILL)
    (batch, batch_labels), *_ = list(make_pipeline(images, labels, batch_size=4, augmentation=augmentation))
    assert list(batch_labels.numpy()) == [1, 1, 7, 7]
    assert [_flag_ink(image[..., 0]) >= 4 for image in batch.numpy()] == [True, True, False, False]
