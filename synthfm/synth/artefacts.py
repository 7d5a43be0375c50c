"""Acquisition artefacts: bias field, blur (partial-volume edges) and resolution loss.

Each takes a (H, W) float32 image and an rng, draws its parameters from an
:class:`~synthfm.synth.recipe.ArtefactConfig` and returns the new image.
"""

from __future__ import annotations

import cv2
import numpy as np

from synthfm.synth.fields import FIELD_WORK, integer, smooth_field, uniform
from synthfm.synth.recipe import ArtefactConfig


def apply_bias_field(image: np.ndarray, rng: np.random.Generator, cfg: ArtefactConfig) -> np.ndarray:
    """Multiply by exp(s * f), f a very smooth field in [-1, 1] (2-4 bumps), s from ``bias_strength_range``."""
    h, w = image.shape
    strength = uniform(rng, cfg.bias_strength_range)
    work = (min(h, FIELD_WORK // 4), min(w, FIELD_WORK // 4))
    gain = np.exp(smooth_field(rng, work, integer(rng, (1, 3))) * np.float32(strength))
    image *= cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR)
    return image


def apply_blur(image: np.ndarray, rng: np.random.Generator, cfg: ArtefactConfig) -> np.ndarray:
    """Gaussian blur with std ``blur_sigma_range`` x side (skipped below 0.3 px, where it is a no-op)."""
    sigma = uniform(rng, cfg.blur_sigma_range) * image.shape[0]
    if sigma < 0.3:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def apply_resolution_loss(image: np.ndarray, rng: np.random.Generator, cfg: ArtefactConfig) -> np.ndarray:
    """Down-sample by a factor from ``resolution_factor_range``, then up-sample (linear).

    The down-sampling averages over the lost pixels (a box filter of the factor's width, then
    linear sampling: as good as cv2.INTER_AREA here and 5x faster for non-integer factors).
    A third of the time only the rows, a third only the columns lose resolution, like thick
    slices in a reformatted plane.
    """
    h, w = image.shape
    factor = uniform(rng, cfg.resolution_factor_range)
    axis = int(rng.integers(3))  # 0: rows, 1: columns, 2: both
    fy = factor if axis in (0, 2) else 1.0
    fx = factor if axis in (1, 2) else 1.0
    small_hw = (max(4, int(round(h * fy))), max(4, int(round(w * fx))))
    if small_hw == (h, w):
        return image
    box = (max(1, int(round(1.0 / fx))), max(1, int(round(1.0 / fy))))
    averaged = cv2.blur(image, box, borderType=cv2.BORDER_REFLECT) if box != (1, 1) else image
    small = cv2.resize(averaged, (small_hw[1], small_hw[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
