"""Closed, smooth, non-self-intersecting outlines from piecewise cubic Bézier curves.

An outline is star-shaped around its centre: anchors sit at increasing angles with positive
radii, and between anchors the radius follows a cubic Bézier (in the angle-radius plane) while
the angle grows linearly.  A curve whose angle increases monotonically and whose radius stays
positive cannot cross itself, so every outline is a simple closed curve; the Bézier control
radii are convex combinations kept above a floor, so positivity holds by construction.  Large
radial jitter gives concave (bean, lobed) shapes, small jitter near-ellipses; an anisotropic
scale and a rotation (affine maps keep curves simple) elongate and orient them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Radii never drop below this fraction of the mean radius, so the outline stays star-shaped.
_MIN_RADIUS = 0.08


@dataclass(frozen=True)
class OutlineParams:
    """Parameters of one unit outline (mean radius 1, centred on the origin).

    angles: (n,) float64 increasing anchor angles in [theta0, theta0 + 2 pi).
    radii: (n,) float64 anchor radii (> 0).  slopes: (n,) d radius / d angle at the anchors.
    aspect: minor / major axis scale applied to y before rotating by ``rotation`` (radians).
    """

    angles: np.ndarray
    radii: np.ndarray
    slopes: np.ndarray
    aspect: float
    rotation: float


def sample_outline_params(
    rng: np.random.Generator, n_anchors: int, irregularity: float, aspect: float
) -> OutlineParams:
    """Draw a random unit outline with ``n_anchors`` anchors and radial jitter ``irregularity``."""
    n = max(3, int(n_anchors))
    spacing = 2.0 * math.pi / n
    # Jitter each anchor by less than half the spacing so the angles stay strictly increasing.
    jitter = rng.uniform(-0.35, 0.35, size=n) * spacing
    theta0 = rng.uniform(0.0, 2.0 * math.pi)
    angles = theta0 + np.arange(n) * spacing + jitter
    radii = 1.0 + irregularity * rng.uniform(-1.0, 1.0, size=n)
    radii = np.maximum(radii, _MIN_RADIUS * 2)
    # Catmull-Rom style tangents scaled by a random tension: 0 gives lobes meeting in soft
    # corners, 1 the smoothest curve through the anchors.
    tension = rng.uniform(0.3, 1.0)
    prev, nxt = np.arange(-1, n - 1), np.arange(1, n + 1) % n
    prev_a = angles[prev] - np.where(prev < 0, 2 * math.pi, 0.0)
    next_a = angles[nxt] + np.where(nxt == 0, 2 * math.pi, 0.0)
    slopes = tension * (radii[nxt] - radii[prev]) / (next_a - prev_a)
    rotation = rng.uniform(0.0, math.pi)
    return OutlineParams(angles=angles, radii=radii, slopes=slopes, aspect=float(aspect), rotation=rotation)


def outline_points(params: OutlineParams, points_per_segment: int = 12) -> np.ndarray:
    """(M, 2) float64 closed polygon (x, y) of the unit outline, M = n * points_per_segment.

    The last point is not repeated; consecutive points (and last -> first) form the edges.
    """
    a = params.angles
    r = params.radii
    n = a.shape[0]
    nxt = np.arange(1, n + 1) % n
    a_next = a[nxt]
    a_next[-1] += 2.0 * math.pi
    span = a_next - a
    r_next = r[nxt]
    s, s_next = params.slopes, params.slopes[nxt]
    floor = _MIN_RADIUS
    c1 = np.maximum(r + s * span / 3.0, floor)
    c2 = np.maximum(r_next - s_next * span / 3.0, floor)

    t = np.arange(points_per_segment, dtype=np.float64) / points_per_segment
    b0, b1, b2, b3 = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3
    radius = r[:, None] * b0 + c1[:, None] * b1 + c2[:, None] * b2 + r_next[:, None] * b3
    theta = a[:, None] + span[:, None] * t
    x = radius * np.cos(theta)
    y = radius * np.sin(theta) * params.aspect
    cos_r, sin_r = math.cos(params.rotation), math.sin(params.rotation)
    xy = np.stack([x * cos_r - y * sin_r, x * sin_r + y * cos_r], axis=-1)
    return xy.reshape(n * points_per_segment, 2)


def points_for_radius(radius_px: float, n_anchors: int) -> int:
    """Points per Bézier segment so that polygon edges are about 3 pixels long (4..32)."""
    per_segment = 2.0 * math.pi * max(radius_px, 1.0) / max(n_anchors, 3) / 3.0
    return int(min(32, max(4, math.ceil(per_segment))))
