"""Per-object metrics on hand-checkable shapes (synthfm.evaluation.metrics)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from synthfm.evaluation.metrics import boundary, dice, hd95, iou, nsd, object_metrics, surface_distances


def square(shape=(64, 64), top=10, left=10, side=20) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + side, left : left + side] = True
    return m


def disc(shape=(128, 128), centre=(64, 64), radius=20) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, centre, radius, 1, -1)
    return m.astype(bool)


def test_two_squares_of_known_overlap():
    a = square(side=20)
    b = square(left=20, side=20)  # shifted by half a side: overlap 20 x 10
    assert dice(a, b) == pytest.approx(2 * 200 / 800)
    assert iou(a, b) == pytest.approx(200 / 600)
    assert dice(a, b) == dice(b, a)


def test_identical_masks_are_perfect():
    a = disc()
    m = object_metrics(a, a)
    assert m == {"dice": 1.0, "iou": 1.0, "nsd": 1.0, "hd95": 0.0}


def test_shifted_disc_hd95_and_nsd():
    a = disc(centre=(64, 64))
    for shift in (1, 2, 6):
        b = disc(centre=(64 + shift, 64))
        # boundary points move by at most `shift` px; the 95th percentile is close to it
        assert shift - 1.0 <= hd95(a, b) <= shift + 1e-9
        assert hd95(a, b) == pytest.approx(hd95(b, a))
    assert nsd(a, disc(centre=(65, 64)), tolerance=2.0) == 1.0
    far = nsd(a, disc(centre=(70, 64)), tolerance=2.0)
    assert 0.0 < far < 0.6
    assert nsd(a, disc(centre=(70, 64)), tolerance=6.0) == 1.0


def test_spacing_turns_pixels_into_mm():
    a = square((40, 40), 10, 10, 12)
    b = square((40, 40), 10, 13, 12)  # 3 columns to the right
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, b, spacing=(0.5, 2.0)) == pytest.approx(6.0)
    # NSD tolerance is 2 px x the smaller pixel size: 1 mm here, too tight for a 6 mm shift
    assert nsd(a, b, tolerance=2.0, spacing=(0.5, 2.0)) < nsd(a, b, tolerance=2.0)


def test_empty_mask_conventions():
    gt, empty = disc(), np.zeros((128, 128), bool)
    m = object_metrics(gt, empty)
    assert m["dice"] == 0.0 and m["iou"] == 0.0 and m["nsd"] == 0.0 and math.isnan(m["hd95"])
    assert math.isnan(hd95(empty, gt)) and nsd(empty, gt) == 0.0
    assert object_metrics(empty, empty) == {"dice": 1.0, "iou": 1.0, "nsd": 1.0, "hd95": 0.0}
    with pytest.raises(ValueError):
        surface_distances(gt, empty)


def test_object_metrics_agree_with_single_functions():
    a, b = disc(radius=20), disc(centre=(70, 60), radius=15)
    m = object_metrics(a, b, spacing=(0.7, 0.9), tolerance=3.0)
    assert m["dice"] == pytest.approx(dice(a, b))
    assert m["iou"] == pytest.approx(iou(a, b))
    assert m["nsd"] == pytest.approx(nsd(a, b, 3.0, (0.7, 0.9)))
    assert m["hd95"] == pytest.approx(hd95(a, b, (0.7, 0.9)))
    # Dice and IoU are tied: D = 2J / (1 + J)
    assert m["dice"] == pytest.approx(2 * m["iou"] / (1 + m["iou"]))


def test_boundary_counts_image_edge_and_crop_does_not_change_distances():
    full = np.ones((8, 8), bool)
    assert boundary(full).sum() == 28  # the outer ring: the image edge counts as background
    # masks touching the image edge give the same surface metrics as the same masks embedded
    # in a larger canvas with background around them (cropping is an implementation detail)
    a = square((30, 30), 0, 0, 12)
    b = square((30, 30), 2, 0, 12)
    big_a, big_b = np.pad(a, 5), np.pad(b, 5)
    assert hd95(a, b) == pytest.approx(hd95(big_a, big_b))
    assert nsd(a, b, 1.0) == pytest.approx(nsd(big_a, big_b, 1.0))


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shapes differ"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))
