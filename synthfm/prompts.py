"""Click (and box) simulation from a ground-truth mask, shared by training and evaluation.

Protocol (see ../shared/DESIGN.md, "Prompt settings"):

* the first positive click is the interior point farthest from the object boundary
  (Euclidean distance transform; the image border counts as boundary);
* further positive clicks are drawn uniformly among object pixels whose distance to the boundary is
  at least a quarter of that maximum ("away from the edge"), falling back to any object pixel;
* negative clicks are drawn uniformly in a band just outside the object: farther than ``gap`` and
  no farther than ``gap + width`` pixels from it, both scaled to the object's equivalent diameter,
  falling back to any background pixel.

Coordinates follow SAM: ``(x, y)`` = (column, row) in pixels of the image the mask belongs to;
labels are 1 for positive and 0 for negative clicks.  Every function that draws takes an explicit
``np.random.Generator``; nothing touches global RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_SETTINGS: tuple[tuple[int, int], ...] = ((1, 0), (3, 0), (1, 2), (3, 2))


@dataclass(frozen=True)
class Clicks:
    """Simulated clicks.

    coords: (N, 2) float32, (x, y) pixels.  labels: (N,) int32, 1 = positive, 0 = negative.
    Positives come first, in the order they were drawn.
    """

    coords: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def parse_setting(text: str) -> tuple[int, int]:
    """Parse ``"p,n"`` into ``(p, n)``; raises ValueError on anything else."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"prompt setting must look like 'p,n' (e.g. 3,2), got {text!r}")
    p, n = int(parts[0]), int(parts[1])
    if p < 1:
        raise ValueError(f"prompt setting needs at least one positive click, got {text!r}")
    return p, n


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _band_sizes(area: int) -> tuple[int, int]:
    """(gap, width) of the negative band for an object of ``area`` pixels."""
    diameter = 2.0 * np.sqrt(area / np.pi)
    gap = max(2, int(round(0.05 * diameter)))
    width = max(3, int(round(0.15 * diameter)))
    return gap, width


def _distance_inside(crop: np.ndarray) -> np.ndarray:
    """Distance of each object pixel to the nearest non-object pixel; the crop edge counts as outside."""
    padded = np.pad(crop.astype(np.uint8), 1)
    return _exact_distance(padded)[1:-1, 1:-1]


def _exact_distance(binary: np.ndarray) -> np.ndarray:
    """float32 Euclidean distance of each nonzero pixel to the nearest zero pixel.

    scipy's exact transform, not ``cv2.distanceTransform(DIST_MASK_PRECISE)``: OpenCV's result
    varies between calls on some inputs (float noise at ties, seen on a 22 x 17 mask), which made
    the "deepest pixel" click, and so evaluation, not reproducible for a fixed seed.
    """
    from scipy import ndimage  # here, not at the top: importing scipy.ndimage costs ~0.3 s of every start-up

    return ndimage.distance_transform_edt(binary).astype(np.float32)


