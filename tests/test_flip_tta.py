"""Flip test-time augmentation: mirror helpers and the equivariance of the averaged prediction."""

import numpy as np
import torch

from synthfm.inference.flip_tta import mirror_box, mirror_image, mirror_points
from synthfm.inference.predictor import Predictor


def _predictor(flip_tta: bool) -> Predictor:
    from synthfm.modeling.click_unet import ClickUNet

    torch.manual_seed(0)
    model = ClickUNet(image_size=64, widths=(4, 8, 16, 16), depths=(1, 1, 1), num_heads=2).eval()
    return Predictor(model, "cpu", flip_tta=flip_tta)


def _image() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = (rng.random((50, 70)) * 80).astype(np.uint8)
    image[10:30, 40:62] += 150  # an asymmetric bright object
    return image


def test_mirror_helpers_are_involutions_and_match_the_image_flip():
    image = _image()
    assert np.array_equal(mirror_image(mirror_image(image)), image)
    pts = np.array([[0.0, 3.0], [69.0, 7.0], [12.5, 20.0]])
    assert np.allclose(mirror_points(mirror_points(pts, 70), 70), pts)
    x, y = 45, 20
    assert mirror_image(image)[y, int(mirror_points(np.array([[x, y]]), 70)[0, 0])] == image[y, x]
    box = np.array([40.0, 10.0, 61.0, 29.0])
    m = mirror_box(box, 70)
    assert m[0] <= m[2] and np.allclose(m, [8.0, 10.0, 29.0, 29.0])
    assert np.allclose(mirror_box(m, 70), box)


def test_averaged_prediction_is_mirror_equivariant():
    """TTA(I, p) == mirror(TTA(mirror(I), mirror(p))): both average the same two passes."""
    pred = _predictor(flip_tta=True)
    image, click, label = _image(), np.array([[50.0, 20.0]]), np.array([1])
    pred.set_image(image, preset="none")
    a, sa, _ = pred.predict(click, label, return_logits=True)
    pred.set_image(mirror_image(image), preset="none")
    b, sb, _ = pred.predict(mirror_points(click, 70), label, return_logits=True)
    assert np.allclose(a, b[..., ::-1], atol=1e-4)
    assert np.allclose(sa, sb, atol=1e-5)
    # and it differs from the plain pass (the untrained model is not mirror-symmetric)
    plain, _, _ = pred.predict(mirror_points(click, 70), label, return_logits=True, flip_tta=False)
    assert not np.allclose(plain, b, atol=1e-3)


def test_boxes_are_mirrored_too_and_bypass_cases_are_unchanged():
    on, off = _predictor(True), _predictor(False)
    image = _image()
    for p in (on, off):
        p.set_image(image, preset="none")
    box = np.array([38.0, 8.0, 63.0, 31.0])
    a, _, _ = on.predict(box=box, return_logits=True)
    on.set_image(mirror_image(image), preset="none")
    b, _, _ = on.predict(box=mirror_box(box, 70), return_logits=True)
    assert np.allclose(a, b[..., ::-1], atol=1e-4)
    on.set_image(image, preset="none")
    # multimask output and mask inputs are not averaged: identical to the plain predictor
    click, label = np.array([[50.0, 20.0]]), np.array([1])
    m_on, s_on, low = on.predict(click, label, multimask_output=True, return_logits=True)
    m_off, s_off, _ = off.predict(click, label, multimask_output=True, return_logits=True)
    assert np.allclose(m_on, m_off) and np.allclose(s_on, s_off)
    prior = low[:1]
    r_on, _, _ = on.predict(click, label, mask_input=prior, return_logits=True)
    r_off, _, _ = off.predict(click, label, mask_input=prior, return_logits=True)
    assert np.allclose(r_on, r_off)
