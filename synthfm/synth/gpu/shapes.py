"""Shape-aware module on the GPU: star-shaped Bézier outlines rasterised analytically, batched.

Same outline model as :mod:`synthfm.synth.bezier` (anchors at jittered increasing angles, radii
1 + irregularity x U(-1, 1), Catmull-Rom slopes with a random tension, cubic Bézier radius between
anchors, aspect scaling and rotation).  Instead of a polygon + fillPoly, each outline's radius is
tabulated at ``TABLE`` angles in its own frame and a pixel is inside when its distance to the
centre is below the (linearly interpolated) radius in its direction: exact for star-shaped
outlines, and one batched elementwise pass per shape.

Placement follows :mod:`synthfm.synth.shapes`: free (centre in the inner 90 %), nested inside an
earlier shape (within its inscribed radius) or touching an earlier shape along a random direction
(its outline point in that direction meets the new shape's opposite point).  Differences: one
placement try instead of four before falling back to a free placement.  Targets: every shape,
plus the union of each shape with its nested descendants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from synthfm.synth.recipe import ContrastConfig, ShapeConfig
from synthfm.synth.gpu.fields import bernoulli, integer, log_uniform, near, uniform

TABLE = 256
_MIN_RADIUS = 0.08
_MARGIN = 0.05
MAX_LABELS = 255


@dataclass
class GpuScene:
    """labels: (B, S, S) uint8 (0 = background).  intensity: (B, 256) float32 per label id.
    members: (B, T, 256) bool, target t of image b = union of the label ids marked.
    exists: (B, T) bool, which target slots are used."""

    labels: torch.Tensor
    intensity: torch.Tensor
    members: torch.Tensor
    exists: torch.Tensor


def _outline_tables(gen: torch.Generator, cfg: ShapeConfig, shape: tuple[int, int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(radius table (B, N, TABLE) over local angles 2 pi m / TABLE, rotation (B, N)) of unit outlines."""
    b, n_shapes = shape
    n = integer(gen, shape, cfg.control_points_range, device).clamp_min(3)  # anchors per outline
    irregularity = uniform(gen, shape, cfg.irregularity_range, device)
    cmax = int(n.max())
    k = torch.arange(cmax, device=device)
    valid = k[None, None] < n[..., None]
    spacing = (2 * math.pi / n.float())[..., None]
    jitter = uniform(gen, (b, n_shapes, cmax), (-0.35, 0.35), device) * spacing
    theta0 = uniform(gen, (b, n_shapes, 1), (0.0, 2 * math.pi), device)
    angles = theta0 + k * spacing + jitter
    radii = (1.0 + irregularity[..., None] * uniform(gen, (b, n_shapes, cmax), (-1.0, 1.0), device)).clamp_min(2 * _MIN_RADIUS)
    tension = uniform(gen, (b, n_shapes, 1), (0.3, 1.0), device)
    nxt = (k[None, None] + 1) % n[..., None]
    prv = (k[None, None] - 1) % n[..., None]
    a_next = angles.gather(2, nxt) + torch.where(nxt == 0, 2 * math.pi, 0.0)
    a_prev = angles.gather(2, prv) - torch.where(k[None, None] == 0, 2 * math.pi, 0.0)
    slopes = tension * (radii.gather(2, nxt) - radii.gather(2, prv)) / (a_next - a_prev)
    rotation = uniform(gen, shape, (0.0, math.pi), device)

    # Segment of each table angle: anchors padded with +inf so searchsorted never picks a pad.
    sorted_angles = torch.where(valid, angles, torch.inf)
    table_angles = torch.arange(TABLE, device=device, dtype=torch.float32) * (2 * math.pi / TABLE)
    a0 = angles[..., :1]
    query = a0 + torch.remainder(table_angles[None, None] - a0, 2 * math.pi)
    seg = (torch.searchsorted(sorted_angles.contiguous(), query.contiguous(), right=True) - 1).clamp(0)
    seg = torch.minimum(seg, n[..., None] - 1)
    seg_next = (seg + 1) % n[..., None]
    span = a_next.gather(2, seg) - angles.gather(2, seg)
    t = ((query - angles.gather(2, seg)) / span).clamp(0, 1)
    r0, r1 = radii.gather(2, seg), radii.gather(2, seg_next)
    s0, s1 = slopes.gather(2, seg), slopes.gather(2, seg_next)
    c1 = (r0 + s0 * span / 3).clamp_min(_MIN_RADIUS)
    c2 = (r1 - s1 * span / 3).clamp_min(_MIN_RADIUS)
    table = r0 * (1 - t) ** 3 + c1 * 3 * t * (1 - t) ** 2 + c2 * 3 * t**2 * (1 - t) + r1 * t**3
    return table, rotation


