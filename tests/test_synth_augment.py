"""Augmentation: deterministic from the rng, image and labels stay aligned, fill is outside the FOV."""

from __future__ import annotations

import dataclasses

import numpy as np

from synthfm.synth.augment import augment
from synthfm.synth.recipe import AugmentConfig

STRONG = AugmentConfig(
    p_hflip=0.5,
    p_vflip=0.5,
    p_rotate90=0.5,
    p_affine=1.0,
    rotate_range=(-30.0, 30.0),
    scale_range=(0.7, 0.8),
    translate_range=(-0.1, 0.1),
    p_elastic=0.5,
    p_brightness_contrast=0.0,
)


def _scene():
    labels = np.zeros((64, 64), np.uint8)
    labels[10:30, 10:40] = 1
    labels[35:60, 20:50] = 2
    image = np.array([0.2, 0.6, 0.9], np.float32)[labels]
    return image, labels


def test_same_rng_same_result_and_inputs_untouched():
    image, labels = _scene()
    before = image.copy(), labels.copy()
    a = augment(image, labels, None, STRONG, np.random.default_rng(5))
    b = augment(image, labels, None, STRONG, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(image, before[0]) and np.array_equal(labels, before[1])
    outs = {augment(image, labels, None, STRONG, np.random.default_rng(s))[1].tobytes() for s in range(6)}
    assert len(outs) > 1


def test_labels_move_with_the_image():
    image, labels = _scene()
    for seed in range(8):
        out_image, out_labels, fov = augment(image, labels, None, STRONG, np.random.default_rng(seed))
        assert out_image.dtype == np.float32 and out_labels.dtype == np.uint8
        assert set(np.unique(out_labels)) <= {0, 1, 2}
        # the image value says the label, except on a thin band of edge pixels mixed by linear
        # interpolation (the grid distortion compresses some rows, widening that band)
        nearest = np.argmin(np.abs(out_image[..., None] - np.array([0.2, 0.6, 0.9])), axis=-1)
        inside = out_image > 0
        agree = (nearest == out_labels)[inside].mean()
        assert agree > 0.95, seed
        for k, value in ((1, 0.6), (2, 0.9)):
            if (out_labels == k).sum() > 50:
                assert abs(float(np.median(out_image[out_labels == k])) - value) < 1e-4
        # scale < 1 always uncovers a border: outside the field of view is label 0 and image 0
        assert fov is not None and (fov == 0).any()
        assert np.all(out_labels[fov == 0] == 0) and np.all(out_image[fov == 0] == 0)


def test_disabled_or_empty_pipeline_is_the_identity():
    image, labels = _scene()
    off = dataclasses.replace(STRONG, enabled=False)
    out = augment(image, labels, None, off, np.random.default_rng(0))
    assert out[0] is image and out[1] is labels and out[2] is None
    nothing = AugmentConfig(p_hflip=0, p_vflip=0, p_rotate90=0, p_affine=0, p_elastic=0, p_brightness_contrast=0)
    out = augment(image, labels, None, nothing, np.random.default_rng(0))
    assert np.array_equal(out[0], image) and np.array_equal(out[1], labels) and out[2] is None


def test_flips_keep_the_whole_field_of_view():
    image, labels = _scene()
    flips = AugmentConfig(p_hflip=1.0, p_vflip=1.0, p_rotate90=1.0, p_affine=0, p_elastic=0, p_brightness_contrast=0)
    out_image, out_labels, fov = augment(image, labels, None, flips, np.random.default_rng(0))
    assert fov is None
    assert np.bincount(out_labels.ravel()).tolist() == np.bincount(labels.ravel()).tolist()


def test_brightness_contrast_clips_and_keeps_outside_fov_black():
    image, labels = _scene()
    fov = np.ones_like(labels)
    fov[:, :8] = 0
    image = image * fov
    labels = labels * fov
    bc = AugmentConfig(
        p_hflip=0, p_vflip=0, p_rotate90=0, p_affine=0, p_elastic=0, p_brightness_contrast=1.0, brightness_range=(0.5, 0.5)
    )
    out_image, out_labels, out_fov = augment(image, labels, fov, bc, np.random.default_rng(0))
    assert out_image.max() <= 1.0 and out_image.min() >= 0.0
    assert np.all(out_image[:, :8] == 0)
    assert np.array_equal(out_fov, fov) and np.array_equal(out_labels, labels)


def test_uint16_labels_and_label_255_survive():
    image, labels = _scene()
    labels16 = labels.astype(np.uint16) * 300
    out = augment(image, labels16, None, STRONG, np.random.default_rng(1))
    assert out[1].dtype == np.uint16 and set(np.unique(out[1])) <= {0, 300, 600}
    labels255 = labels.copy()
    labels255[labels == 2] = 255
    out = augment(image, labels255, None, STRONG, np.random.default_rng(1))
    assert set(np.unique(out[1])) <= {0, 1, 255}
