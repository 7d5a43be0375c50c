"""One overlay convention: enlarged to a readable size, fixed colours, a legend naming what is drawn."""

import numpy as np
import pytest

from synthfm.inference.overlays import (
    NEGATIVE_RGB, POSITIVE_RGB, PREDICTION_RGB, TRUTH_RGB, render_overlay, scale_factor, write_overlay,
)


def _has_colour(picture: np.ndarray, rgb, tol: int = 40) -> bool:
    return bool((np.abs(picture.astype(int) - np.asarray(rgb)).max(axis=2) <= tol).any())


@pytest.mark.parametrize("hw, f", [((101, 122), 5), ((512, 300), 1), ((600, 900), 1), ((8, 3), 64)])
def test_small_images_are_enlarged_by_a_whole_factor(hw, f):
    assert scale_factor(*hw) == f
    pic = render_overlay(np.zeros(hw, np.uint8), np.zeros(hw, bool))
    assert pic.dtype == np.uint8 and pic.shape[1] == hw[1] * f and pic.shape[0] > hw[0] * f
    assert max(pic.shape[0], pic.shape[1]) >= 512


def test_colours_and_legend_follow_the_convention():
    h, w = 101, 122
    image = np.full((h, w), 60, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    pred = (yy - 50) ** 2 + (xx - 60) ** 2 < 30**2
    truth = (yy - 50) ** 2 + (xx - 70) ** 2 < 25**2
    coords, labels = np.array([[60.0, 50.0], [10.0, 90.0]]), np.array([1, 0])
    pic = render_overlay(image, pred, coords, labels, truth=truth, caption="case 7")
    f = scale_factor(h, w)
    body, legend = pic[: h * f], pic[h * f:]
    tinted = body[(35 * f) + 2, (40 * f) + 2].astype(int)  # inside the prediction, off the clicks and contours
    assert tinted[0] > tinted[2] + 20 and tinted[1] > tinted[2]  # amber tint on grey
    assert tuple(body[50 * f + f // 2, 60 * f + f // 2]) == POSITIVE_RGB
    assert tuple(body[90 * f + f // 2, 10 * f + f // 2]) == NEGATIVE_RGB
    assert _has_colour(body, TRUTH_RGB, tol=10)
    assert legend.shape[0] >= 2 * 22  # the caption + at least one row of entries
    for colour in (PREDICTION_RGB, TRUTH_RGB, POSITIVE_RGB, NEGATIVE_RGB):
        assert _has_colour(legend, colour, tol=10), colour
    plain = render_overlay(image, pred)  # no truth, no clicks: the legend names only the prediction
    assert not _has_colour(plain[h * f:], TRUTH_RGB, tol=10) and not _has_colour(plain[h * f:], POSITIVE_RGB, tol=10)


def test_rgb_images_and_the_written_file(tmp_path):
    import cv2

    image = np.zeros((40, 50, 3), np.uint8)
    image[..., 2] = 200  # blue in RGB
    pic = render_overlay(image, np.zeros((40, 50), bool))
    assert tuple(pic[5, 5]) == (0, 0, 200)
    write_overlay(tmp_path / "o.png", pic)
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "o.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, pic)


def test_evaluation_overlays_use_the_same_renderer(tmp_path):
    from synthfm.evaluation.protocol import Example
    from synthfm.evaluation.report import render_example
    from synthfm.prompts import Clicks

    gt = np.zeros((30, 40), bool)
    gt[10:20, 10:30] = True
    clicks = Clicks(np.array([[20.0, 15.0]], np.float32), np.array([1]))
    ex = Example("D", "c1", 3, "liver", 1, "m", "1,0", 0.5, np.full((30, 40), 90, np.uint8), gt, gt, clicks)
    pic = render_example(ex)
    reference = render_overlay(ex.image, ex.pred, clicks.coords, clicks.labels, truth=gt,
                               caption="m 1,0  DSC 0.500  c1 slice 3 liver#1")
    np.testing.assert_array_equal(pic, reference)
