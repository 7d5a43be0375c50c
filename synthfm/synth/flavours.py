"""Modality flavours: turn a clean image into a CT-, MR-, US-like or generic acquisition.

A flavour (see :class:`~synthfm.synth.recipe.Flavour`) says which noise kinds are drawn and how
often each artefact happens.  Order of operations, at the native resolution: blur, bias field,
resolution loss, ultrasound depth/shadow gain, noise; then linear up-sampling to the output size,
field-of-view cut (image and labels) and clip to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from synthfm.synth.artefacts import apply_bias_field, apply_blur, apply_resolution_loss
from synthfm.synth.fields import integer
from synthfm.synth.noise import APPLY_ORDER, NOISES
from synthfm.synth.recipe import FLAVOURS, NOISE_KINDS, Flavour, Recipe
from synthfm.synth.ultrasound import apply_gain, fan_mask, linear_probe, sample_fan


@dataclass
class Acquired:
    """image: (H, W) float32 in [0, 1].  labels: (H, W) uint8 (0 outside the field of view).
    fov: (H, W) uint8 field-of-view mask (1 inside) or None for the whole image.
    noises: the noise kinds applied, in order."""

    image: np.ndarray
    labels: np.ndarray
    fov: np.ndarray | None
    noises: tuple[str, ...]


def choose_flavour(recipe: Recipe, rng: np.random.Generator) -> str:
    probs = np.array([getattr(recipe.flavours, name).p for name in FLAVOURS], dtype=np.float64)
    return FLAVOURS[int(rng.choice(len(FLAVOURS), p=probs / probs.sum()))]


def choose_noises(flavour: Flavour, rng: np.random.Generator) -> tuple[str, ...]:
    """Noise kinds for one image, drawn without replacement by weight, in :data:`APPLY_ORDER`."""
    weights = np.array([getattr(flavour.noise, k) for k in NOISE_KINDS], dtype=np.float64)
    usable = int((weights > 0).sum())
    count = min(integer(rng, flavour.num_noises_range), usable)
    picked = rng.choice(len(NOISE_KINDS), size=count, replace=False, p=weights / weights.sum())
    names = {NOISE_KINDS[int(i)] for i in picked}
    return tuple(k for k in APPLY_ORDER if k in names)


def acquire(
    image: np.ndarray, labels: np.ndarray, flavour: Flavour, recipe: Recipe, rng: np.random.Generator
) -> Acquired:
    """Apply the flavour's artefacts and noise to a clean image and bring it to the label map's size.

    image: (n, n) float32 clean image at the native resolution.  labels: (size, size) uint8.
    """
    size = labels.shape[0]
    art = recipe.artefacts
    # Draw every decision up front so the draw order does not depend on what was applied.
    blur, bias, lowres, fan, shadows = (rng.random(5) < [
        flavour.p_blur, flavour.p_bias, flavour.p_resolution_loss, flavour.p_fan, flavour.p_shadows,
    ]).tolist()
    noises = choose_noises(flavour, rng)
    if blur:
        image = apply_blur(image, rng, art)
    if bias:
        image = apply_bias_field(image, rng, art)
    if lowres:
        image = apply_resolution_loss(image, rng, art)
    probe = sample_fan(rng, size, art) if fan else linear_probe(size)
    if fan or shadows:
        image = apply_gain(image, probe, size, rng, art, shadows)
    for kind in noises:
        image = NOISES[kind](image, rng, recipe.noise)
    if image.shape != labels.shape:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    fov = None
    if fan:
        fov = fan_mask(probe, size)
        image *= fov
        labels = labels * fov
    np.clip(image, 0.0, 1.0, out=image)
    return Acquired(image=image, labels=labels, fov=fov, noises=noises)
