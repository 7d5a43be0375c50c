"""Geometry between an input image and the model's square S x S input, as SAM does it.

SAM's convention (``segment_anything.utils.transforms.ResizeLongestSide`` and ``SamPredictor``):

* the image is resized so that its longest side is S, the other side ``int(side * S / longest + 0.5)``,
  then padded at the bottom and right to S x S;
* click/box coordinates ``(x, y)`` = (column, row) pixels are scaled per axis by
  ``new_w / old_w`` and ``new_h / old_h`` (no half-pixel shift here: SAM's prompt encoder adds 0.5
  itself, so pixel index ``x`` means the centre of column ``x``);
* low-resolution mask logits (S/4 x S/4) are upsampled bilinearly (half-pixel centres, i.e.
  ``align_corners=False``) to S x S, cropped to the resized image, and resized bilinearly to the
  original size.

Resampling is done with OpenCV on numpy arrays: ``INTER_AREA`` when shrinking (anti-aliased, like
SAM's PIL resize) and ``INTER_LINEAR`` when enlarging.  ``cv2.resize(..., INTER_LINEAR)`` uses the
same half-pixel sampling grid as ``F.interpolate(mode="bilinear", align_corners=False)``.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

# cv2.resize refuses more than 512 channels; logits never come close, but stay explicit.
_CV2_MAX_CHANNELS = 512


def preprocess_shape(height: int, width: int, target: int) -> tuple[int, int]:
    """(h, w) after resizing the longest side of a ``height x width`` image to ``target`` (SAM's rounding)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = target * 1.0 / max(height, width)
    # max(1, .): a sliver like 1000 x 3 would round to 0 columns (SAM itself fails there)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def _resize(image: np.ndarray, hw: tuple[int, int], interpolation: int | None = None) -> np.ndarray:
    """Resize (H, W[, C]) to ``hw`` = (h, w); keeps dtype and a trailing channel axis (even of size 1)."""
    h, w = hw
    if image.shape[:2] == (h, w):
        return image.copy()
    if interpolation is None:
        shrinking = h * w < image.shape[0] * image.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    src = image
    if src.dtype == np.bool_:
        src = src.astype(np.uint8)
    if src.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        src = src.astype(np.float32)
    if src.ndim == 3 and src.shape[2] > _CV2_MAX_CHANNELS:
        raise ValueError(f"too many channels to resize: {src.shape[2]}")
    out = cv2.resize(src, (w, h), interpolation=interpolation)
    if image.ndim == 3 and out.ndim == 2:  # cv2 drops a size-1 channel axis
        out = out[:, :, None]
    return out.astype(image.dtype, copy=False) if image.dtype != np.bool_ else out.astype(bool)


def resize_longest_side(image: np.ndarray, target: int) -> np.ndarray:
    """Resize (H, W) or (H, W, C) so that max(H, W) == ``target`` (other side by SAM's rounding).

    Keeps the dtype (uint8 stays uint8).  Shrinking is anti-aliased (``INTER_AREA``).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    return _resize(image, preprocess_shape(image.shape[0], image.shape[1], target))


def pad_to_square(image: np.ndarray, size: int, value: float | Sequence[float] = 0) -> np.ndarray:
    """Pad (h, w[, C]) at the bottom and right to (size, size[, C]) with ``value`` (per channel allowed).

    Raises ValueError when the image is larger than ``size``.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    if h > size or w > size:
        raise ValueError(f"image {h}x{w} does not fit in {size}x{size}")
    out = np.empty((size, size) + image.shape[2:], dtype=image.dtype)
    out[...] = np.asarray(value, dtype=np.float64).astype(image.dtype)
    out[:h, :w] = image
    return out


def image_to_model_input(
    image: np.ndarray, size: int, pad_value: float | Sequence[float] = 0.0
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Turn an 8-bit-range image into the model's input tensor.

    image: (H, W) grey or (H, W, 3) RGB, values in 0..255 (uint8 or float).  Grey is repeated to
    three channels.  Returns ``(tensor, (h_resized, w_resized))`` where tensor is (1, 3, S, S)
    float32 in 0..255, the resized image in the top-left corner and ``pad_value`` (default 0; pass
    the model's pixel_mean to pad exactly like SAM, whose padding is 0 *after* normalisation)
    elsewhere.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.asarray(image).shape}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
    resized = resize_longest_side(arr, size).astype(np.float32)
    hw = (int(resized.shape[0]), int(resized.shape[1]))
    pv = np.broadcast_to(np.asarray(pad_value, dtype=np.float32), (3,))
    padded = pad_to_square(resized, size, pv)
    tensor = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]
    return tensor, hw


def coords_to_model(coords: np.ndarray, original_hw: tuple[int, int], size: int) -> np.ndarray:
    """Map (..., 2) ``(x, y)`` pixel coordinates of the original image to model-input pixels.

    Returns float32 of the same shape (SAM's ``ResizeLongestSide.apply_coords``).
    """
    c = np.array(coords, dtype=np.float64, copy=True)
    if c.shape[-1] != 2:
        raise ValueError(f"coords must have shape (..., 2), got {c.shape}")
    old_h, old_w = original_hw
    new_h, new_w = preprocess_shape(old_h, old_w, size)
    c[..., 0] *= new_w / old_w
    c[..., 1] *= new_h / old_h
    return c.astype(np.float32)


def box_to_model(box: np.ndarray, original_hw: tuple[int, int], size: int) -> np.ndarray:
    """Map (..., 4) boxes ``(x0, y0, x1, y1)`` in original pixels to model-input pixels (float32)."""
    b = np.asarray(box, dtype=np.float64)
    if b.shape[-1] != 4:
        raise ValueError(f"box must have shape (..., 4), got {b.shape}")
    return coords_to_model(b.reshape(b.shape[:-1] + (2, 2)), original_hw, size).reshape(b.shape)


def logits_to_original(
    low_res_logits: np.ndarray | torch.Tensor,
    resized_hw: tuple[int, int],
    original_hw: tuple[int, int],
    size: int,
) -> np.ndarray:
    """Low-res logits (C, S/4, S/4) -> (C, H, W) float32 logits in the original image frame.

    Same result as SAM's ``Sam.postprocess_masks`` (bilinear to S x S, crop to ``resized_hw``,
    bilinear to ``original_hw``) up to float rounding; computed with OpenCV on the CPU.
    """
    if isinstance(low_res_logits, torch.Tensor):
        low_res_logits = low_res_logits.detach().float().cpu().numpy()
    lr = np.asarray(low_res_logits, dtype=np.float32)
    if lr.ndim != 3:
        raise ValueError(f"low_res_logits must be (C, h, w), got shape {lr.shape}")
    c = lr.shape[0]
    h_r, w_r = resized_hw
    h_o, w_o = original_hw
    out = np.empty((c, h_o, w_o), dtype=np.float32)
    for i in range(c):
        up = cv2.resize(lr[i], (size, size), interpolation=cv2.INTER_LINEAR)
        crop = up[:h_r, :w_r]
        if (h_r, w_r) == (h_o, w_o):
            out[i] = crop
        else:
            out[i] = cv2.resize(crop, (w_o, h_o), interpolation=cv2.INTER_LINEAR)
    return out
