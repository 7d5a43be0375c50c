"""The focus step: window choice and a crop pass that only touches the window."""

import numpy as np
import torch

from synthfm.inference.focus import FOCUS_MIN_SIDE, focus_window, focused_logits


def test_window_contains_mask_and_clicks_and_stays_inside():
    mask = np.zeros((200, 300), bool)
    mask[40:60, 250:280] = True
    top, left, side = focus_window(mask, np.array([[245.0, 50.0]]))
    assert 0 <= top and top + side <= 200 and 0 <= left and left + side <= 300
    assert top <= 40 and top + side >= 60 and left <= 245 and left + side >= 280
    assert side >= FOCUS_MIN_SIDE


def test_no_window_for_large_or_empty_objects():
    mask = np.zeros((100, 100), bool)
    assert focus_window(mask, np.zeros((0, 2))) is None
    mask[5:95, 5:95] = True
    assert focus_window(mask, np.zeros((0, 2))) is None


def test_focused_logits_change_only_the_window():
    from synthfm.modeling.click_unet import ClickUNet

    torch.manual_seed(0)
    model = ClickUNet(image_size=64, widths=(4, 8, 16, 16), depths=(1, 1, 1), num_heads=2).eval()
    image = (np.random.default_rng(0).random((120, 160)) * 255).astype(np.uint8)
    logits = np.full((120, 160), -5.0, np.float32)
    logits[50:62, 70:84] = 5.0
    out, score = focused_logits(model, image, logits, np.array([[76.0, 55.0]]), np.array([1]), torch.device("cpu"))
    top, left, side = focus_window(logits > 0, np.array([[76.0, 55.0]]))
    outside = np.ones_like(logits, bool)
    outside[top:top + side, left:left + side] = False
    assert np.array_equal(out[outside], logits[outside])
    assert not np.allclose(out[~outside], logits[~outside])
    assert 0.0 <= score <= 1.0
