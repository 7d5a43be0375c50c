"""Bézier outlines: closed, simple (no self-intersection), sized and rasterised as promised."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from synthfm.synth.bezier import OutlineParams, outline_points, points_for_radius, sample_outline_params


def _segments_cross(p: np.ndarray) -> bool:
    """True if any two non-adjacent edges of the closed polygon ``p`` (M, 2) intersect."""
    a = p
    b = np.roll(p, -1, axis=0)
    m = len(p)
    i, j = np.triu_indices(m, k=2)
    keep = ~((i == 0) & (j == m - 1))  # first and last edge share a vertex
    i, j = i[keep], j[keep]

    def orient(p1, p2, p3):
        return np.sign((p2[:, 0] - p1[:, 0]) * (p3[:, 1] - p1[:, 1]) - (p2[:, 1] - p1[:, 1]) * (p3[:, 0] - p1[:, 0]))

    o1 = orient(a[i], b[i], a[j])
    o2 = orient(a[i], b[i], b[j])
    o3 = orient(a[j], b[j], a[i])
    o4 = orient(a[j], b[j], b[i])
    return bool(np.any((o1 * o2 < 0) & (o3 * o4 < 0)))


def _area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_crossing_detector_detects_a_bow_tie():
    bow_tie = np.array([[0, 0], [1, 1], [1, 0], [0, 1]], dtype=float)
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    assert _segments_cross(bow_tie)
    assert not _segments_cross(square)


@pytest.mark.parametrize("irregularity", [0.0, 0.3, 0.6, 0.95])
def test_outlines_never_self_intersect(irregularity):
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(3, 16))
        params = sample_outline_params(rng, n, irregularity, aspect=float(rng.uniform(0.1, 1.0)))
        per_segment = int(rng.integers(4, 20))
        pts = outline_points(params, points_per_segment=per_segment)
        assert pts.shape == (n * per_segment, 2)
        assert not _segments_cross(pts)


def test_outline_is_star_shaped_around_the_origin_with_bounded_radius():
    rng = np.random.default_rng(3)
    params = sample_outline_params(rng, 8, 0.6, aspect=1.0)
    pts = outline_points(params, 16)
    radius = np.linalg.norm(pts, axis=1)
    assert radius.min() > 0.05
    assert radius.max() < 2.0
    # With aspect 1 the angle around the origin increases monotonically: a star-shaped curve.
    angle = np.unwrap(np.arctan2(pts[:, 1], pts[:, 0]))
    assert np.all(np.diff(angle) > 0)
    assert math.isclose(angle[-1] - angle[0], 2 * math.pi, abs_tol=0.5)


def test_irregularity_controls_convexity():
    rng = np.random.default_rng(11)

    def solidity(irregularity):
        values = []
        for _ in range(30):
            pts = outline_points(sample_outline_params(rng, 8, irregularity, 1.0), 12).astype(np.float32)
            hull = cv2.convexHull(pts)
            values.append(_area(pts) / _area(hull[:, 0, :]))
        return float(np.mean(values))

    smooth, lobed = solidity(0.0), solidity(0.9)
    assert smooth > 0.97  # near-ellipses are (almost) convex
    assert lobed < smooth - 0.05  # high jitter gives concave outlines


def test_rasterised_area_matches_the_polygon_area():
    params = OutlineParams(
        angles=np.linspace(0, 2 * math.pi, 6, endpoint=False),
        radii=np.ones(6),
        slopes=np.zeros(6),
        aspect=0.5,
        rotation=0.3,
    )
    pts = outline_points(params, 32) * 40 + 64
    mask = np.zeros((128, 128), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    assert abs(int(mask.sum()) - _area(pts)) / _area(pts) < 0.05


def test_points_for_radius_grows_with_size_and_is_bounded():
    assert points_for_radius(1.0, 8) == 4
    assert points_for_radius(1e6, 8) == 32
    assert points_for_radius(50, 8) <= points_for_radius(200, 8)
