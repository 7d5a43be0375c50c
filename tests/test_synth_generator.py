"""generate_sample / sample_at: the sample contract, determinism, alignment and validity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synthfm.synth.generator import generate_sample, native_size, sample_at
from synthfm.synth.recipe import FLAVOURS, default_recipe, load_recipe, recipe_from_dict
from synthfm.synth.sample import Sample

# A recipe whose images are piecewise constant: no texture, noise, artefacts, or intensity
# augmentation, at full native resolution; geometric augmentation stays on.
CLEAN = {
    "flavours": {
        name: {"p": 1.0 if name == "ct" else 0.0, "p_bias": 0.0, "p_blur": 0.0, "p_resolution_loss": 0.0,
               "p_fan": 0.0, "p_shadows": 0.0}
        for name in FLAVOURS
    },
    "noise": {"gaussian_sigma_range": [0.0, 0.0]},
    "contrast": {"texture_amplitude_range": [0.0, 0.0], "p_gamma": 0.0, "p_invert": 0.0},
    "artefacts": {"native_scale_range": [1.0, 1.0]},
    "augment": {"p_brightness_contrast": 0.0, "p_elastic": 0.0, "p_affine": 0.0, "p_hflip": 0.5, "p_vflip": 0.5, "p_rotate90": 0.5},
}


CLEAN["flavours"]["ct"]["noise"] = {"gaussian": 1.0, "poisson": 0.0}


def _check_contract(sample: Sample, size: int, recipe) -> None:
    assert sample.image.shape == (size, size) and sample.image.dtype == np.float32
    assert sample.image.flags.c_contiguous
    assert float(sample.image.min()) >= 0.0 and float(sample.image.max()) <= 1.0
    assert sample.labels.shape == (size, size) and sample.labels.dtype == np.uint16
    assert sample.module in ("shape", "boundary") and sample.flavour in FLAVOURS
    assert len(sample.targets) > 0
    min_area = recipe.targets.min_area_fraction * size * size
    for k in sample.valid_targets:
        area = int(sample.target_mask(k).sum())
        assert area >= min_area and area > 0
    for t in sample.targets:
        assert t.valid == (t.reason == "")
        assert t.reason in ("", "empty", "too_small", "touches_border")


@pytest.mark.parametrize("size", [64, 96])
def test_samples_honour_the_contract(size):
    recipe = default_recipe()
    samples = [sample_at(recipe, 0, i, size) for i in range(16)]
    for sample in samples:
        _check_contract(sample, size, recipe)
    assert {s.module for s in samples} == {"shape", "boundary"}
    assert sum(len(s.valid_targets) for s in samples) > 16  # most samples have usable targets


def test_sample_at_is_a_pure_function_of_seed_and_index():
    recipe = default_recipe()
    a, b = sample_at(recipe, 3, 7, 64), sample_at(recipe, 3, 7, 64)
    assert a.image.tobytes() == b.image.tobytes() and a.labels.tobytes() == b.labels.tobytes()
    assert a.targets == b.targets and (a.module, a.flavour) == (b.module, b.flavour)
    c = generate_sample(recipe, 64, np.random.default_rng([3, 7]))
    assert c.image.tobytes() == a.image.tobytes()
    others = [sample_at(recipe, 3, 8, 64), sample_at(recipe, 4, 7, 64)]
    assert all(o.image.tobytes() != a.image.tobytes() for o in others)


def test_module_can_be_forced_and_recipes_select_modules():
    recipe = default_recipe()
    assert generate_sample(recipe, 64, np.random.default_rng(0), module="boundary").module == "boundary"
    assert {sample_at(load_recipe("shape_only"), 0, i, 64).module for i in range(6)} == {"shape"}
    assert {sample_at(load_recipe("boundary_only"), 0, i, 64).module for i in range(6)} == {"boundary"}
    with pytest.raises(ValueError, match="size"):
        generate_sample(recipe, 8, np.random.default_rng(0))


@pytest.mark.parametrize("native_scale, margin", [(1.0, 1), (0.5, 3)])
def test_image_and_labels_are_aligned(native_scale, margin):
    recipe = recipe_from_dict({**CLEAN, "artefacts": {"native_scale_range": [native_scale, native_scale]}})
    for i in range(12):
        sample = sample_at(recipe, 1, i, 96)
        image, labels = sample.image, sample.labels
        for k in np.unique(labels):
            mask = labels == k
            square = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
            interior = cv2.erode(mask.astype(np.uint8), square).astype(bool)
            interior[:margin, :] = interior[-margin:, :] = False
            interior[:, :margin] = interior[:, -margin:] = False
            if interior.sum() > 10:
                values = image[interior]
                # piecewise constant: one intensity per label, away from its edge
                assert float(values.max() - values.min()) < 1e-4, (i, k)


def test_validity_is_computed_after_augmentation():
    # a big translation pushes structures out of the frame: any target still flagged valid must
    # be large enough and away from the border *in the final label map*
    recipe = recipe_from_dict(
        {"augment": {"p_affine": 1.0, "translate_range": [0.4, 0.5], "scale_range": [1.0, 1.0], "rotate_range": [0, 0]}}
    )
    flagged = 0
    for i in range(12):
        sample = sample_at(recipe, 2, i, 64)
        _check_contract(sample, 64, recipe)
        flagged += sum(not t.valid for t in sample.targets)
    assert flagged > 0


def test_us_flavour_has_a_dark_outside_of_the_fan():
    recipe = recipe_from_dict(
        {
            "flavours": {"generic": {"p": 0.0}, "ct": {"p": 0.0}, "mr": {"p": 0.0}, "us": {"p": 1.0, "p_fan": 1.0}},
            "augment": {"enabled": False},
        }
    )
    sample = sample_at(recipe, 0, 0, 96)
    assert sample.flavour == "us"
    assert sample.image[0, 0] == 0 and sample.labels[0, 0] == 0 and sample.image[0, -1] == 0


def test_native_size():
    assert native_size(1024, 0.5) == 512
    assert native_size(64, 0.1) == 16
    assert native_size(64, 1.0) == 64


def test_repeated_calls_are_bitwise_identical():
    # Regression: cv2.magnitude gave last-bit differences between calls with identical inputs,
    # depending on memory layout; allocate in between to vary the layout.
    recipe = default_recipe()
    for index in range(8):
        first = sample_at(recipe, 4, index, 64)
        for _ in range(4):
            _ = [np.empty(int(n), np.uint8) for n in np.random.default_rng(index).integers(1, 50_000, 3)]
            again = sample_at(recipe, 4, index, 64)
            assert again.image.tobytes() == first.image.tobytes()
            assert again.labels.tobytes() == first.labels.tobytes()
