"""Training-only prompt augmentations: zoomed crops, previous-mask inputs and corrective clicks.

These teach the model what evaluation and use ask of it but plain (image, click) pairs do not:

* :func:`zoom_on_target` crops a square around one target so that it fills 30-95 % of the crop
  side, so the model sees large objects (a user zooming in, the focus step, a big organ);
* :func:`perturbed_mask` turns a target into what a previous prediction or the neighbouring
  slice's mask looks like (dilated, eroded, shifted, rescaled, partly missing or empty) at the
  S/4 mask-input resolution, and :func:`mask_logits` encodes it as logits;
* :func:`corrective_clicks` places clicks where that previous mask is wrong (a positive click in
  the largest missed region, a negative one in the largest false region), as a user refining a
  mask would.

All draw from an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import cv2
import numpy as np

from synthfm.prompts import Clicks, simulate_clicks
from synthfm.synth.sample import Sample

ZOOM_FILL_RANGE = (0.3, 0.95)  # target's longer bbox side / crop side
MASK_LOGIT_SCALE = 6.0


def zoom_on_target(sample: Sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image (c, c) float32, labels (c, c) uint16): a square crop of ``sample`` around one target.

    The crop side c is the target's longer bbox side divided by U(ZOOM_FILL_RANGE), at least 16
    px and at most the image side; the target's bbox lies inside the crop at a random offset.
    Returns the whole sample when it has no valid target.
    """
    valid = sample.valid_targets
    if not valid:
        return sample.image, sample.labels
    mask = sample.target_mask(int(valid[int(rng.integers(len(valid)))]))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return sample.image, sample.labels
    h, w = mask.shape
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    extent = max(r1 - r0, c1 - c0)
    side = int(round(extent / rng.uniform(*ZOOM_FILL_RANGE)))
    side = int(np.clip(side, 16, min(h, w)))
    top = _offset(r0, r1, side, h, rng)
    left = _offset(c0, c1, side, w, rng)
    return sample.image[top:top + side, left:left + side], sample.labels[top:top + side, left:left + side]


def _offset(lo: int, hi: int, side: int, total: int, rng: np.random.Generator) -> int:
    """Start of a window of ``side`` in [0, total) containing [lo, hi) where possible."""
    first = max(0, min(hi - side, total - side))
    last = min(lo, total - side)
    if last < first:
        first, last = last, first
    return int(rng.integers(max(0, first), max(0, last) + 1))


def perturbed_mask(mask: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """(side, side) float32 in [0, 1]: ``mask`` (H, W) bool made to look like an imperfect prior.

    One or two of: dilation / erosion (1-3 px at S/4), a shift (up to 15 % of the object's
    size), a rescale about the centroid (0.8-1.2), a missing random half-plane, and, rarely, an
    empty mask; then a slight blur, as a thresholded upsampled prediction would have.
    """
    m = cv2.resize(mask.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    m = (m > 0.5).astype(np.uint8)
    if rng.random() < 0.05 or not m.any():
        return np.zeros((side, side), np.float32)
    ops = rng.choice(5, size=int(rng.integers(1, 3)), replace=False)
    ys, xs = np.nonzero(m)
    size = max(2.0, float(np.sqrt(m.sum())))
    for op in ops:
        if op == 0:
            r = int(rng.integers(1, 4))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            m = cv2.dilate(m, kernel) if rng.random() < 0.5 else cv2.erode(m, kernel)
        elif op == 1:
            dx, dy = rng.uniform(-0.15, 0.15, 2) * size
            m = cv2.warpAffine(m, np.float32([[1, 0, dx], [0, 1, dy]]), (side, side), flags=cv2.INTER_NEAREST)
        elif op == 2:
            cx, cy = xs.mean(), ys.mean()
            k = rng.uniform(0.8, 1.2)
            mat = np.float32([[k, 0, (1 - k) * cx], [0, k, (1 - k) * cy]])
            m = cv2.warpAffine(m, mat, (side, side), flags=cv2.INTER_NEAREST)
        elif op == 3:
            angle = rng.uniform(0, 2 * np.pi)
            yy, xx = np.mgrid[:side, :side]
            proj = (xx - xs.mean()) * np.cos(angle) + (yy - ys.mean()) * np.sin(angle)
            m = (m * (proj < rng.uniform(0.2, 0.8) * size)).astype(np.uint8)
        else:
            noise = cv2.GaussianBlur(rng.standard_normal((side, side)).astype(np.float32), (0, 0), 2.0)
            edge = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
            m = np.where(edge, (noise > 0).astype(np.uint8), m)
    return cv2.GaussianBlur(m.astype(np.float32), (3, 3), 0.8)


def mask_logits(prior: np.ndarray) -> np.ndarray:
    """(side, side) float32 logits of a [0, 1] prior (0.5 -> 0), as a model's low-res output looks."""
    return (MASK_LOGIT_SCALE * (2.0 * prior - 1.0)).astype(np.float32)


def corrective_clicks(mask: np.ndarray, prior: np.ndarray, max_pos: int, max_neg: int,
                      rng: np.random.Generator) -> Clicks:
    """Clicks for refining ``prior`` (side, side) towards ``mask`` (H, W) bool.

    Half of the time the user's clicks of the plain protocol (``simulate_clicks``), as when a
    neighbouring slice's mask comes with a click; otherwise 1-2 clicks, each at the error pixel
    farthest inside its error region (distance-transform maximum over missed and false parts):
    positive in a missed part, negative in a false part.  Never empty: falls back to one positive click.
    """
    if rng.random() < 0.5:
        n_pos = int(rng.integers(1, max_pos + 1))
        n_neg = int(rng.integers(0, max_neg + 1))
        return simulate_clicks(mask, n_pos, n_neg, rng)
    h, w = mask.shape
    prior_full = cv2.resize(prior, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    coords, labels = [], []
    errors = {1: (mask & ~prior_full).astype(np.uint8), 0: (~mask & prior_full).astype(np.uint8)}  # missed, false
    budget = {1: max_pos, 0: max_neg}
    for _ in range(int(rng.integers(1, 3))):
        best, pick = 0.0, None
        for value, region in errors.items():
            if budget[value] == 0 or not region.any():
                continue
            dist = cv2.distanceTransform(np.pad(region, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
            if float(dist.max()) > best:
                best, pick = float(dist.max()), (value, dist)
        if pick is None or best < 1.0:
            break
        value, dist = pick
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        coords.append((float(x), float(y)))
        labels.append(value)
        budget[value] -= 1
        cv2.circle(errors[value], (int(x), int(y)), max(2, int(best)), 0, -1)  # next click elsewhere
    if not labels:
        return simulate_clicks(mask, 1, 0, rng)
    return Clicks(np.asarray(coords, np.float32).reshape(-1, 2), np.asarray(labels, np.int32))
