"""Classical click baselines (synthfm.evaluation.baselines) on easy synthetic images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synthfm.evaluation.baselines import CLASSICAL_METHODS, Method, build_classical, click_roi, to_unit_grey
from synthfm.evaluation.metrics import dice
from synthfm.prompts import Clicks, simulate_clicks


def bright_disc(size=128, centre=None, radius=None, noise=0.06, seed=0):
    """uint8 image: a bright disc (0.75) on a dark background (0.25) with Gaussian noise."""
    rng = np.random.default_rng(seed)
    centre = centre or (int(size * 0.55), int(size * 0.45))
    radius = radius or int(size * 0.18)
    gt = np.zeros((size, size), np.uint8)
    cv2.circle(gt, centre, radius, 1, -1)
    img = np.where(gt > 0, 0.75, 0.25) + rng.normal(0, noise, gt.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), gt.astype(bool)


def one_click(gt):
    return simulate_clicks(gt, 1, 0, np.random.default_rng(0))


@pytest.mark.parametrize("name", CLASSICAL_METHODS)
def test_one_click_on_an_easy_disc(name):
    image, gt = bright_disc()
    method = build_classical(name)
    assert isinstance(method, Method) and method.name == name
    method.set_image(image)
    pred = method.predict(one_click(gt))
    assert pred.shape == gt.shape and pred.dtype == bool
    assert dice(gt, pred) > 0.8
    # deterministic: same image and clicks, same mask
    assert np.array_equal(pred, method.predict(one_click(gt)))


@pytest.mark.parametrize("name", CLASSICAL_METHODS)
def test_large_rgb_and_16bit_images(name):
    image, gt = bright_disc(size=600, noise=0.05, seed=1)
    rgb = np.stack([image, image // 2, image], axis=2)  # colour input goes through luminance
    method = build_classical(name)
    method.set_image(rgb)
    assert dice(gt, method.predict(one_click(gt))) > 0.8
    method.set_image(image.astype(np.uint16) * 200 + 1000)
    assert dice(gt, method.predict(simulate_clicks(gt, 3, 2, np.random.default_rng(2)))) > 0.8


@pytest.mark.parametrize("name", CLASSICAL_METHODS)
def test_negative_click_is_respected(name):
    # one bright bar: positive click on its left end, negative click on its right end
    image = np.full((96, 96), 60, np.uint8)
    image[40:56, 10:86] = 200
    method = build_classical(name)
    method.set_image(image)
    clicks = Clicks(np.array([[18, 47], [78, 47]], np.float32), np.array([1, 0], np.int32))
    pred = method.predict(clicks)
    assert pred[47, 18] and not pred[47, 78]


@pytest.mark.parametrize("name", CLASSICAL_METHODS)
def test_click_at_image_corner_and_flat_image_do_not_crash(name):
    method = build_classical(name)
    method.set_image(np.zeros((64, 80), np.uint8))
    pred = method.predict(Clicks(np.array([[0, 0], [79, 63]], np.float32), np.array([1, 0], np.int32)))
    assert pred.shape == (64, 80) and pred[0, 0]
    with pytest.raises(RuntimeError):
        build_classical(name).predict(Clicks(np.zeros((1, 2), np.float32), np.ones(1, np.int32)))


def test_to_unit_grey_range_and_constant_image():
    rng = np.random.default_rng(0)
    grey = to_unit_grey(rng.normal(500, 300, (50, 60)).astype(np.int16))
    assert grey.dtype == np.float32 and grey.min() == 0.0 and grey.max() == 1.0
    assert not to_unit_grey(np.full((10, 10), 7, np.uint16)).any()
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 255, 255)
    assert to_unit_grey(rgb)[0, 0] == 1.0


def test_roi_contains_every_click_and_bounds_work_size():
    coords = np.array([[100, 100], [900, 140], [120, 700]], np.float64)
    labels = np.array([1, 1, 0])
    roi = click_roi(coords, labels, (1000, 1200), roi_fraction=0.6, work_size=192)
    assert roi.r0 <= 100 and roi.r1 > 700 and roi.c0 <= 100 and roi.c1 > 900
    assert 0 <= roi.r0 < roi.r1 <= 1000 and 0 <= roi.c0 < roi.c1 <= 1200
    assert max(roi.work_shape) <= 192
