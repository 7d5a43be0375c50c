"""Target validity and target masks for batched GPU scenes.

Same rules as :func:`synthfm.synth.targets.assess_targets`: a target is invalid when empty, smaller
than ``min_area_fraction`` of the image, or when more of its outline than ``max_border_fraction``
(of the perimeter of a disc of equal area) lies on the image / field-of-view border.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from synthfm.synth.recipe import TargetConfig

N_BINS = 256


def label_counts(labels: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 256) float32 pixel count per label id (only where ``where`` is True, if given)."""
    b = labels.shape[0]
    flat = labels.long().reshape(b, -1)
    ones = torch.ones_like(flat, dtype=torch.float32) if where is None else where.reshape(b, -1).float()
    return torch.zeros(b, N_BINS, device=labels.device).scatter_add_(1, flat, ones)


def border_ring(fov: torch.Tensor | None, shape: tuple[int, int, int], device) -> torch.Tensor:
    """(B, S, S) bool: field-of-view pixels next to its outside, the image edge included."""
    b, h, w = shape
    if fov is None:
        ring = torch.zeros(h, w, dtype=torch.bool, device=device)
        ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
        return ring[None].expand(b, h, w)
    inside = fov[:, None].float()
    inner = -F.max_pool2d(-F.pad(inside, (1, 1, 1, 1), value=0.0), 3, 1)
    return (inside - inner)[:, 0] > 0


def assess_targets(labels: torch.Tensor, members: torch.Tensor, exists: torch.Tensor, cfg: TargetConfig,
                   fov: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid (B, T) bool, area (B, T) float32 pixels) of the targets ``members`` (B, T, 256)."""
    b, h, w = labels.shape
    m = members.float()
    area = torch.einsum("btl,bl->bt", m, label_counts(labels))
    contact = torch.einsum("btl,bl->bt", m, label_counts(labels, border_ring(fov, labels.shape, labels.device)))
    min_area = cfg.min_area_fraction * h * w
    valid = exists & (area > 0) & (area >= min_area)
    valid &= contact <= cfg.max_border_fraction * 2.0 * torch.sqrt(math.pi * area)
    return valid, area


def choose_targets(gen: torch.Generator, valid: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) target indices: a random permutation of each image's valid targets, cycled as needed.

    Images without a valid target get index 0 (callers drop them: see ``valid.any(1)``).
    """
    b, t = valid.shape
    keys = torch.rand(b, t, generator=gen, device=valid.device).masked_fill(~valid, -1.0)
    order = keys.argsort(dim=1, descending=True)
    n_valid = valid.sum(1).clamp_min(1)
    slot = torch.arange(k, device=valid.device)[None] % n_valid[:, None]
    return order.gather(1, slot)


def target_masks(labels: torch.Tensor, members: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """(B * k, S, S) bool masks of the chosen targets; row m belongs to image m // k."""
    b, k = chosen.shape
    rows = torch.arange(b, device=labels.device)[:, None]
    member = members[rows, chosen].reshape(b * k, -1)  # (B*k, 256)
    flat = labels.long().reshape(b, 1, -1).expand(b, k, -1).reshape(b * k, -1)
    return member.gather(1, flat).reshape(b * k, *labels.shape[1:])
