"""Keep only the pieces of a predicted mask that the positive clicks are on.

A click asks for the object under it, and an object of the real-data protocol is one 8-connected
component (``synthfm.evaluation.datasets``); blobs of a predicted mask that no positive click
touches are then other structures that merely look alike.  The classical click methods evaluate.py
compares against post-process their regions the same way (``synthfm.evaluation.baselines``).  When
no positive click lies inside the mask (the model disagreed with every click) the mask is left
as it is rather than emptied.
"""

from __future__ import annotations

import numpy as np

from synthfm.prompts import pieces_at


def clicked_components(logits: np.ndarray, point_coords: np.ndarray | None, point_labels: np.ndarray | None) -> np.ndarray:
    """(C, H, W) float32 logits with every 8-connected piece of ``logits > 0`` that holds no positive
    click pushed below 0 (its sign flipped, so the magnitude stays a confidence).

    point_coords: (N, 2) (x, y) pixels of the same H x W frame; point_labels: (N,) 1 = positive.
    Without a positive click the logits come back unchanged.
    """
    if point_coords is None or point_labels is None:
        return logits
    coords = np.asarray(point_coords, np.float64).reshape(-1, 2)[np.asarray(point_labels).reshape(-1) == 1]
    if not len(coords):
        return logits
    h, w = logits.shape[-2:]
    cols = np.clip(np.floor(coords[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.floor(coords[:, 1]).astype(int), 0, h - 1)
    out = logits.copy()
    for c in range(logits.shape[0]):
        fg = logits[c] > 0
        kept = pieces_at(fg, rows, cols)
        if not kept.any():
            continue
        drop = fg & ~kept
        out[c][drop] = -out[c][drop]
    return out
