"""Augmentation that keeps the image, the label map and the field of view aligned.

Geometric ops (flips, 90-degree rotations, affine, grid distortion) run through albumentations,
moving the image with linear and the label map with nearest interpolation; uncovered corners
become 0 and fall outside the field of view.  The label map travels as one mask holding
``label + 1`` inside the field of view and 0 outside, so a single warp carries both.
Brightness/contrast is one multiply-add done here (albumentations' float path for it costs about
10 ms at 1024^2).

Determinism: which ops apply is drawn from the sample's rng; the Compose of exactly those ops
(each with p=1, cached per recipe and selection) is re-seeded with ``Compose.set_random_seed``
from an integer drawn from the same rng before every call, so the output is a pure function of
the rng.  When no geometric op is drawn, albumentations is not called at all.  No global RNG
state is read or written.
"""

from __future__ import annotations

import functools

import albumentations as A
import cv2
import numpy as np

from synthfm.synth.fields import uniform
from synthfm.synth.recipe import AugmentConfig

GEOMETRIC_OPS: tuple[str, ...] = ("hflip", "vflip", "rotate90", "affine", "elastic")


def _op(cfg: AugmentConfig, name: str) -> A.BasicTransform:
    geometric = dict(
        interpolation=cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=0,
        p=1.0,
    )
    if name == "hflip":
        return A.HorizontalFlip(p=1.0)
    if name == "vflip":
        return A.VerticalFlip(p=1.0)
    if name == "rotate90":
        return A.RandomRotate90(p=1.0)
    if name == "affine":
        return A.Affine(rotate=cfg.rotate_range, scale=cfg.scale_range, translate_percent=cfg.translate_range,
                        **geometric)
    if name == "elastic":
        return A.GridDistortion(num_steps=5, distort_limit=cfg.elastic_strength_range, **geometric)
    raise ValueError(f"unknown augmentation {name!r}")


@functools.lru_cache(maxsize=64)
def build_pipeline(cfg: AugmentConfig, ops: tuple[str, ...]) -> A.Compose:
    """The albumentations Compose applying exactly ``ops`` (names from GEOMETRIC_OPS), in order."""
    return A.Compose([_op(cfg, name) for name in ops], seed=0)


def _probabilities(cfg: AugmentConfig) -> tuple[float, ...]:
    return (cfg.p_hflip, cfg.p_vflip, cfg.p_rotate90, cfg.p_affine, cfg.p_elastic)


def _encode(labels: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    """``labels + 1`` inside the field of view, 0 outside (uint16 if 255 would overflow)."""
    if labels.dtype == np.uint8 and int(labels.max()) < 255:
        encoded = cv2.add(labels, 1)
    else:
        encoded = labels.astype(np.uint16) + np.uint16(1)
    if fov is not None:
        encoded *= fov.astype(encoded.dtype, copy=False)
    return encoded


def _contiguous(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of a flipped/rotated view (albumentations returns views for those).

    A transposed view is copied with cv2.transpose, ~8x faster than numpy's strided copy.
    """
    if a.flags.c_contiguous:
        return a
    if a.ndim == 2 and abs(a.strides[0]) < abs(a.strides[1]):
        return cv2.transpose(np.ascontiguousarray(a.T))
    return np.ascontiguousarray(a)


def augment(
    image: np.ndarray,
    labels: np.ndarray,
    fov: np.ndarray | None,
    cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Augment one sample; returns (image float32 in [0, 1], labels, fov uint8 or None).

    image: (H, W) float32; labels: (H, W) uint8/uint16; fov: (H, W) uint8 (1 inside) or None for
    the whole image.  Labels keep their dtype; the inputs are not modified.  The random draws do
    not depend on ``cfg.enabled``.  Geometric ops keep the image in [0, 1]; brightness/contrast clips.
    """
    draws = rng.random(len(GEOMETRIC_OPS) + 1)
    seed = int(rng.integers(0, 2**31 - 1))
    beta = uniform(rng, cfg.brightness_range)
    alpha = 1.0 + uniform(rng, cfg.contrast_range)
    if not cfg.enabled:
        return image, labels, fov
    ops = tuple(name for name, p, u in zip(GEOMETRIC_OPS, _probabilities(cfg), draws) if u < p)
    if ops:
        pipeline = build_pipeline(cfg, ops)
        pipeline.set_random_seed(seed)
        out = pipeline(image=image, mask=_encode(labels, fov))
        image = _contiguous(out["image"]).astype(np.float32, copy=False)
        encoded = _contiguous(out["mask"])
        inside = encoded > 0
        if fov is None and inside.all():
            fov = None
        else:
            fov = inside.astype(np.uint8)
            # Linear interpolation leaks a little image into the fill; outside is exactly 0.
            image = image * fov
        # Saturating subtraction: outside (0) stays 0, label + 1 becomes label.
        labels = cv2.subtract(encoded, 1).astype(labels.dtype, copy=False)
    if draws[-1] < cfg.p_brightness_contrast:
        image = image * np.float32(alpha)  # a new array: the caller's image is never modified
        image += np.float32(beta)
        np.clip(image, 0.0, 1.0, out=image)
        if fov is not None:
            image *= fov
    return image, labels, fov
