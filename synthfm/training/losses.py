"""Training losses for the mask decoder.

The paper trains with Dice loss only; that is the default here.  Two helpers exist for optional
SAM-style extras: the min-over-masks reduction for multimask output and an MSE loss that teaches
the IoU head to predict the quality of its own masks (off by default: it does not change the masks,
only makes ``Predictor.predict``'s scores meaningful).

Conventions: ``logits`` are raw mask logits (sigmoid not applied), ``target`` holds 0/1 values of
the same spatial size.  Everything is computed in float32 whatever the autocast dtype, because the
sums over a 1024 x 1024 mask lose precision in bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DICE_SMOOTH = 1.0


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = DICE_SMOOTH) -> Tensor:
    """Per-item soft Dice loss ``1 - dice(sigmoid(logits), target)``.

    logits: (B, ..., H, W) float, any leading layout; target: same shape (or broadcastable over a
    mask axis, e.g. ``target[:, None]`` against (B, C, H, W) logits), values in {0, 1}.  The last two axes are summed.
    ``smooth`` (added to numerator and denominator) keeps the loss finite and near 0 when both
    the prediction and the target are empty.  Returns shape ``logits.shape[:-2]``, values in [0, 1).
    """
    prob = torch.sigmoid(logits.float())
    tgt = target.float()
    inter = (prob * tgt).sum(dim=(-2, -1))
    total = prob.sum(dim=(-2, -1)) + tgt.sum(dim=(-2, -1))
    return 1.0 - (2.0 * inter + smooth) / (total + smooth)


def bce_loss_per_item(logits: Tensor, target: Tensor) -> Tensor:
    """Per-item mean binary cross-entropy with logits over the last two axes.

    Same shapes as :func:`soft_dice_loss`.  Dice alone has a trap when training a decoder from
    scratch: once the logits saturate (|logit| ~ 40, every pixel "foreground") the sigmoid's
    gradient vanishes and Dice stays near 0.9; the pixel-wise BCE term keeps a gradient on every
    wrong pixel (seen in the first CPU run of the default model, see checkpoints/README.md).
    """
    tgt = target.float().expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits.float(), tgt, reduction="none")
    return bce.mean(dim=(-2, -1))


def mask_iou(logits: Tensor, target: Tensor) -> Tensor:
    """IoU of the thresholded masks ``logits > 0`` with ``target``, no gradient.

    logits: (B, C, H, W); target: (B, H, W).  Returns (B, C) float32; an empty prediction of an
    empty target counts as IoU 1.
    """
    with torch.no_grad():
        pred = logits > 0
        tgt = target[:, None].bool()
        inter = (pred & tgt).sum(dim=(-2, -1)).float()
        union = (pred | tgt).sum(dim=(-2, -1)).float()
        return torch.where(union > 0, inter / union.clamp(min=1.0), torch.ones_like(union))


def iou_prediction_loss(iou_pred: Tensor, logits: Tensor, target: Tensor) -> Tensor:
    """MSE between the IoU head's predictions (B, C) and the actual IoU of each mask; scalar."""
    return torch.mean((iou_pred.float() - mask_iou(logits, target)) ** 2)


IOU_RANK_TEMPERATURE = 0.05  # true-IoU differences of ~0.05 already make one candidate clearly preferred


def iou_ranking_loss(iou_pred: Tensor, logits: Tensor, target: Tensor,
                     temperature: float = IOU_RANK_TEMPERATURE) -> Tensor:
    """Listwise ranking loss of the IoU head over the candidates of each prompt set; scalar.

    iou_pred (B, C) in (0, 1) (sigmoid of the head's logits), logits (B, C, H, W) mask logits,
    target (B, H, W).  Cross-entropy between softmax(true IoU / temperature) and the softmax of
    the head's logits: the argmax of ``iou_pred`` (what ``predict`` returns) is pushed toward the
    truly best candidate; near-ties give near-uniform targets, so they cost little.
    """
    soft = torch.softmax(mask_iou(logits, target) / temperature, dim=1)
    scores = torch.logit(iou_pred.float().clamp(1e-6, 1 - 1e-6))
    return -(soft * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()


def hard_dice(logits: Tensor, target: Tensor) -> Tensor:
    """Dice of the thresholded masks ``logits > 0`` (evaluation metric), no gradient.

    logits: (B, H, W); target: (B, H, W).  Returns (B,) float32; empty vs. empty counts as 1.
    """
    with torch.no_grad():
        pred = logits > 0
        tgt = target.bool()
        inter = (pred & tgt).sum(dim=(-2, -1)).float()
        total = pred.sum(dim=(-2, -1)).float() + tgt.sum(dim=(-2, -1)).float()
        return torch.where(total > 0, 2.0 * inter / total.clamp(min=1.0), torch.ones_like(total))
