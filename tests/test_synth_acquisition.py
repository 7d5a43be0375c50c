"""Noise library, contrast modulation, artefacts, ultrasound geometry and modality flavours."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from synthfm.synth.artefacts import apply_bias_field, apply_blur, apply_resolution_loss
from synthfm.synth.fields import fast_normal, perlin, smooth_field
from synthfm.synth.flavours import acquire, choose_flavour, choose_noises
from synthfm.synth.noise import APPLY_ORDER, NOISES
from synthfm.synth.recipe import FLAVOURS, NOISE_KINDS, ArtefactConfig, NoiseConfig, default_recipe, recipe_from_dict
from synthfm.synth.scene import modulate_contrast
from synthfm.synth.ultrasound import apply_gain, fan_mask, linear_probe, sample_fan


def _neighbour_correlation(x: np.ndarray) -> float:
    a, b = x[:, :-1].ravel(), x[:, 1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def _fixed(cfg, **ranges):
    """cfg with the given *_range fields pinned to one value."""
    return dataclasses.replace(cfg, **{k: (v, v) for k, v in ranges.items()})


def test_fast_normal_is_standard_normal_and_deterministic():
    x = fast_normal(np.random.default_rng(0), (256, 256))
    assert x.dtype == np.float32 and x.shape == (256, 256)
    assert abs(float(x.mean())) < 0.02
    assert abs(float(x.std()) - 1.0) < 0.02
    assert abs(_neighbour_correlation(x)) < 0.02
    assert np.array_equal(x, fast_normal(np.random.default_rng(0), (256, 256)))


def test_smooth_fields_and_perlin_are_bounded_and_spatially_correlated():
    rng = np.random.default_rng(1)
    for field in (smooth_field(rng, (128, 96), 4), perlin(rng, (128, 128), 2, 4)):
        assert field.dtype == np.float32
        assert field.min() >= -1.0 - 1e-6 and field.max() <= 1.0 + 1e-6
        assert _neighbour_correlation(field) > 0.9


def test_gaussian_noise_has_the_drawn_sigma():
    cfg = _fixed(NoiseConfig(), gaussian_sigma_range=0.05)
    out = NOISES["gaussian"](np.full((200, 200), 0.5, np.float32), np.random.default_rng(0), cfg)
    assert abs(float(out.std()) - 0.05) < 0.003
    assert abs(float(out.mean()) - 0.5) < 0.003


def test_poisson_noise_grows_with_the_signal():
    cfg = _fixed(NoiseConfig(), poisson_photons_range=100.0)
    image = np.zeros((200, 200), np.float32)
    image[:, 100:] = 0.8
    image[:, :100] = 0.05
    out = NOISES["poisson"](image.copy(), np.random.default_rng(0), cfg)
    dark, bright = out[:, :100].std(), out[:, 100:].std()
    assert abs(bright - math.sqrt(0.8 / 100)) < 0.01
    assert abs(dark - math.sqrt(0.05 / 100)) < 0.005
    assert bright > 2.5 * dark


def test_speckle_is_multiplicative_with_mean_one():
    cfg = _fixed(NoiseConfig(), speckle_sigma_range=0.8, speckle_grain_range=1.0)
    zero = NOISES["speckle"](np.zeros((128, 128), np.float32), np.random.default_rng(0), cfg)
    assert np.all(zero == 0)
    out = NOISES["speckle"](np.full((256, 256), 0.5, np.float32), np.random.default_rng(0), cfg)
    assert abs(float(out.mean()) / 0.5 - 1.0) < 0.05
    assert out.std() > 0.1


def test_speckle_grain_makes_it_spatially_correlated():
    coarse = _fixed(NoiseConfig(), speckle_sigma_range=1.0, speckle_grain_range=12.0)
    out = NOISES["speckle"](np.full((256, 256), 0.5, np.float32), np.random.default_rng(0), coarse)
    assert _neighbour_correlation(out) > 0.5


def test_rician_noise_biases_dark_regions_upwards():
    cfg = _fixed(NoiseConfig(), rician_sigma_range=0.05)
    out = NOISES["rician"](np.zeros((200, 200), np.float32), np.random.default_rng(0), cfg)
    assert np.all(out >= 0)
    assert abs(float(out.mean()) - 0.05 * math.sqrt(math.pi / 2)) < 0.005  # Rayleigh mean


def test_perlin_noise_is_additive_and_structured():
    cfg = _fixed(NoiseConfig(), perlin_amplitude_range=0.1)
    out = NOISES["perlin"](np.full((128, 128), 0.5, np.float32), np.random.default_rng(0), cfg)
    assert 0.0 < float(np.abs(out - 0.5).max()) <= 0.1 + 1e-6
    assert _neighbour_correlation(out) > 0.9


def test_every_noise_kind_is_reachable_from_the_default_generic_flavour():
    recipe = default_recipe()
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(100):
        kinds = choose_noises(recipe.flavours.generic, rng)
        assert list(kinds) == [k for k in APPLY_ORDER if k in kinds]
        seen.update(kinds)
    assert seen == set(NOISE_KINDS) == set(NOISES)


@pytest.mark.parametrize("flavour, kind", [("ct", {"gaussian", "poisson"}), ("mr", {"rician"}), ("us", {"speckle"})])
def test_modality_flavours_use_their_noise(flavour, kind):
    recipe = default_recipe()
    rng = np.random.default_rng(0)
    drawn = set()
    for _ in range(30):
        drawn.update(choose_noises(getattr(recipe.flavours, flavour), rng))
    assert drawn == kind


def test_flavour_probabilities_are_respected():
    recipe = recipe_from_dict({"flavours": {"generic": {"p": 0.0}, "ct": {"p": 0.0}, "mr": {"p": 1.0}, "us": {"p": 0.0}}})
    rng = np.random.default_rng(0)
    assert {choose_flavour(recipe, rng) for _ in range(20)} == {"mr"}
    default = default_recipe()
    assert {choose_flavour(default, rng) for _ in range(200)} == set(FLAVOURS)


def test_contrast_modulation_gamma_and_inversion():
    contrast = dataclasses.replace(default_recipe().contrast, p_gamma=0.0, p_invert=1.0)
    image = np.linspace(-0.2, 1.2, 100, dtype=np.float32).reshape(10, 10)
    out = modulate_contrast(image.copy(), contrast, np.random.default_rng(0))
    assert np.allclose(out, 1.0 - np.clip(image, 0, 1))
    contrast = dataclasses.replace(contrast, p_gamma=1.0, p_invert=0.0, gamma_range=(2.0, 2.0))
    out = modulate_contrast(image.copy(), contrast, np.random.default_rng(0))
    assert np.allclose(out, np.clip(image, 0, 1) ** 2, atol=1e-5)


def test_bias_blur_and_resolution_loss():
    art = ArtefactConfig()
    rng = np.random.default_rng(0)
    flat = np.full((128, 128), 0.5, np.float32)
    biased = apply_bias_field(flat.copy(), rng, _fixed(art, bias_strength_range=0.5))
    assert biased.min() > 0 and biased.max() / biased.min() > 1.2
    assert _neighbour_correlation(biased) > 0.99
    checker = (np.indices((128, 128)).sum(0) % 2).astype(np.float32)
    blurred = apply_blur(checker, rng, _fixed(art, blur_sigma_range=0.01))
    assert blurred.std() < 0.1 * checker.std()
    white = fast_normal(np.random.default_rng(3), (128, 128))
    for seed in range(4):
        low = apply_resolution_loss(white, np.random.default_rng(seed), _fixed(art, resolution_factor_range=0.25))
        assert low.shape == white.shape and low.dtype == np.float32
        # white noise becomes correlated along the axis (or axes) that lost resolution
        assert max(_neighbour_correlation(low), _neighbour_correlation(low.T)) > 0.5


def test_fan_mask_is_a_sector_below_the_apex():
    probe = sample_fan(np.random.default_rng(0), 128, ArtefactConfig())
    mask = fan_mask(probe, 128)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask[0, 0] == 0 and mask[0, -1] == 0  # top corners are outside a downward fan
    assert mask[int(128 * 0.6), 64] == 1  # the middle of the image is inside
    assert 0.2 < mask.mean() < 0.9


def test_acoustic_shadows_darken_and_depth_attenuates():
    art = _fixed(ArtefactConfig(), shadows_range=3, shadow_strength_range=0.9, depth_attenuation_range=0.5)
    image = np.full((128, 128), 0.5, np.float32)
    out = apply_gain(image.copy(), linear_probe(128), 128, np.random.default_rng(0), art, shadows=True)
    assert out.max() <= 0.5 + 1e-6
    assert out[-5:].mean() < out[:5].mean()  # deeper is darker
    assert out.min() < 0.5 * 0.5  # shadows


def test_us_flavour_cuts_image_and_labels_to_the_fan():
    recipe = default_recipe()
    us = dataclasses.replace(recipe.flavours.us, p_fan=1.0)
    labels = np.ones((96, 96), np.uint8)
    image = np.full((96, 96), 0.6, np.float32)
    out = acquire(image, labels, us, recipe, np.random.default_rng(0))
    assert out.fov is not None
    outside = out.fov == 0
    assert outside.any()
    assert np.all(out.image[outside] == 0) and np.all(out.labels[outside] == 0)
    assert np.all(out.labels[~outside] == 1)
    assert out.noises == ("speckle",)


def test_acquire_upsamples_a_native_image_to_the_label_size():
    recipe = default_recipe()
    out = acquire(np.full((48, 48), 0.5, np.float32), np.zeros((96, 96), np.uint8), recipe.flavours.ct, recipe,
                  np.random.default_rng(0))
    assert out.image.shape == (96, 96) and out.image.dtype == np.float32
    assert out.image.min() >= 0 and out.image.max() <= 1
