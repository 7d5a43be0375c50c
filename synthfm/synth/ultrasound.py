"""Ultrasound geometry: fan-shaped field of view, depth attenuation and acoustic shadows.

A curvilinear probe sits at an apex above (or at) the top edge; the field of view is the annular
sector between an inner and an outer radius.  Shadows are dark sectors (vertical bands for a
linear probe) that start at a random depth and extend to the far end, as behind a calcification
or gas.  Gains are computed on a coarse grid, softened, and up-sampled, so they cost about a
millisecond at 1024 px; the field-of-view mask is a sub-pixel polygon drawn at full size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synthfm.synth.fields import integer, magnitude, uniform
from synthfm.synth.recipe import ArtefactConfig

_GAIN_WORK = 128
_SHIFT = 4


@dataclass(frozen=True)
class Probe:
    """Geometry in pixels of the full image.  For a linear probe ``half_angle`` is 0 and the
    field of view is the whole image; lateral = x, depth = y."""

    apex: tuple[float, float]
    inner: float
    outer: float
    half_angle: float  # radians; 0 = linear probe


def sample_fan(rng: np.random.Generator, size: int, cfg: ArtefactConfig) -> Probe:
    half = math.radians(uniform(rng, cfg.fan_angle_range)) / 2.0
    apex_y = -rng.uniform(0.0, 0.2) * size
    apex_x = size * rng.uniform(0.45, 0.55)
    inner = -apex_y + rng.uniform(0.0, 0.08) * size
    outer = -apex_y + rng.uniform(0.85, 1.0) * size
    return Probe(apex=(apex_x, apex_y), inner=inner, outer=outer, half_angle=half)


def linear_probe(size: int) -> Probe:
    return Probe(apex=(0.0, 0.0), inner=0.0, outer=float(size), half_angle=0.0)


def fan_mask(probe: Probe, size: int) -> np.ndarray:
    """(size, size) uint8 field of view, 1 inside the fan sector, 0 outside."""
    n_arc = 96
    ax, ay = probe.apex
    angles = np.linspace(-probe.half_angle, probe.half_angle, n_arc)
    # Angle 0 points straight down (+y); positive angles go towards +x.
    outer = np.stack([ax + probe.outer * np.sin(angles), ay + probe.outer * np.cos(angles)], axis=1)
    inner = np.stack([ax + probe.inner * np.sin(angles[::-1]), ay + probe.inner * np.cos(angles[::-1])], axis=1)
    polygon = np.round(np.concatenate([outer, inner]) * (1 << _SHIFT)).astype(np.int32)
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [polygon], color=1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


def _lateral_depth(probe: Probe, size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, n) float32 lateral position in [-1, 1] and depth in [0, 1] on a coarse grid."""
    coords = (np.arange(n, dtype=np.float32) + 0.5) * (size / n)
    x, y = np.meshgrid(coords, coords)
    if probe.half_angle == 0.0:
        return x / np.float32(size) * 2 - 1, y / np.float32(size)
    dx, dy = x - np.float32(probe.apex[0]), y - np.float32(probe.apex[1])
    radius = magnitude(dx, dy)
    angle = np.arctan2(dx, dy)
    lateral = angle / np.float32(probe.half_angle)
    depth = np.clip((radius - probe.inner) / np.float32(probe.outer - probe.inner), 0.0, 1.0)
    return lateral.astype(np.float32), depth.astype(np.float32)


def apply_gain(
    image: np.ndarray, probe: Probe, size: int, rng: np.random.Generator, cfg: ArtefactConfig, shadows: bool
) -> np.ndarray:
    """Multiply by depth attenuation and (if ``shadows``) acoustic shadow gains.

    image: (h, w) float32, any resolution covering the full (size, size) frame ``probe`` is in.
    """
    n = min(size, _GAIN_WORK)
    lateral, depth = _lateral_depth(probe, size, n)
    attenuation = uniform(rng, cfg.depth_attenuation_range)
    gain = np.float32(1.0) - np.float32(attenuation) * depth
    if shadows:
        for _ in range(integer(rng, cfg.shadows_range)):
            centre = rng.uniform(-0.8, 0.8)
            width = math.radians(uniform(rng, cfg.shadow_width_range))
            width = width / probe.half_angle if probe.half_angle else width
            start = rng.uniform(0.1, 0.7)
            inside = (np.abs(lateral - np.float32(centre)) < width / 2) & (depth > start)
            gain[inside] *= np.float32(1.0 - uniform(rng, cfg.shadow_strength_range))
        gain = cv2.GaussianBlur(gain, (0, 0), sigmaX=max(0.5, n / 128))
    image *= cv2.resize(gain, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return image
