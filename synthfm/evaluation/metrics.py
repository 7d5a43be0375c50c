"""Per-object segmentation metrics on 2D masks: DSC, IoU, NSD and HD95.

Masks are (H, W) bool (anything non-zero counts as foreground).  Distances are in pixels, or in
mm when ``spacing=(row_mm, col_mm)`` is given (slices of volumes).

Surfaces: the boundary of a mask is its set of foreground pixels with at least one background
pixel among their 8 neighbours (pixels outside the image count as background).  Distances are
Euclidean between boundary pixel centres (``scipy.ndimage.distance_transform_edt`` with
``sampling=spacing``).

* DSC = 2|A∩B| / (|A|+|B|);  IoU = |A∩B| / |A∪B|.
* NSD at tolerance τ = (#boundary pixels of A within τ of B's boundary + the same from B to A)
  / (#boundary pixels of A + of B), counting boundary pixels (not surface-element lengths).
  τ is given in pixels (default 2); with ``spacing`` it becomes τ x the smaller in-plane pixel size.
* HD95 = max of the two directed 95th percentiles of boundary-to-boundary distances (the
  symmetric definition used by MONAI).

Conventions for empty masks (ground truth A, prediction B):

* A and B both empty: DSC = IoU = NSD = 1, HD95 = 0 (a correct "nothing there").
* exactly one empty (e.g. an empty prediction of a real object): DSC = IoU = NSD = 0 and
  HD95 = NaN (undefined: no surface to measure from).  Summaries report HD95 over the objects
  whose prediction is non-empty and count the empty predictions separately.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

DEFAULT_NSD_TOLERANCE = 2.0
_EIGHT = np.ones((3, 3), dtype=bool)


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice similarity coefficient of two masks of the same shape."""
    a, b = _pair(gt, pred)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union (Jaccard index) of two masks of the same shape."""
    a, b = _pair(gt, pred)
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(a, b).sum()) / union


def boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: foreground pixels with a background 8-neighbour (image edge counts as background)."""
    m = np.asarray(mask).astype(bool)
    eroded = ndimage.binary_erosion(m, structure=_EIGHT, border_value=0)
    return m & ~eroded


def surface_distances(
    gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each boundary pixel of ``gt`` to ``pred``'s boundary, and back.

    Both masks must be non-empty.  Returns two float64 arrays (pixels, or mm with spacing).
    Work is done on the union's bounding box (plus one pixel), which holds every nearest
    boundary pixel, so large images cost no more than their objects.
    """
    a, b = _pair(gt, pred)
    if not a.any() or not b.any():
        raise ValueError("surface distances need two non-empty masks")
    rows = np.flatnonzero((a | b).any(axis=1))
    cols = np.flatnonzero((a | b).any(axis=0))
    r0, r1 = rows[0], rows[-1] + 1
    c0, c1 = cols[0], cols[-1] + 1
    # one pixel of background around the box, so that boundaries at the box edge stay boundaries
    # of the true masks (erosion treats the padded ring as background, like outside the image)
    a = np.pad(a[r0:r1, c0:c1], 1)
    b = np.pad(b[r0:r1, c0:c1], 1)
    sampling = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    ba, bb = boundary(a), boundary(b)
    dist_to_b = ndimage.distance_transform_edt(~bb, sampling=sampling)
    dist_to_a = ndimage.distance_transform_edt(~ba, sampling=sampling)
    return dist_to_b[ba], dist_to_a[bb]


def nsd(
    gt: np.ndarray,
    pred: np.ndarray,
    tolerance: float = DEFAULT_NSD_TOLERANCE,
    spacing: tuple[float, float] | None = None,
) -> float:
    """Normalised surface distance (surface Dice) at ``tolerance`` pixels; see module docstring."""
    a, b = _pair(gt, pred)
    if not a.any() and not b.any():
        return 1.0
    if not a.any() or not b.any():
        return 0.0
    d_ab, d_ba = surface_distances(a, b, spacing)
    tau = _tolerance(tolerance, spacing)
    return float((np.sum(d_ab <= tau) + np.sum(d_ba <= tau)) / (d_ab.size + d_ba.size))


def hd95(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, float] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance; 0 if both empty, NaN if exactly one is."""
    a, b = _pair(gt, pred)
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return math.nan
    d_ab, d_ba = surface_distances(a, b, spacing)
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def object_metrics(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing: tuple[float, float] | None = None,
    tolerance: float = DEFAULT_NSD_TOLERANCE,
) -> dict[str, float]:
    """All metrics of one object at once: {"dice", "iou", "nsd", "hd95"} (surfaces computed once)."""
    a, b = _pair(gt, pred)
    out = {"dice": dice(a, b), "iou": iou(a, b)}
    if a.any() and b.any():
        d_ab, d_ba = surface_distances(a, b, spacing)
        tau = _tolerance(tolerance, spacing)
        out["nsd"] = float((np.sum(d_ab <= tau) + np.sum(d_ba <= tau)) / (d_ab.size + d_ba.size))
        out["hd95"] = float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
    else:
        both_empty = not a.any() and not b.any()
        out["nsd"] = 1.0 if both_empty else 0.0
        out["hd95"] = 0.0 if both_empty else math.nan
    return out


def _tolerance(tolerance: float, spacing: tuple[float, float] | None) -> float:
    return float(tolerance) if spacing is None else float(tolerance) * float(min(spacing))


def _pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(gt).astype(bool, copy=False)
    b = np.asarray(pred).astype(bool, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"masks must be 2D, got shape {a.shape}")
    return a, b
