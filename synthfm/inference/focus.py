"""The focus step: re-segment a crop around the first prediction at full model resolution.

A small object in a large image covers few cells of the model's input (a 30 px kidney in a 512 px
CT slice is 15 px at S = 256).  After the first prediction, the focus step (as FocalClick and
nnInteractive's zoom do) crops a square around the predicted object and the positive clicks,
expanded by ``expand``, runs the model again on that crop with the clicks mapped into it and the
first prediction as the mask input, and pastes the crop's logits back into the full-frame
logits.  It is skipped when the crop would not zoom in (side >= ``max_fraction`` of the image).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from synthfm.inference.transforms import coords_to_model, image_to_model_input, logits_to_original

FOCUS_EXPAND = 1.6
FOCUS_MAX_FRACTION = 0.7
FOCUS_MIN_SIDE = 24
_EMPTY_LOGIT = -20.0


def focus_window(mask: np.ndarray, positive: np.ndarray, expand: float = FOCUS_EXPAND,
                 max_fraction: float = FOCUS_MAX_FRACTION) -> tuple[int, int, int] | None:
    """(top, left, side) of the square crop for ``mask`` (H, W) bool and ``positive`` (P, 2) (x, y), or None.

    The square is centred on the bounding box of the mask and the positive clicks, ``expand``
    times its longer side (at least FOCUS_MIN_SIDE px), shifted to lie inside the image.  None when
    there is nothing to focus on or the square would be ``max_fraction`` of the image or more.
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    px = np.asarray(positive, dtype=np.float64).reshape(-1, 2)
    xs = np.concatenate([xs.astype(np.float64), px[:, 0]])
    ys = np.concatenate([ys.astype(np.float64), px[:, 1]])
    if xs.size == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = int(round(max(x1 - x0, y1 - y0, FOCUS_MIN_SIDE / expand) * expand))
    if side >= max_fraction * max(h, w):
        return None
    side = min(side, h, w)
    top = int(round((y0 + y1) / 2 - side / 2))
    left = int(round((x0 + x1) / 2 - side / 2))
    top = min(max(top, 0), h - side)
    left = min(max(left, 0), w - side)
    return top, left, side


def focused_logits(model, image_uint8: np.ndarray, logits: np.ndarray, point_coords: np.ndarray | None,
                   point_labels: np.ndarray | None, device: torch.device) -> tuple[np.ndarray, float] | None:
    """Full-frame (H, W) float32 logits after the focus step, and the focus pass's score; or None.

    image_uint8: (H, W[, 3]) the image the model saw; logits: (H, W) float32 first-pass logits;
    point_coords (N, 2) (x, y) / point_labels (N,) in the image's pixels (may be None).
    None when :func:`focus_window` finds no window worth zooming into.
    """
    coords = np.zeros((0, 2)) if point_coords is None else np.asarray(point_coords, np.float64).reshape(-1, 2)
    labels = np.zeros((0,), np.int64) if point_labels is None else np.asarray(point_labels).reshape(-1)
    window = focus_window(logits > 0, coords[labels == 1])
    if window is None:
        return None
    top, left, side = window
    size = int(model.image_size)
    crop = image_uint8[top:top + side, left:left + side]
    tensor, hw = image_to_model_input(crop, size)
    prior = np.full((size // 4, size // 4), _EMPTY_LOGIT, np.float32)
    low_h, low_w = max(1, hw[0] // 4), max(1, hw[1] // 4)
    prior[:low_h, :low_w] = cv2.resize(logits[top:top + side, left:left + side], (low_w, low_h),
                                       interpolation=cv2.INTER_AREA)
    with torch.inference_mode():
        emb = model.encode(tensor.to(device), valid_hw=hw)
        kwargs = {}
        if coords.shape[0]:
            local = coords_to_model(coords - np.array([left, top]), (side, side), size)
            kwargs = dict(point_coords=torch.from_numpy(local)[None].to(device),
                          point_labels=torch.from_numpy(labels.astype(np.int64))[None].to(device))
        low, iou = model.decode(emb, mask_inputs=torch.from_numpy(prior)[None, None].to(device), **kwargs)
    local_logits = logits_to_original(low[0].float().cpu().numpy(), hw, (side, side), size)[0]
    out = logits.copy()
    out[top:top + side, left:left + side] = local_logits
    return out, float(iou[0, 0])
