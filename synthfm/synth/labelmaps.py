"""Boundary-aware module: SynthMorph-style label maps with random erosion.

A label map is the argmax of K smooth random fields (value noise), warped by a random smooth
displacement field.  Optionally an enclosing background (a wobbly ellipse, like a body outline)
sets everything outside to label 0.  Random erosion then removes, for a random subset of
labels, every pixel within a random radius of a different label, opening a thin gap (label 0)
between adjacent structures.  Neighbouring structures often get near-equal intensities, so the
gap (which has its own intensity) is the cue that separates them.

Resolution: the fields are so smooth (at most a few dozen bumps across) that their argmax, the
warp and the background are computed on a 256 px grid; the label map is then up-sampled to
``min(size, 512)`` px, its staircase edges smoothed with a median filter, eroded there, and
up-sampled to ``size`` with nearest-neighbour (exact pixel centres).  The training masks live at
S/4 anyway, and this keeps a 1024 px label map at a few milliseconds.

Targets: each structure, and with ``p_union`` the union of two adjacent structures.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from synthfm.synth.fields import integer, magnitude, smooth_field, uniform, upsample_smooth
from synthfm.synth.recipe import BoundaryConfig, ContrastConfig
from synthfm.synth.scene import MAX_LABELS, Scene, near, new_intensity_table

FIELD_GRID = 256
LABEL_WORK = 512
# Median filter that rounds off the 2x staircase left by up-sampling the label map.
_SMOOTH_KSIZE = 5


@functools.lru_cache(maxsize=8)
def _identity_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, n) float32 x and y pixel coordinates, for cv2.remap."""
    axis = np.arange(n, dtype=np.float32)
    return np.broadcast_to(axis[None, :], (n, n)).copy(), np.broadcast_to(axis[:, None], (n, n)).copy()


def _argmax_fields(rng: np.random.Generator, n: int, k: int, cells: int) -> np.ndarray:
    """(n, n) uint8 label map in 1..k: argmax over k smooth random (value-noise) fields."""
    grids = rng.uniform(-1.0, 1.0, size=(k, cells + 1, cells + 1)).astype(np.float32)
    best = upsample_smooth(grids[0], (n, n))
    labels = np.ones((n, n), dtype=np.uint8)
    for label in range(2, k + 1):
        field = upsample_smooth(grids[label - 1], (n, n))
        labels[field > best] = label
        cv2.max(field, best, dst=best)
    return labels


def _warp(rng: np.random.Generator, labels: np.ndarray, strength: float) -> np.ndarray:
    """Nearest-neighbour warp by a random smooth displacement of peak ``strength`` x side."""
    n = labels.shape[0]
    if strength <= 0:
        return labels
    gx, gy = _identity_grid(n)
    amp = np.float32(strength * n)
    cells = integer(rng, (2, 5))
    map_x = gx + smooth_field(rng, (n, n), cells) * amp
    map_y = gy + smooth_field(rng, (n, n), cells) * amp
    return cv2.remap(labels, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)


