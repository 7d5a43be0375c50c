"""Longest-side resize, padding and coordinate/mask mapping match segment_anything's conventions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from synthfm.inference.transforms import (
    box_to_model,
    coords_to_model,
    image_to_model_input,
    logits_to_original,
    pad_to_square,
    preprocess_shape,
    resize_longest_side,
)

SHAPES = [(300, 200, 64), (100, 180, 256), (64, 64, 64), (37, 1000, 64), (1500, 2000, 256), (17, 5, 128)]


def _sam_postprocess(low_res: np.ndarray, resized_hw, original_hw, size) -> np.ndarray:
    """segment_anything's Sam.postprocess_masks, written out with F.interpolate."""
    t = torch.from_numpy(low_res)[None]
    t = F.interpolate(t, (size, size), mode="bilinear", align_corners=False)
    t = t[..., : resized_hw[0], : resized_hw[1]]
    return F.interpolate(t, original_hw, mode="bilinear", align_corners=False)[0].numpy()


@pytest.mark.parametrize("h,w,s", SHAPES)
def test_preprocess_shape_matches_sam(h, w, s):
    assert preprocess_shape(h, w, s) == ResizeLongestSide.get_preprocess_shape(h, w, s)
    assert max(preprocess_shape(h, w, s)) == s


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_resize_keeps_dtype_and_channels(dtype):
    rng = np.random.default_rng(0)
    img = (rng.random((90, 60)) * 200).astype(dtype)
    out = resize_longest_side(img, 64)
    assert out.shape == (64, 43) and out.dtype == dtype
    rgb = np.stack([img, img, img], axis=2)
    out3 = resize_longest_side(rgb, 128)
    assert out3.shape == (128, 85, 3) and out3.dtype == dtype


def test_resize_of_constant_image_is_constant():
    img = np.full((50, 80), 77, np.uint8)
    assert np.all(resize_longest_side(img, 256) == 77)
    assert np.all(resize_longest_side(img, 32) == 77)


def test_pad_to_square_places_content_top_left():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = pad_to_square(img, 6, value=-1)
    assert out.shape == (6, 6)
    np.testing.assert_array_equal(out[:3, :4], img)
    assert np.all(out[3:, :] == -1) and np.all(out[:, 4:] == -1)
    rgb = pad_to_square(np.zeros((2, 3, 3), np.float32), 4, value=(1, 2, 3))
    np.testing.assert_array_equal(rgb[3, 3], [1, 2, 3])
    with pytest.raises(ValueError):
        pad_to_square(img, 3)


def test_image_to_model_input_grey_and_rgb():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (40, 64), dtype=np.uint8)
    t, hw = image_to_model_input(grey, 64)
    assert t.shape == (1, 3, 64, 64) and t.dtype == torch.float32 and hw == (40, 64)
    np.testing.assert_array_equal(t[0, 0, :40].numpy(), grey.astype(np.float32))
    assert torch.equal(t[0, 0], t[0, 1]) and torch.equal(t[0, 1], t[0, 2])
    assert float(t[0, :, 40:].abs().max()) == 0.0  # zero padding by default
    rgb = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    t2, hw2 = image_to_model_input(rgb, 64, pad_value=(1.0, 2.0, 3.0))
    assert hw2 == (64, 32)
    np.testing.assert_array_equal(t2[0, :, :, :32].numpy(), rgb.transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(t2[0, :, 0, 40].numpy(), [1.0, 2.0, 3.0])
    assert float(t2.max()) <= 255.0


def test_image_to_model_input_rejects_bad_shapes():
    with pytest.raises(ValueError):
        image_to_model_input(np.zeros((4, 4, 2), np.uint8), 64)
    with pytest.raises(ValueError):
        image_to_model_input(np.zeros((2, 4, 4, 3), np.uint8), 64)


@pytest.mark.parametrize("h,w,s", SHAPES)
def test_coords_and_boxes_match_sam(h, w, s):
    rng = np.random.default_rng(2)
    coords = rng.uniform(0, [w, h], (7, 2))
    ref = ResizeLongestSide(s).apply_coords(coords, (h, w))
    np.testing.assert_allclose(coords_to_model(coords, (h, w), s), ref, rtol=1e-5, atol=1e-4)
    boxes = np.concatenate([coords[:3], coords[3:6]], axis=1)
    np.testing.assert_allclose(
        box_to_model(boxes, (h, w), s), ResizeLongestSide(s).apply_boxes(boxes, (h, w)), rtol=1e-5, atol=1e-4
    )
    corner = coords_to_model(np.array([[w, h]]), (h, w), s)[0]
    np.testing.assert_allclose(corner, preprocess_shape(h, w, s)[::-1], atol=1e-3)


@pytest.mark.parametrize("h,w,s", SHAPES)
def test_logits_to_original_matches_sam_postprocess(h, w, s):
    rng = np.random.default_rng(3)
    low = rng.normal(size=(3, s // 4, s // 4)).astype(np.float32)
    resized = preprocess_shape(h, w, s)
    ours = logits_to_original(low, resized, (h, w), s)
    ref = _sam_postprocess(low, resized, (h, w), s)
    assert ours.shape == (3, h, w) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    # thresholds agree except where the logit is within float noise of 0
    disagree = (ours > 0) != (ref > 0)
    assert np.all(np.abs(ref[disagree]) < 1e-4)


def test_logits_to_original_accepts_tensors():
    low = torch.randn(1, 16, 16)
    out = logits_to_original(low, (64, 40), (128, 80), 64)
    assert out.shape == (1, 128, 80)


def test_mask_survives_round_trip_through_model_frame():
    """A mask taken to the S/4 frame (resize + pad + downsample) comes back at IoU > 0.9."""
    h, w, s = 150, 90, 64
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - 80) ** 2 / 40**2 + (xx - 40) ** 2 / 25**2) < 1
    resized = resize_longest_side(mask.astype(np.float32), s)
    padded = pad_to_square(resized, s)
    low = F.interpolate(torch.from_numpy(padded)[None, None], (s // 4, s // 4), mode="area")[0].numpy()
    logits = (low - 0.5) * 20
    back = logits_to_original(logits, resized.shape[:2], (h, w), s)[0] > 0
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.9
