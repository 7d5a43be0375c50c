"""One mask from a model's candidates: the rule behind ``decode(multimask_output=False)``.

A click_unet returns ``num_masks`` candidate masks and a predicted IoU for each.  When one mask is
asked for, the rule decides what comes back:

* ``"best"``: the candidate with the highest predicted IoU (SAM's own protocol for its multimask
  tokens).  The head's pick is the best candidate only about half the time, and a wrong pick costs
  the whole object (a tiny inner blob instead of the organ);
* ``"iou_blend"``: the candidates' logits averaged with weights ``softmax(iou / T)``, with the same
  weights' average of the predicted IoUs as the score.  A linear blend of logits commutes with the
  bilinear resize to the image, so the low-res logits and the full-size mask agree (a blend of
  probabilities at S/2 scored 0.002 lower on the synthetic set).
  Where the head is sure, this is its pick; where two candidates score alike, the answer is their
  consensus rather than a coin toss.  T = 0.1 was chosen on the fixed synthetic set
  (``benchmarks/eval_selection.py``; 0.05 and 0.1 tie, 0.2 is lower), never on real images.

Both are plain tensor ops, so the ONNX decoder graph uses the same function as PyTorch.
"""

from __future__ import annotations

import torch

SINGLE_MASK_RULES = ("best", "iou_blend")
BLEND_TEMPERATURE = 0.1


def check_rule(rule: str) -> str:
    """``rule`` if it is one of SINGLE_MASK_RULES, else ValueError naming them."""
    if rule not in SINGLE_MASK_RULES:
        raise ValueError(f"unknown single-mask rule {rule!r}; choose one of {', '.join(SINGLE_MASK_RULES)}")
    return rule


def single_mask(logits: torch.Tensor, iou: torch.Tensor, rule: str = "best",
                temperature: float = BLEND_TEMPERATURE) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, 1, H, W), score (B, 1)) from candidates ``logits`` (B, M, H, W) and ``iou`` (B, M).

    dtype follows ``logits``; see the module docstring for the rules.
    """
    check_rule(rule)
    if rule == "best":
        best = torch.argmax(iou, dim=1)
        index = best.view(-1, 1, 1, 1).expand(-1, 1, logits.shape[2], logits.shape[3])
        return torch.gather(logits, 1, index), torch.gather(iou, 1, best.view(-1, 1))
    weights = torch.softmax(iou.float() / float(temperature), dim=1)  # (B, M)
    blended = (weights[:, :, None, None] * logits.float()).sum(dim=1, keepdim=True)
    score = (weights * iou.float()).sum(dim=1, keepdim=True)
    return blended.to(logits.dtype), score.to(iou.dtype)
