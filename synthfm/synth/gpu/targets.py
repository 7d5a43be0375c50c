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


def component_masks(masks: torch.Tensor, gen: torch.Generator, min_fraction: float = 0.001,
                    by_area: bool = False, max_iterations: int = 100_000) -> torch.Tensor:
    """(M, S, S) bool: one 8-connected component of each mask (``synthfm.training.target_units``'s
    ``"component"`` unit on the device).

    Drawn uniformly (``by_area``: with probability proportional to area, the ``"component_area"``
    unit) among the components of at least ``min_fraction`` of the image (the largest when none is
    that big); an empty mask stays empty.  Components are found by propagating the largest
    pixel id through 3 x 3 neighbourhoods inside the mask until nothing changes (a few hundred cheap
    steps for winding shapes at 128-256 px).
    """
    m, h, w = masks.shape
    inside = masks[:, None].float()
    ids = torch.arange(1, h * w + 1, device=masks.device, dtype=torch.float32).reshape(1, 1, h, w) * inside
    for step in range(max_iterations):
        grown = F.max_pool2d(ids, 3, 1, padding=1) * inside
        if step % 16 == 15 and torch.equal(grown, ids):
            break
        ids = grown
    ids = ids[:, 0].long().reshape(m, -1)  # 0 outside, else the component's largest pixel id
    area = torch.zeros(m, h * w + 1, device=masks.device).scatter_add_(1, ids, torch.ones_like(ids, dtype=torch.float32))
    area[:, 0] = 0.0
    big = area >= max(1.0, math.ceil(min_fraction * h * w))
    keys = torch.rand(area.shape, generator=gen, device=masks.device)
    if by_area:  # Gumbel-max: argmax of log(area) + Gumbel noise draws a piece with p ~ area
        keys = torch.log(area.clamp_min(1.0)) - torch.log(-torch.log(keys.clamp(1e-12, 1.0 - 1e-7)))
    # among the big components (their scores sit above every other); else the largest
    score = torch.where(big, 1e3 + keys, torch.where(area > 0, area / (h * w + 1.0) - 1.0, -2.0))
    chosen = score.argmax(dim=1)
    return (ids == chosen[:, None]).reshape(m, h, w) & masks.bool()
