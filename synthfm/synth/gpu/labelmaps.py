"""Boundary-aware module on the GPU: SynthMorph-style label maps with random erosion, batched.

Mirrors :mod:`synthfm.synth.labelmaps`: argmax of K value-noise fields on a <= 256 px grid, a
random smooth warp (nearest, reflect border), an optional wobbly-ellipse body outside which
everything is label 0, up-sampling to ``min(S, 512)`` with a 5x5 median to round off the
staircase, per-label random erosion, then nearest up-sampling to S.  Differences: the erosion
distance is an octagonal (alternating 3x3 square / cross dilation) approximation of the
Euclidean distance, and the union target picks an adjacent pair with probability proportional
to its contact length (the numpy engine picks uniformly among pairs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from synthfm.synth.recipe import BoundaryConfig, ContrastConfig
from synthfm.synth.gpu.fields import bernoulli, integer, near, pixel_grid, resize, smooth_field, smooth_fields, uniform
from synthfm.synth.gpu.shapes import MAX_LABELS, GpuScene

FIELD_GRID = 256
LABEL_WORK = 512
_SMOOTH_KSIZE = 5


def _median_filter(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(B, n, n) uint8 -> k x k median (replicate border)."""
    b, n, _ = labels.shape
    x = F.pad(labels[:, None].float(), (k // 2,) * 4, mode="replicate")
    patches = F.unfold(x, k)  # (B, k*k, n*n)
    return patches.median(dim=1).values.reshape(b, n, n).to(torch.uint8)


def _min_max_3x3(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.pad(labels[:, None].float(), (1, 1, 1, 1), mode="replicate")
    return -F.max_pool2d(-x, 3, 1)[:, 0], F.max_pool2d(x, 3, 1)[:, 0]


def erode_labels(labels: torch.Tensor, radius_px: torch.Tensor) -> torch.Tensor:
    """Erode each label by its own radius (per image), setting removed pixels to 0.

    labels: (B, n, n) uint8.  radius_px: (B, 256) float32 per label id (0 = no erosion).  A pixel of
    label k goes when its distance to a pixel next to a different label is below radius_px[b, k].
    """
    lo, hi = _min_max_3x3(labels)
    frontier = (lo != hi)[:, None].float()  # distance 0
    dist = torch.where(frontier[:, 0] > 0, 0.0, torch.inf)
    steps = int(math.ceil(float(radius_px.max())))
    for step in range(1, steps):
        if step % 2:
            frontier = F.max_pool2d(frontier, 3, 1, padding=1)
        else:  # cross: alternating with the square approximates a disc (octagon)
            frontier = torch.maximum(F.max_pool2d(frontier, (1, 3), 1, padding=(0, 1)),
                                     F.max_pool2d(frontier, (3, 1), 1, padding=(1, 0)))
        dist = torch.where((frontier[:, 0] > 0) & torch.isinf(dist), float(step), dist)
    limit = radius_px.gather(1, labels.long().reshape(labels.shape[0], -1)).reshape(labels.shape)
    return torch.where(dist < limit, torch.zeros_like(labels), labels)


def _adjacent_pair(gen: torch.Generator, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """((B, 2) int64 label pair touching horizontally/vertically, (B,) bool whether any exists)."""
    b = labels.shape[0]
    lab = labels.long()
    pairs = []
    for a, c in ((lab[:, :, :-1], lab[:, :, 1:]), (lab[:, :-1, :], lab[:, 1:, :])):
        pairs.append(torch.stack([a.reshape(b, -1), c.reshape(b, -1)], -1))
    pairs = torch.cat(pairs, 1)  # (B, P, 2)
    contact = (pairs[..., 0] != pairs[..., 1]) & (pairs > 0).all(-1)
    found = contact.any(1)
    weights = contact.float() + (~found).float()[:, None]
    pick = torch.multinomial(weights, 1, generator=gen)[:, 0]
    chosen = pairs[torch.arange(b, device=labels.device), pick]
    return chosen.sort(-1).values, found


def _intensities(gen, k: torch.Tensor, cfg: BoundaryConfig, contrast: ContrastConfig) -> torch.Tensor:
    b = k.shape[0]
    device = k.device
    k_max = int(k.max())
    intensity = torch.zeros(b, MAX_LABELS + 1, device=device)
    near_equal = bernoulli(gen, b, cfg.p_near_equal, device)
    base = uniform(gen, b, contrast.intensity_range, device)
    ids = torch.arange(1, k_max + 1, device=device)
    equal_part = near(gen, base[:, None].expand(b, k_max), cfg.near_equal_delta_range)
    gap = near(gen, base, (0.15, 0.5))  # the gap/background stands out from near-equal structures
    intensity[:, 0] = torch.where(near_equal, gap, uniform(gen, b, contrast.intensity_range, device))
    for label in range(1, k_max + 1):
        low = bernoulli(gen, b, contrast.p_low_contrast, device)
        value = torch.where(low, near(gen, intensity[:, label - 1], contrast.low_contrast_range),
                            uniform(gen, b, contrast.intensity_range, device))
        intensity[:, label] = torch.where(near_equal, equal_part[:, label - 1], value)
    intensity[:, 1:k_max + 1] *= (ids[None] <= k[:, None]).float()
    return intensity


def render_boundary_scene(cfg: BoundaryConfig, contrast: ContrastConfig, batch: int, size: int,
                          gen: torch.Generator, device) -> GpuScene:
    """B SynthMorph-style scenes; label ids 1..K_b, 0 = gaps and background."""
    grid = min(size, FIELD_GRID)
    n = min(size, LABEL_WORK)
    k = integer(gen, batch, cfg.num_labels_range, device).clamp_max(MAX_LABELS)
    k_max = int(k.max())
    cells = integer(gen, batch, cfg.field_cells_range, device)
    fields = smooth_fields(gen, batch, k_max, grid, cells)
    unused = torch.arange(k_max, device=device)[None, :] >= k[:, None]
    fields = fields.masked_fill(unused[:, :, None, None], -torch.inf)
    labels = (fields.argmax(1) + 1).to(torch.uint8)

    # warp (nearest, reflect) by a smooth displacement of peak strength x side
    strength = uniform(gen, batch, cfg.warp_strength_range, device)
    warp_cells = integer(gen, batch, (2, 5), device)
    disp = torch.stack([smooth_field(gen, batch, grid, warp_cells), smooth_field(gen, batch, grid, warp_cells)], -1)
    gx, gy = pixel_grid(grid, device)
    coords = torch.stack([gx, gy], -1)[None] * 2 - 1 + disp * (2 * strength)[:, None, None, None]
    labels = F.grid_sample(labels[:, None].float(), coords, mode="nearest", padding_mode="reflection",
                           align_corners=False)[:, 0].to(torch.uint8)

    # enclosing body
    with_body = bernoulli(gen, batch, cfg.p_background, device)
    centre = uniform(gen, (batch, 2), (0.4, 0.6), device)
    axes = uniform(gen, (batch, 2), (0.3, 0.48), device)
    wobble = smooth_field(gen, batch, grid, integer(gen, batch, (2, 6), device)) * 0.15
    rho = torch.sqrt(((gx[None] - centre[:, 0, None, None]) / axes[:, 0, None, None]) ** 2
                     + ((gy[None] - centre[:, 1, None, None]) / axes[:, 1, None, None]) ** 2)
    outside = with_body[:, None, None] & (rho >= 1 + wobble)
    labels = labels.masked_fill(outside, 0)
    pair, has_pair = _adjacent_pair(gen, labels)

    if n != grid:
        labels = resize(labels[:, None].float(), n, "nearest")[:, 0].to(torch.uint8)
        labels = _median_filter(labels, _SMOOTH_KSIZE)
    eroded = bernoulli(gen, (batch, k_max), cfg.p_erosion, device) & ~unused
    r = (uniform(gen, (batch, k_max), cfg.erosion_radius_range, device) * n).clamp_min(1.0)
    radius = torch.zeros(batch, MAX_LABELS + 1, device=device)
    radius[:, 1:k_max + 1] = torch.where(eroded, r, 0.0)
    if bool(eroded.any()):
        labels = erode_labels(labels, radius)
    if n != size:
        labels = resize(labels[:, None].float(), size, "nearest")[:, 0].to(torch.uint8)

    members = torch.zeros(batch, k_max + 1, MAX_LABELS + 1, dtype=torch.bool, device=device)
    ids = torch.arange(1, k_max + 1, device=device)
    members[:, :k_max, 1:k_max + 1] = torch.eye(k_max, dtype=torch.bool, device=device)[None]
    union = has_pair & bernoulli(gen, batch, cfg.p_union, device)
    rows = torch.arange(batch, device=device)
    members[rows, k_max, pair[:, 0]] = union
    members[rows, k_max, pair[:, 1]] = union
    exists = torch.cat([ids[None] <= k[:, None], union[:, None]], dim=1)
    intensity = _intensities(gen, k, cfg, contrast)
    return GpuScene(labels, intensity, members, exists)
