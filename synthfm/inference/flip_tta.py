"""Flip test-time augmentation: average the prediction with that of the mirrored image.

The image is mirrored left-right (columns reversed), encoded once (lazily, on the first prompt
that uses it), the prompts are mirrored with it, and the mirrored pass's full-frame logits are
mirrored back and averaged with the plain pass's logits (scores are averaged too).  Pixel-index
convention as everywhere in synthfm: column ``x`` of a ``W`` wide image maps to ``W - 1 - x``,
and a box (x0, y0, x1, y1) with inclusive bounds to (W - 1 - x1, y0, W - 1 - x0, y1).

Only single-mask predictions without a mask input are averaged: a mask input lives in the padded
model frame of the plain image, and the three multimask candidates need not come in the same
order for the two passes.
"""

from __future__ import annotations

import numpy as np


def mirror_image(image: np.ndarray) -> np.ndarray:
    """(H, W[, C]) -> the same image with its columns reversed (a contiguous copy)."""
    return np.ascontiguousarray(np.asarray(image)[:, ::-1])


def mirror_points(coords: np.ndarray | None, width: int) -> np.ndarray | None:
    """(N, 2) (x, y) pixel coordinates in a ``width`` wide image -> their mirror images (float64)."""
    if coords is None:
        return None
    out = np.array(coords, dtype=np.float64).reshape(-1, 2)
    out[:, 0] = (width - 1) - out[:, 0]
    return out


def mirror_box(box: np.ndarray | None, width: int) -> np.ndarray | None:
    """(4,) (x0, y0, x1, y1) inclusive pixel box -> the mirrored box (float64, x0 <= x1 kept)."""
    if box is None:
        return None
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64).reshape(4)
    return np.array([(width - 1) - x1, y0, (width - 1) - x0, y1])


def average_with_mirror(logits: np.ndarray, scores: np.ndarray, mirrored_logits: np.ndarray,
                        mirrored_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of (C, H, W) logits and the mirrored pass's (C, H, W) logits mirrored back; mean scores."""
    back = mirrored_logits[..., ::-1]
    return ((logits + back) * 0.5).astype(np.float32), ((scores + mirrored_scores) * 0.5).astype(np.float32)
