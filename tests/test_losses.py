"""Dice loss properties (of soft_dice_loss, the loss training uses) and the helper metrics."""

from __future__ import annotations

import torch

from synthfm.training.losses import (
    hard_dice,
    iou_prediction_loss,
    mask_iou,
    soft_dice_loss,
)


def _mean_dice_loss(logits, target):
    if logits.dim() == 4:
        logits = logits[:, 0]
    return soft_dice_loss(logits, target).mean()


def _disk(size: int = 32, r: float = 8.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) <= r * r).float()


def test_dice_is_one_minus_soft_dice():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 16, 16, generator=g)
    target = (torch.rand(3, 16, 16, generator=g) > 0.5).float()
    p = torch.sigmoid(logits)
    expected = 1 - (2 * (p * target).sum((-2, -1)) + 1) / (p.sum((-2, -1)) + target.sum((-2, -1)) + 1)
    torch.testing.assert_close(soft_dice_loss(logits, target), expected, rtol=1e-6, atol=1e-6)


def test_perfect_prediction_is_near_zero_and_inverse_near_one():
    t = _disk()[None]
    perfect = (t * 2 - 1) * 50.0
    assert float(_mean_dice_loss(perfect, t)) < 1e-3
    assert float(_mean_dice_loss(-perfect, t)) > 0.99


def test_loss_in_unit_interval_and_better_prediction_is_lower():
    t = _disk()[None]
    good = (t * 2 - 1) * 3.0
    worse = good.roll(shifts=6, dims=-1)
    lg, lw = float(_mean_dice_loss(good, t)), float(_mean_dice_loss(worse, t))
    assert 0.0 <= lg < lw <= 1.0


def test_empty_target_gives_finite_gradient():
    logits = torch.zeros(2, 1, 16, 16, requires_grad=True)
    target = torch.zeros(2, 16, 16)
    loss = _mean_dice_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # an empty prediction of an empty target is (near) perfect
    assert float(_mean_dice_loss(torch.full((1, 16, 16), -30.0), torch.zeros(1, 16, 16))) < 1e-6


def test_bf16_logits_are_computed_in_float32():
    t = _disk(64, 20)[None]
    logits = ((t * 2 - 1) * 4).bfloat16()
    out = soft_dice_loss(logits, t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, soft_dice_loss(logits.float(), t))


def test_hard_dice_and_iou():
    t = _disk()[None]
    logits = (t * 2 - 1)[:, None]  # exact
    assert float(hard_dice(logits[:, 0], t)[0]) == 1.0
    assert float(mask_iou(logits, t)[0, 0]) == 1.0
    half = t.clone()
    half[..., :16] = 0
    d = float(hard_dice((half * 2 - 1), t)[0])
    a, b = float(half.sum()), float(t.sum())
    assert abs(d - 2 * a / (a + b)) < 1e-6
    assert abs(float(mask_iou((half * 2 - 1)[:, None], t)[0, 0]) - a / b) < 1e-6
    assert float(hard_dice(torch.full((1, 8, 8), -1.0), torch.zeros(1, 8, 8))[0]) == 1.0


def test_iou_prediction_loss_zero_when_prediction_matches():
    t = _disk()[None]
    logits = (t * 2 - 1)[:, None]
    assert float(iou_prediction_loss(torch.ones(1, 1), logits, t)) == 0.0
    assert abs(float(iou_prediction_loss(torch.zeros(1, 1), logits, t)) - 1.0) < 1e-6
