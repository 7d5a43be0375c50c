"""The BCE term keeps a gradient where Dice alone has none (saturated all-foreground logits)."""

import torch

from synthfm.training.losses import bce_loss_per_item, soft_dice_loss


def test_bce_matches_definition_and_shape():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])  # (1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    p = torch.sigmoid(logits)
    manual = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    out = bce_loss_per_item(logits, target)
    assert out.shape == (1, 1)
    assert torch.allclose(out[0, 0], manual, atol=1e-6)


def test_saturated_all_foreground_has_gradient_only_with_bce():
    target = torch.zeros(1, 1, 32, 32)
    target[..., 10:14, 10:14] = 1
    logits = torch.full((1, 1, 32, 32), 40.0, requires_grad=True)
    soft_dice_loss(logits, target).sum().backward()
    dice_grad = logits.grad.abs().max().item()
    logits.grad = None
    bce_loss_per_item(logits, target).sum().backward()
    bce_grad = logits.grad.abs().max().item()
    assert dice_grad < 1e-12
    assert bce_grad > 1e-4
