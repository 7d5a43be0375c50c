"""Click and box prompts for a batch of target masks, on the GPU.

The protocol of :func:`synthfm.prompts.simulate_clicks`, with one documented simplification: the
distance transforms are computed by jump flooding (exact up to rare JFA misses of a pixel or so)
on the mask down-sampled to at most ``DIST_SIDE`` px, and click coordinates are that grid's pixel
centres mapped back to the S x S image.  Rules: the first positive click is the interior point
farthest from the boundary (the image edge counts as boundary); further positives are uniform
among object pixels at least a quarter of that maximum from the edge (falling back to any object
pixel); negatives are uniform in the band ``gap < d <= gap + width`` outside the object (sizes as in
synthfm.prompts, scaled to the grid), falling back to any background pixel.  Picks are without
replacement while there are enough candidates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DIST_SIDE = 256


def jump_flood_distance(seeds: torch.Tensor) -> torch.Tensor:
    """(M, H, W) float32 Euclidean distance of each pixel to the nearest True pixel of ``seeds``
    (M, H, W) bool, by jump flooding (steps H/2 ... 1, then 1 again); inf where there is no seed."""
    m, h, w = seeds.shape
    device = seeds.device
    ys = torch.arange(h, device=device, dtype=torch.float32)[:, None].expand(h, w)
    xs = torch.arange(w, device=device, dtype=torch.float32)[None, :].expand(h, w)
    big = float(4 * (h + w))
    sy = torch.where(seeds, ys, big)  # nearest seed so far (far away = none)
    sx = torch.where(seeds, xs, big)
    steps = []
    s = 1 << max(0, (max(h, w) - 1).bit_length() - 1)
    while s >= 1:
        steps.append(s)
        s //= 2
    steps.append(1)
    for s in steps:
        best = (sy - ys) ** 2 + (sx - xs) ** 2
        for dy in (-s, 0, s):
            for dx in (-s, 0, s):
                if dy == 0 and dx == 0:
                    continue
                # candidate = the seed stored at pixel (y + dy, x + dx)
                cy = _shift(sy, dy, dx, big)
                cx = _shift(sx, dy, dx, big)
                d = (cy - ys) ** 2 + (cx - xs) ** 2
                better = d < best
                sy, sx, best = torch.where(better, cy, sy), torch.where(better, cx, sx), torch.where(better, d, best)
    dist = torch.sqrt((sy - ys) ** 2 + (sx - xs) ** 2)
    return torch.where(sy >= big, torch.inf, dist)


def _shift(a: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """out[y, x] = a[y + dy, x + dx] (``fill`` outside)."""
    h, w = a.shape[-2:]
    padded = F.pad(a, (abs(dx), abs(dx), abs(dy), abs(dy)), value=fill)
    return padded[..., abs(dy) + dy: abs(dy) + dy + h, abs(dx) + dx: abs(dx) + dx + w]


def _pick(gen: torch.Generator, allowed: torch.Tensor, fallback: torch.Tensor, k: int) -> torch.Tensor:
    """(M, k) flat pixel indices drawn uniformly from ``allowed`` (M, P) without replacement (with
    replacement once exhausted); rows with no allowed pixel draw from ``fallback``."""
    if k == 0:
        return torch.zeros(allowed.shape[0], 0, dtype=torch.long, device=allowed.device)
    pool = torch.where(allowed.any(1, keepdim=True), allowed, fallback)
    keys = torch.rand(pool.shape, generator=gen, device=pool.device).masked_fill(~pool, -1.0)
    order = keys.topk(k, dim=1).indices
    n = pool.sum(1).clamp_min(1)
    return order.gather(1, torch.arange(k, device=pool.device)[None] % n[:, None])


def simulate_clicks(gen: torch.Generator, masks: torch.Tensor, n_pos: torch.Tensor, n_neg: torch.Tensor,
                    max_pos: int, max_neg: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(coords (M, max_pos + max_neg, 2) float32 (x, y) pixels of the S x S image, labels (M, N) int64).

    masks: (M, S, S) bool, each non-empty.  n_pos (M,) in [1, max_pos], n_neg (M,) in [0, max_neg].
    Real clicks come first (positives, then negatives); the rest is padding (0, 0) / -1.
    """
    m, size = masks.shape[0], masks.shape[-1]
    side = min(size, DIST_SIDE)
    small = masks if side == size else F.interpolate(masks[:, None].float(), size=(side, side), mode="area")[:, 0] >= 0.5
    small = small | _ensure_one_pixel(masks, small)
    # inside distance: the image edge is boundary, so flood from a 1-pixel background frame
    framed = F.pad(~small, (1, 1, 1, 1), value=True)
    inside = jump_flood_distance(framed)[:, 1:-1, 1:-1].masked_fill(~small, 0.0)
    outside = jump_flood_distance(small)
    flat_in = inside.reshape(m, -1)
    best_val, best = flat_in.max(1)
    far = (flat_in >= torch.clamp(0.25 * best_val, min=1.0)[:, None]) & (torch.arange(flat_in.shape[1], device=masks.device)[None] != best[:, None])
    obj = small.reshape(m, -1)
    pos = torch.cat([best[:, None], _pick(gen, far, obj, max_pos - 1)], 1)

    area = masks.reshape(m, -1).sum(1).float()
    diameter = 2 * torch.sqrt(area / math.pi)
    scale = side / size
    gap = torch.clamp((0.05 * diameter).round(), min=2) * scale
    width = torch.clamp((0.15 * diameter).round(), min=3) * scale
    d_out = outside.reshape(m, -1)
    band = (d_out > gap[:, None]) & (d_out <= (gap + width)[:, None])
    neg = _pick(gen, band, ~obj, max_neg)

    flat = torch.cat([pos, neg], 1)
    rows, cols = (flat // side).float(), (flat % side).float()
    coords = torch.stack([(cols + 0.5) / scale - 0.5, (rows + 0.5) / scale - 0.5], -1)
    j_pos = torch.arange(max_pos, device=masks.device)[None]
    j_neg = torch.arange(max_neg, device=masks.device)[None]
    has_bg = (~obj).any(1, keepdim=True)
    labels = torch.cat([torch.where(j_pos < n_pos[:, None], 1, -1),
                        torch.where((j_neg < n_neg[:, None]) & has_bg, 0, -1)], 1).long()
    # real clicks first: a stable sort that moves the padding (-1) to the end
    order = (labels < 0).long().argsort(dim=1, stable=True)
    labels = labels.gather(1, order)
    coords = coords.gather(1, order[..., None].expand(-1, -1, 2)) * (labels >= 0)[..., None]
    return coords, labels


def _ensure_one_pixel(masks: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
    """Keep tiny objects that area down-sampling erased: their max-pooled footprint instead."""
    empty = ~small.flatten(1).any(1)
    if not bool(empty.any()):
        return torch.zeros_like(small)
    pooled = F.adaptive_max_pool2d(masks[:, None].float(), small.shape[-2:])[:, 0] > 0
    return pooled & empty[:, None, None]


def mask_boxes(gen: torch.Generator, masks: torch.Tensor, jitter: float) -> torch.Tensor:
    """(M, 4) float32 (x0, y0, x1, y1) inclusive bounding boxes, each side moved by N(0, jitter x side) capped at 20 px."""
    m, h, w = masks.shape
    rows, cols = masks.any(2), masks.any(1)
    idx_r = torch.arange(h, device=masks.device, dtype=torch.float32)
    idx_c = torch.arange(w, device=masks.device, dtype=torch.float32)
    r0 = torch.where(rows, idx_r, torch.inf).amin(1)
    r1 = torch.where(rows, idx_r, -torch.inf).amax(1)
    c0 = torch.where(cols, idx_c, torch.inf).amin(1)
    c1 = torch.where(cols, idx_c, -torch.inf).amax(1)
    box = torch.stack([c0, r0, c1, r1], 1)
    if jitter > 0:
        side = torch.stack([c1 - c0 + 1, r1 - r0 + 1] * 2, 1)
        box = box + (torch.randn(m, 4, generator=gen, device=masks.device) * jitter * side).clamp(-20, 20)
        limit = torch.tensor([w - 1, h - 1, w - 1, h - 1], device=masks.device, dtype=torch.float32)
        box = torch.minimum(box.clamp_min(0), limit)
        xs, ys = box[:, [0, 2]].sort(1).values, box[:, [1, 3]].sort(1).values
        box = torch.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1)
    return box
