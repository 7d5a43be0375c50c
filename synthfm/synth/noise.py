"""The noise library: Gaussian, Poisson, Perlin, speckle and Rician noise.

Each function takes a (H, W) float32 image (roughly [0, 1]), draws its own parameters from a
:class:`~synthfm.synth.recipe.NoiseConfig` with the given rng, and returns the noisy image
(possibly the same array, modified in place).  :data:`NOISES` maps the recipe's kind names to
them; :data:`APPLY_ORDER` is the order in which several drawn kinds are applied (multiplicative
speckle before additive noise; Rician last because it takes a magnitude).
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from synthfm.synth.fields import fast_normal, integer, log_uniform, magnitude, perlin, uniform
from synthfm.synth.recipe import NoiseConfig

# Speckle grain sizes in the recipe are given for this image side.
_REFERENCE_SIDE = 1024


def add_gaussian(image: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig) -> np.ndarray:
    """Additive white Gaussian noise of std from ``gaussian_sigma_range``."""
    sigma = np.float32(uniform(rng, cfg.gaussian_sigma_range))
    image += fast_normal(rng, image.shape) * sigma
    return image


def add_poisson(image: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig) -> np.ndarray:
    """Signal-dependent (photon-counting) noise: std sqrt(x / photons).

    Uses the Gaussian approximation of the Poisson distribution (exact in mean and variance),
    which is far cheaper than drawing Poisson counts per pixel.
    """
    photons = log_uniform(rng, *cfg.poisson_photons_range)
    std = cv2.sqrt(np.maximum(image, np.float32(0.0)) * np.float32(1.0 / photons))
    image += fast_normal(rng, image.shape) * std
    return image


def add_perlin(image: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig) -> np.ndarray:
    """Additive multi-octave Perlin noise (structured, cloud-like)."""
    amplitude = np.float32(uniform(rng, cfg.perlin_amplitude_range))
    field = perlin(rng, image.shape, integer(rng, cfg.perlin_cells_range), integer(rng, cfg.perlin_octaves_range))
    image += field * amplitude
    return image


def apply_speckle(image: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig) -> np.ndarray:
    """Multiplicative ultrasound-like speckle: x * ((1 - s) + s * R), R Rayleigh with mean 1.

    R is the magnitude of a complex Gaussian field drawn on a coarser grid (one sample per grain,
    grains 1.5x wider than tall, like a lateral point-spread function) and up-sampled.
    """
    strength = np.float32(uniform(rng, cfg.speckle_sigma_range))
    grain = uniform(rng, cfg.speckle_grain_range) * image.shape[0] / _REFERENCE_SIDE
    h, w = image.shape
    gh = max(8, min(h, int(round(h / max(grain, 1.0)))))
    gw = max(8, min(w, int(round(w / max(1.5 * grain, 1.0)))))
    rayleigh = magnitude(fast_normal(rng, (gh, gw)), fast_normal(rng, (gh, gw)))
    rayleigh *= np.float32(1.0 / math.sqrt(math.pi / 2.0))  # Rayleigh(1) has mean sqrt(pi/2)
    if (gh, gw) != (h, w):
        rayleigh = cv2.resize(rayleigh, (w, h), interpolation=cv2.INTER_LINEAR)
    gain = rayleigh * strength
    gain += np.float32(1.0) - strength
    image *= gain
    return image


def apply_rician(image: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig) -> np.ndarray:
    """MRI magnitude noise: |x + sigma (n1 + i n2)|, which biases dark regions upwards."""
    sigma = np.float32(uniform(rng, cfg.rician_sigma_range))
    real = image + fast_normal(rng, image.shape) * sigma
    imag = fast_normal(rng, image.shape) * sigma
    return magnitude(real, imag)


NOISES: dict[str, Callable[[np.ndarray, np.random.Generator, NoiseConfig], np.ndarray]] = {
    "gaussian": add_gaussian,
    "poisson": add_poisson,
    "perlin": add_perlin,
    "speckle": apply_speckle,
    "rician": apply_rician,
}

APPLY_ORDER: tuple[str, ...] = ("speckle", "perlin", "poisson", "gaussian", "rician")
