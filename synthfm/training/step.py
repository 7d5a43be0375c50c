"""One optimiser step of training: the learning-rate schedule, the loss of a batch, the update.

Late-fusion models (a SAM-style encoder + prompt encoder + mask decoder) decode the B*K prompt
sets in up to three groups (:func:`prompt_groups`); whole-model families (``click_unet``) have
their own objective (:func:`synthfm.training.early_fusion.early_fusion_loss`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from synthfm.training.config import TrainConfig
from synthfm.training.data import TrainBatch
from synthfm.training.distributed import allreduce_gradients
from synthfm.training.early_fusion import early_fusion_loss
from synthfm.training.losses import bce_loss_per_item, iou_prediction_loss, soft_dice_loss


def lr_at(config: TrainConfig, step: int, total_steps: int, time_fraction: float = 0.0) -> float:
    """Learning rate for optimiser step ``step`` (0-based): linear warm-up, then constant or cosine.

    time_fraction: the share of ``config.time_budget`` already spent (0 without one); the cosine
    follows whichever of the steps and the budget is further along.
    """
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "cosine":
        span = max(1, total_steps - config.warmup_steps)
        progress = min(1.0, max((step - config.warmup_steps) / span, time_fraction))
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr


def prompt_groups(batch: TrainBatch, multimask: bool) -> list[tuple[str, torch.Tensor]]:
    """Split the B*K prompt sets into decode groups: ("box" | "multi" | "single", row indices).

    "box": prompt sets that are a box alone; "multi" (only if ``multimask``): single-click sets,
    trained with SAM's 3 ambiguity masks; "single": all other point sets (one mask).
    """
    is_box = batch.is_box
    multi = (batch.n_clicks == 1) & ~is_box if multimask else torch.zeros_like(is_box)
    single = ~is_box & ~multi
    groups = []
    for kind, sel in (("single", single), ("multi", multi), ("box", is_box)):
        idx = torch.nonzero(sel, as_tuple=False).flatten()
        if idx.numel():
            groups.append((kind, idx))
    return groups


def compute_loss(model, batch: TrainBatch, config: TrainConfig, amp: bool = False,
                 encode=None, decode=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, mask loss) of one batch, both scalars; the batch must be on the model's device.

    mask loss: soft Dice (+ ``bce_weight`` x BCE) per prompt set, min over masks for multimask sets,
    averaged over all B*K prompt sets; total adds ``iou_loss_weight`` x the IoU-head MSE.

    ``encode`` / ``decode`` default to the model's methods (pass compiled versions to use them).
    """
    encode = encode or model.encode
    decode = decode or model.decode
    if hasattr(model, "forward_all"):
        return early_fusion_loss(model, batch, config, amp, encode)
    size = model.image_size
    k = batch.prompts_per_image
    device_type = batch.images.device.type
    mask_terms, iou_terms = [], []
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        emb = encode(batch.images)
        if k > 1:
            emb = emb.repeat_interleave(k, dim=0)
        for kind, idx in prompt_groups(batch, config.multimask):
            sub = emb if idx.numel() == emb.shape[0] else emb.index_select(0, idx)
            if kind == "box":
                logits, iou = decode(sub, boxes=batch.boxes[idx])
            else:
                logits, iou = decode(sub, point_coords=batch.point_coords[idx], point_labels=batch.point_labels[idx],
                                     multimask_output=kind == "multi")
            full = F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)
            target = batch.masks[idx]
            per_mask = soft_dice_loss(full, target[:, None])  # (n, C)
            if config.bce_weight > 0:
                per_mask = per_mask + config.bce_weight * bce_loss_per_item(full, target[:, None])
            mask_terms.append(per_mask.min(dim=1).values)
            if config.iou_loss_weight > 0:
                iou_terms.append(iou_prediction_loss(iou, full, target) * idx.numel())
    mask_loss = torch.cat(mask_terms).mean()
    total = mask_loss
    if iou_terms:
        total = mask_loss + config.iou_loss_weight * torch.stack(iou_terms).sum() / batch.masks.shape[0]
    return total, mask_loss.detach()


def optimizer_step(model, optimizer: torch.optim.Optimizer, batch: TrainBatch, config: TrainConfig, lr: float,
                   world_size: int = 1, encode=None, decode=None) -> torch.Tensor:
    """One optimiser step on ``batch`` (already on the device) at learning rate ``lr``.

    With ``world_size`` > 1 gradients are averaged over the processes first.  Returns the
    (detached) loss, or NaN when the step was skipped: a non-finite loss or gradient (a bf16
    overflow, a spike at a high learning rate) leaves the weights and Adam's moments untouched
    instead of turning every weight into NaN.  After the all-reduce every process sees the same
    gradients, so all skip together.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss, _ = compute_loss(model, batch, config, amp=bool(config.amp), encode=encode, decode=decode)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if world_size > 1:
        allreduce_gradients(params, world_size)
    # with several processes only the (all-reduced, hence shared) gradients decide, so all skip together
    if not gradients_are_finite(loss if world_size == 1 else None, params):
        optimizer.zero_grad(set_to_none=True)
        return torch.full_like(loss.detach(), math.nan)
    optimizer.step()
    return loss.detach()


def gradients_are_finite(loss: torch.Tensor | None, params: list[torch.Tensor]) -> bool:
    """True when ``loss`` (unless None) and every gradient of ``params`` are finite (one device sync)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    values = [n.float() for n in torch._foreach_norm(grads)] if grads else []
    if loss is not None:
        values.append(loss.detach().float().reshape(()))
    return bool(torch.isfinite(torch.stack(values)).all()) if values else True
