"""Target validity: flag targets that are empty, too small, or cut by the image / field-of-view border."""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from synthfm.synth.recipe import TargetConfig
from synthfm.synth.sample import Target


def border_ring(fov: np.ndarray) -> np.ndarray:
    """(H, W) uint8 mask (1) of field-of-view pixels next to its outside, the image edge included.

    fov: (H, W) uint8, non-zero inside the field of view.
    """
    inside = (fov > 0).astype(np.uint8)
    inner = cv2.erode(inside, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.subtract(inside, inner)


def _histogram(labels: np.ndarray, n_bins: int, mask: np.ndarray | None = None) -> np.ndarray:
    """(n_bins,) int64 pixel count per label id, optionally only where ``mask`` (uint8) is non-zero."""
    if labels.dtype == np.uint8:
        hist = cv2.calcHist([labels], [0], mask, [256], [0, 256]).ravel().astype(np.int64)
        return np.pad(hist, (0, max(0, n_bins - 256)))[: max(n_bins, 256)]
    values = labels if mask is None else labels[mask > 0]
    return np.bincount(values.ravel(), minlength=n_bins).astype(np.int64)


def assess_targets(
    labels: np.ndarray,
    candidates: Sequence[tuple[int, ...]],
    cfg: TargetConfig,
    fov: np.ndarray | None = None,
) -> tuple[Target, ...]:
    """One :class:`Target` per candidate (a tuple of label ids), with validity.

    labels: (H, W) uint8 or uint16 label map.  fov: optional (H, W) uint8 field-of-view mask.
    Reasons, checked in this order: "empty" (no pixel), "too_small" (area below
    ``min_area_fraction`` of the image), "touches_border" (pixels on the image/field-of-view
    border exceed ``max_border_fraction`` of the perimeter of a disc of the same area).
    """
    h, w = labels.shape
    n_bins = max(int(labels.max()), max((max(c) for c in candidates if c), default=0)) + 1
    area = _histogram(labels, n_bins)
    if fov is None:
        edge = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
        contact = np.bincount(edge, minlength=len(area)).astype(np.int64)
    else:
        contact = _histogram(labels, len(area), border_ring(fov))
    min_area = cfg.min_area_fraction * h * w
    out = []
    for ids in candidates:
        idx = np.asarray(ids, dtype=np.int64)
        a = int(area[idx].sum())
        c = int(contact[idx].sum())
        if a == 0:
            out.append(Target(tuple(int(i) for i in ids), False, "empty"))
        elif a < min_area:
            out.append(Target(tuple(int(i) for i in ids), False, "too_small"))
        elif c > cfg.max_border_fraction * 2.0 * math.sqrt(math.pi * a):
            out.append(Target(tuple(int(i) for i in ids), False, "touches_border"))
        else:
            out.append(Target(tuple(int(i) for i in ids), True, ""))
    return tuple(out)
