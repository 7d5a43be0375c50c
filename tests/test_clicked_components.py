"""clicked_components: keep the pieces of a mask the positive clicks are on."""

from __future__ import annotations

import numpy as np

from synthfm.inference.clicked_components import clicked_components


def _two_blobs() -> np.ndarray:
    logits = np.full((1, 30, 40), -2.0, np.float32)
    logits[0, 2:10, 2:10] = 3.0  # piece A
    logits[0, 15:25, 20:35] = 1.5  # piece B
    logits[0, 10, 10] = 0.5  # touches A diagonally: 8-connected to it
    return logits


def test_only_the_clicked_piece_stays_and_magnitudes_are_kept():
    logits = _two_blobs()
    out = clicked_components(logits, np.array([[5.0, 5.0], [30.0, 20.0]]), np.array([1, 0]))
    assert (out[0, 2:10, 2:10] == 3.0).all() and out[0, 10, 10] == 0.5  # A, with its diagonal pixel
    assert (out[0, 15:25, 20:35] == -1.5).all()  # B dropped, sign flipped
    assert np.array_equal(out[0] > 0, (logits[0] > 0) & ~((np.arange(30)[:, None] >= 15) & (np.arange(40) >= 20)))
    assert np.array_equal(out[0][logits[0] <= 0], logits[0][logits[0] <= 0])  # background untouched


def test_clicks_on_several_pieces_keep_them_all():
    logits = _two_blobs()
    out = clicked_components(logits, np.array([[5.0, 5.0], [25.0, 20.0]]), np.array([1, 1]))
    assert np.array_equal(out, logits)


def test_no_positive_click_inside_or_none_at_all_leaves_the_mask():
    logits = _two_blobs()
    assert np.array_equal(clicked_components(logits, np.array([[38.0, 2.0]]), np.array([1])), logits)
    assert np.array_equal(clicked_components(logits, np.array([[5.0, 5.0]]), np.array([0])), logits)
    assert clicked_components(logits, None, None) is logits


def test_every_candidate_is_filtered_on_its_own():
    logits = np.concatenate([_two_blobs(), -_two_blobs()])  # candidate 1 is the complement
    out = clicked_components(logits, np.array([[5.0, 5.0]]), np.array([1]))
    assert np.array_equal(out[1], logits[1])  # the click is not in candidate 1's mask: left alone
    assert (out[0, 15:25, 20:35] < 0).all()


def test_predictor_applies_it_when_asked_and_keeps_low_res_logits():
    import cv2
    import torch

    from synthfm.inference.predictor import Predictor
    from synthfm.modeling.click_unet import ClickUNet

    torch.manual_seed(0)
    model = ClickUNet(image_size=64, widths=(4, 8, 16, 16), depths=(1, 1, 1), num_heads=2).eval()
    pred = Predictor(model, "cpu")
    rng = np.random.default_rng(1)
    pred.set_image((rng.random((48, 48)) * 255).astype(np.uint8), preset="none")
    click, label = np.array([[24.0, 24.0]]), np.array([1])
    plain, _, low_a = pred.predict(click, label, return_logits=True)
    pred.clicked_components = True
    kept, _, low_b = pred.predict(click, label, return_logits=True)
    assert np.array_equal(kept, clicked_components(plain, click, label)) and np.array_equal(low_a, low_b)
    assert np.array_equal(pred.predict(click, label, return_logits=True, clicked_components=False)[0], plain)
    mask = kept[0] > 0
    if mask[24, 24]:  # every piece left is the clicked one
        assert cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] == 2