def _pick(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    """k (row, col) picks without replacement where possible."""
    n = rows.shape[0]
    if n == 0 or k == 0:
        return np.zeros((0, 2), dtype=np.int64)
    idx = rng.choice(n, size=k, replace=k > n)
    return np.stack([rows[idx], cols[idx]], axis=1)


def simulate_clicks(mask: np.ndarray, n_pos: int, n_neg: int, rng: np.random.Generator) -> Clicks:
    """Simulate ``n_pos`` positive and ``n_neg`` negative clicks for one object.

    mask: (H, W) bool or {0,1}; must contain at least one pixel.  Returns exactly
    ``n_pos + n_neg`` clicks unless the image has no background pixel at all, in which case the
    negatives are dropped.
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {m.shape}")
    if n_pos < 1 or n_neg < 0:
        raise ValueError(f"need n_pos >= 1 and n_neg >= 0, got ({n_pos}, {n_neg})")
    area = int(m.sum())
    if area == 0:
        raise ValueError("cannot place clicks on an empty mask")
    h, w = m.shape
    gap, width = _band_sizes(area)
    r0, r1, c0, c1 = _bbox(m)
    margin = gap + width + 1
    r0, r1 = max(0, r0 - margin), min(h, r1 + margin)
    c0, c1 = max(0, c0 - margin), min(w, c1 + margin)
    crop = m[r0:r1, c0:c1]

    dist = _distance_inside(crop)
    best = np.unravel_index(int(np.argmax(dist)), dist.shape)
    picks = [np.array([[best[0], best[1]]])]
    if n_pos > 1:
        far = dist >= max(1.0, 0.25 * float(dist.max()))
        far[best] = False
        rows, cols = np.nonzero(far)
        if rows.size == 0:
            rows, cols = np.nonzero(crop)
        picks.append(_pick(rng, rows, cols, n_pos - 1))

    neg = np.zeros((0, 2), dtype=np.int64)
    if n_neg > 0:
        outside = (~crop).astype(np.uint8)
        # distance from each background pixel to the object (the crop edge is not object)
        dist_out = _exact_distance(outside)
        band = (dist_out > gap) & (dist_out <= gap + width)
        rows, cols = np.nonzero(band)
        if rows.size > 0:
            neg = _pick(rng, rows, cols, n_neg)
        else:
            rows, cols = np.nonzero(~m)
            if rows.size > 0:
                neg = _pick(rng, rows, cols, n_neg) - np.array([r0, c0])

    pos = np.concatenate(picks, axis=0)
    rc = np.concatenate([pos, neg], axis=0) + np.array([r0, c0])
    coords = rc[:, ::-1].astype(np.float32)
    labels = np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(neg), np.int32)])
    return Clicks(coords=coords, labels=labels)


def next_interactive_click(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The next corrective click: centre of the largest error region of ``pred`` w.r.t. ``gt``.

    A missed region (false negative) gets a positive click, a spurious one (false positive) a
    negative click, placed at the region's point farthest from its boundary.  Returns
    ``((x, y) float32, label)`` or None when the prediction is already exact.
    """
    g = np.asarray(gt).astype(bool)
    p = np.asarray(pred).astype(bool)
    best: tuple[int, np.ndarray, int] | None = None
    for error, label in ((g & ~p, 1), (p & ~g, 0)):
        if not error.any():
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = int(stats[k, cv2.CC_STAT_AREA])
        if best is None or area > best[0]:
            best = (area, comp == k, label)
    if best is None:
        return None
    region = best[1]
    r0, r1, c0, c1 = _bbox(region)
    dist = _distance_inside(region[r0:r1, c0:c1])
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([c + c0, r + r0], dtype=np.float32), best[2]


def mask_to_box(mask: np.ndarray, rng: np.random.Generator | None = None, jitter: float = 0.0) -> np.ndarray:
    """Bounding box ``(x0, y0, x1, y1)`` float32 of a mask (inclusive pixel bounds).

    With ``rng`` and ``jitter > 0`` each side moves by Gaussian noise of std ``jitter`` x the box
    side (capped at 20 px), as SAM does when training with box prompts; the box stays in the image.
    """
    m = np.asarray(mask).astype(bool)
    r0, r1, c0, c1 = _bbox(m)
    box = np.array([c0, r0, c1 - 1, r1 - 1], dtype=np.float32)
    if rng is not None and jitter > 0:
        side = np.array([c1 - c0, r1 - r0, c1 - c0, r1 - r0], dtype=np.float32)
        box = box + np.clip(rng.normal(0.0, 1.0, 4) * jitter * side, -20, 20).astype(np.float32)
        h, w = m.shape
        box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
        box[[0, 2]] = np.sort(box[[0, 2]])
        box[[1, 3]] = np.sort(box[[1, 3]])
    return box


# ------------------------------------------------------------------------------- bounds checks

# A click may sit anywhere on a pixel, i.e. up to half a pixel beyond the outermost pixel centres;
# a box's edges likewise up to half a pixel beyond the image's outer pixel edges.  The one rule
# for segment, annotate and the Predictor.
EDGE_TOLERANCE = 0.5


def click_inside(x: float, y: float, hw: tuple[int, int]) -> bool:
    """Whether click ``(x, y)`` (column, row pixels) lies on an image of size ``hw = (H, W)``."""
    h, w = hw
    t = EDGE_TOLERANCE
    return bool(-t <= x <= w - 1 + t and -t <= y <= h - 1 + t)


def check_prompts_inside(coords, box, hw: tuple[int, int], box_name: str = "box") -> None:
    """UserError (one line) if a click of ``coords`` (N, 2) or ``box`` (x0, y0, x1, y1) is off the image."""
    from synthfm.errors import UserError

    h, w = hw
    if coords is not None:
        for x, y in np.asarray(coords, dtype=np.float64).reshape(-1, 2):
            if not click_inside(x, y, hw):
                raise UserError(
                    f"click ({x:g}, {y:g}) is outside the image ({w} x {h} pixels: x in 0..{w - 1}, y in 0..{h - 1})"
                )
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1))
        if x1 < x0 or y1 < y0:
            raise UserError(f"{box_name} needs x0 <= x1 and y0 <= y1, got ({x0:g}, {y0:g}, {x1:g}, {y1:g})")
        t = EDGE_TOLERANCE
        if x0 < -t or y0 < -t or x1 > w + t or y1 > h + t:
            raise UserError(f"{box_name} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the image ({w} x {h} pixels)")


def pieces_at(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(H, W) bool: the 8-connected pieces of ``mask`` (what a click selects) that hold any of the
    pixels (rows, cols) (in-range int indices); all False when none does."""
    _, comp = cv2.connectedComponents(np.asarray(mask, np.uint8), connectivity=8)
    hit = np.unique(comp[rows, cols])
    return np.isin(comp, hit[hit > 0])