def _lookup(table: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of (..., TABLE) tables at local angles ``theta`` (..., M) in radians."""
    pos = torch.remainder(theta, 2 * math.pi) * (TABLE / (2 * math.pi))
    i0 = pos.floor().long() % TABLE
    w = pos - pos.floor()
    return table.gather(-1, i0) * (1 - w) + table.gather(-1, (i0 + 1) % TABLE) * w


def _local(dx: torch.Tensor, dy: torch.Tensor, rotation: torch.Tensor, aspect: torch.Tensor):
    """World offsets -> (local angle, |w|) with w = diag(1, 1/aspect) R(-rotation) (dx, dy)."""
    c, s = torch.cos(rotation), torch.sin(rotation)
    lx = c * dx + s * dy
    ly = (-s * dx + c * dy) / aspect
    return torch.atan2(ly, lx), torch.sqrt(lx * lx + ly * ly)


def _world_radius(table, rotation, aspect, scale, direction):
    """Distance from the centre to the outline along world ``direction`` (radians); all (B,)."""
    theta, norm = _local(torch.cos(direction), torch.sin(direction), rotation, aspect)
    return scale * _lookup(table, theta[:, None])[:, 0] / norm


def render_shape_scene(cfg: ShapeConfig, contrast: ContrastConfig, batch: int, size: int,
                       gen: torch.Generator, device) -> GpuScene:
    """B scenes of ``cfg.num_shapes_range`` shapes each (label ids 1..n in drawing order)."""
    counts = integer(gen, batch, cfg.num_shapes_range, device).clamp_max(MAX_LABELS)
    n_max = int(counts.max())
    shape = (batch, n_max)
    tables, rotation = _outline_tables(gen, cfg, shape, device)
    aspect = uniform(gen, shape, cfg.aspect_range, device)
    radius = log_uniform(gen, shape, cfg.radius_range, device) * size
    m_angles = torch.arange(TABLE, device=device, dtype=torch.float32) * (2 * math.pi / TABLE)
    stretch = torch.sqrt(torch.cos(m_angles) ** 2 + (aspect[..., None] * torch.sin(m_angles)) ** 2)
    extent = (tables * stretch).amax(-1)  # farthest outline point at unit scale
    nearest = (tables * stretch).amin(-1)

    rows = torch.arange(batch, device=device)
    centre = torch.zeros(batch, n_max, 2, device=device)
    scale = radius.clone()
    parent = torch.zeros(batch, n_max + 1, dtype=torch.long, device=device)  # by label id; 0 = background
    intensity = torch.zeros(batch, MAX_LABELS + 1, device=device)
    intensity[:, 0] = uniform(gen, batch, contrast.intensity_range, device)
    for j in range(n_max):
        mode = torch.rand(batch, generator=gen, device=device)
        other = (torch.rand(batch, generator=gen, device=device) * max(j, 1)).long().clamp_max(max(j - 1, 0))
        direction = uniform(gen, batch, (0.0, 2 * math.pi), device)
        u = torch.stack([torch.cos(direction), torch.sin(direction)], -1)
        # nested: inside the other shape's inscribed disc
        room = (0.97 * nearest[rows, other] * scale[rows, other] - 1.5).clamp_min(0)
        reach = uniform(gen, batch, cfg.nested_scale_range, device) * room
        offset = (room - reach) * torch.sqrt(torch.rand(batch, generator=gen, device=device))
        nested_centre = centre[rows, other] + offset[:, None] * u
        # touching: the other's outline point along u meets this shape's outline point along -u
        r_other = _world_radius(tables[rows, other], rotation[rows, other], aspect[rows, other], scale[rows, other], direction)
        r_self = _world_radius(tables[:, j], rotation[:, j], aspect[:, j], radius[:, j], direction + math.pi)
        touching_centre = centre[rows, other] + (r_other + r_self)[:, None] * u
        free_centre = uniform(gen, (batch, 2), (_MARGIN * size, (1 - _MARGIN) * size), device)

        nested = (mode < cfg.p_nested) & (j > 0)
        touching = (mode >= cfg.p_nested) & (mode < cfg.p_nested + cfg.p_touching) & (j > 0)
        cand = torch.where(nested[:, None], nested_centre, touching_centre)
        inside = ((cand >= 0) & (cand < size)).all(-1)
        relative = (nested | touching) & inside
        centre[:, j] = torch.where(relative[:, None], cand, free_centre)
        scale[:, j] = torch.where(nested & inside, reach / extent[:, j].clamp_min(1e-6), radius[:, j])
        parent_label = torch.where(nested, other + 1, parent[rows, other + 1])
        parent[:, j + 1] = torch.where(relative, parent_label, 0)

        low = bernoulli(gen, batch, contrast.p_low_contrast, device)
        near_parent = near(gen, intensity[rows, parent[:, j + 1]], contrast.low_contrast_range)
        fresh = uniform(gen, batch, contrast.intensity_range, device)
        intensity[:, j + 1] = torch.where(low, near_parent, fresh)

    labels = rasterise(tables, rotation, aspect, centre, scale, counts, size)
    members, exists = _shape_targets(parent, counts)
    return GpuScene(labels, intensity, members, exists)


def rasterise(tables, rotation, aspect, centre, scale, counts, size: int) -> torch.Tensor:
    """(B, S, S) uint8: shapes drawn in order (later ones occlude earlier ones); pixel centres at integer coords."""
    batch, n_max = rotation.shape
    device = tables.device
    labels = torch.zeros(batch, size, size, dtype=torch.uint8, device=device)
    axis = torch.arange(size, device=device, dtype=torch.float32)
    for j in range(n_max):
        cx, cy = centre[:, j, 0, None, None], centre[:, j, 1, None, None]
        theta, rho = _local(axis[None, None, :] - cx, axis[None, :, None] - cy,
                            rotation[:, j, None, None], aspect[:, j, None, None])
        limit = _lookup(tables[:, j], theta.reshape(batch, -1)).reshape(batch, size, size) * scale[:, j, None, None]
        inside = (rho < limit) & (j < counts)[:, None, None]
        labels = torch.where(inside, torch.tensor(j + 1, dtype=torch.uint8, device=device), labels)
    return labels


def _shape_targets(parent: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets: shape j alone (slot j - 1), and shape j with its descendants (slot n_max + j - 1)."""
    batch, n1 = parent.shape
    n_max = n1 - 1
    device = parent.device
    labels = torch.arange(n1, device=device)
    # ancestor[b, i, a]: a is an ancestor of label i (walk the parent pointers n_max times)
    ancestor = torch.zeros(batch, n1, n1, dtype=torch.bool, device=device)
    cur = parent.clone()
    for _ in range(n_max):
        ancestor |= torch.nn.functional.one_hot(cur, n1).bool() & (cur > 0)[..., None]
        cur = parent.gather(1, cur)
    present = (labels[None] >= 1) & (labels[None] <= counts[:, None])  # (B, n1)
    members = torch.zeros(batch, 2 * n_max, MAX_LABELS + 1, dtype=torch.bool, device=device)
    single = torch.eye(n1, dtype=torch.bool, device=device)[1:]  # (n_max, n1)
    members[:, :n_max, :n1] = single[None] & present[:, 1:, None]
    descendants = ancestor.transpose(1, 2)[:, 1:]  # (B, n_max, n1): [j, i] = i descends from j
    has_children = descendants.any(-1) & present[:, 1:]
    members[:, n_max:, :n1] = (descendants | single[None]) & has_children[..., None]
    exists = torch.cat([present[:, 1:], has_children], dim=1)
    return members, exists
