"""The training objective of whole-model families (click_unet), and what a run trains.

Kept apart from the loop, which also trains the SAM-style SynthFM with its own decode groups.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from synthfm.modeling.registry import is_whole_model
from synthfm.training.config import TrainConfig
from synthfm.training.data import TrainBatch
from synthfm.training.losses import bce_loss_per_item, iou_prediction_loss, iou_ranking_loss, soft_dice_loss


def early_fusion_loss(model, batch: TrainBatch, config: TrainConfig, amp: bool, encode) -> tuple[torch.Tensor, torch.Tensor]:
    """compute_loss for whole-model families (ClickUNet): every prompt set in one pass.

    Each set gets all ``num_masks`` candidates; the mask loss is the minimum over candidates of
    Dice + ``bce_weight`` x BCE (so one click may keep several readings), plus
    ``first_mask_weight`` x candidate 0's own loss (the single best guess), and the IoU head learns
    each candidate's true IoU (MSE, weight ``iou_loss_weight``) and which candidate is best
    (ranking, weight ``iou_rank_weight``).
    """
    k = batch.prompts_per_image
    size = batch.images.shape[-1]
    with torch.autocast(batch.images.device.type, dtype=torch.bfloat16, enabled=amp):
        emb = encode(batch.images)
        if k > 1:
            emb = emb.repeat_interleave(k, dim=0)
        boxes = torch.where(batch.is_box[:, None], batch.boxes, torch.zeros_like(batch.boxes))
        logits, iou = model.forward_all(emb, batch.point_coords, batch.point_labels, boxes=boxes,
                                        mask_inputs=batch.mask_inputs, mask_given=batch.has_mask)  # None: no mask prompts
    full = F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)
    target = batch.masks[:, None]
    per_mask = soft_dice_loss(full, target)
    if config.bce_weight > 0:
        per_mask = per_mask + config.bce_weight * bce_loss_per_item(full, target)
    mask_loss = per_mask.min(dim=1).values.mean()
    total = mask_loss
    if config.first_mask_weight > 0:
        total = total + config.first_mask_weight * per_mask[:, 0].mean()
    if config.iou_loss_weight > 0:
        total = total + config.iou_loss_weight * iou_prediction_loss(iou, full, batch.masks)
    if config.iou_rank_weight > 0:
        total = total + config.iou_rank_weight * iou_ranking_loss(iou, full, batch.masks)
    return total, mask_loss.detach()


def trained_outputs(config: TrainConfig) -> dict[str, bool]:
    """Which model outputs a run with ``config`` trains (stored in every checkpoint it writes).

    multimask: several candidate masks per click with a min-over-masks loss (click_unet always;
    SynthFM with ``--multimask``); iou_scores: the IoU head, i.e. the predictor's scores;
    mask_input: previous-mask prompts (``--mask-fraction``, read only by click_unet).
    """
    early = is_whole_model(config.encoder)
    return {
        "multimask": early or bool(config.multimask),
        "iou_scores": config.iou_loss_weight > 0,
        "mask_input": early and config.mask_fraction > 0,
    }