def _body_mask(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, n) bool: a wobbly ellipse covering most of the image (the 'body')."""
    gx, gy = _identity_grid(n)
    cx, cy = rng.uniform(0.4, 0.6, size=2) * n
    ax, ay = rng.uniform(0.3, 0.48, size=2) * n
    rho = magnitude((gx - np.float32(cx)) / np.float32(ax), (gy - np.float32(cy)) / np.float32(ay))
    wobble = smooth_field(rng, (n, n), integer(rng, (2, 6))) * np.float32(0.15)
    return rho < np.float32(1.0) + wobble


def erode_labels(labels: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """Erode each label by its own radius, setting removed pixels to 0.

    labels: (H, W) uint8.  radius_px: (256,) float32 erosion radius per label id (0 = none).
    A pixel of label k is removed when it lies closer than ``radius_px[k]`` (Euclidean) to a pixel
    of any other label, including 0.  One distance transform serves all radii.
    """
    kernel = np.ones((3, 3), np.uint8)
    lo = cv2.erode(labels, kernel, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(labels, kernel, borderType=cv2.BORDER_REPLICATE)
    # Pixels next to a different label are at distance 0; everything else gets its distance to them.
    interior = cv2.compare(lo, hi, cv2.CMP_EQ)
    dist = cv2.distanceTransform(interior, cv2.DIST_L2, 3)
    # dist counts from the boundary pixel itself, so a radius r removes about r pixels per side.
    limit = cv2.LUT(labels, radius_px.reshape(1, -1).astype(np.float32))
    out = labels.copy()
    out[dist < limit] = 0
    return out


def adjacent_pairs(labels: np.ndarray, step: int = 1) -> list[tuple[int, int]]:
    """Sorted (a, b) label pairs, a < b, both non-zero, that touch horizontally or vertically.

    Looks at every ``step``-th row/column for speed; thin contacts may be missed.
    """
    sub = labels[::step, ::step].astype(np.int32)
    codes = []
    for a, b in ((sub[:, :-1], sub[:, 1:]), (sub[:-1, :], sub[1:, :])):
        diff = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
        codes.append(lo * 256 + hi)
    unique = np.unique(np.concatenate(codes))
    return [(int(c) // 256, int(c) % 256) for c in unique]


def _intensities(
    rng: np.random.Generator, k: int, cfg: BoundaryConfig, contrast: ContrastConfig
) -> np.ndarray:
    intensity = new_intensity_table()
    if rng.random() < cfg.p_near_equal:
        base = uniform(rng, contrast.intensity_range)
        for label in range(1, k + 1):
            intensity[label] = near(rng, base, cfg.near_equal_delta_range)
        # The gap/background must stand out from the near-equal structures.
        intensity[0] = near(rng, base, (0.15, 0.5))
        return intensity
    intensity[0] = uniform(rng, contrast.intensity_range)
    for label in range(1, k + 1):
        if rng.random() < contrast.p_low_contrast:
            intensity[label] = near(rng, float(intensity[label - 1]), contrast.low_contrast_range)
        else:
            intensity[label] = uniform(rng, contrast.intensity_range)
    return intensity


def render_boundary_scene(
    cfg: BoundaryConfig, contrast: ContrastConfig, size: int, rng: np.random.Generator
) -> Scene:
    """A (size, size) SynthMorph-style scene; label ids 1..K, 0 = gaps and background."""
    grid = min(size, FIELD_GRID)
    n = min(size, LABEL_WORK)
    k = min(integer(rng, cfg.num_labels_range), MAX_LABELS)
    labels = _argmax_fields(rng, grid, k, integer(rng, cfg.field_cells_range))
    labels = _warp(rng, labels, uniform(rng, cfg.warp_strength_range))
    if rng.random() < cfg.p_background:
        labels[~_body_mask(rng, grid)] = 0
    pairs = adjacent_pairs(labels)
    if n != grid:
        labels = cv2.resize(labels, (n, n), interpolation=cv2.INTER_NEAREST_EXACT)
        labels = cv2.medianBlur(labels, _SMOOTH_KSIZE)

    radius = np.zeros(MAX_LABELS + 1, dtype=np.float32)
    eroded = rng.random(k) < cfg.p_erosion
    for label in range(1, k + 1):
        r = uniform(rng, cfg.erosion_radius_range) * n
        if eroded[label - 1]:
            radius[label] = max(1.0, r)
    if radius.any():
        labels = erode_labels(labels, radius)
    if n != size:
        labels = cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)

    candidates: list[tuple[int, ...]] = [(label,) for label in range(1, k + 1)]
    if pairs and rng.random() < cfg.p_union:
        candidates.append(pairs[int(rng.integers(len(pairs)))])
    intensity = _intensities(rng, k, cfg, contrast)
    return Scene(labels=labels, intensity=intensity, candidates=candidates)
