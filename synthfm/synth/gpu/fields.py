"""Batched random draws and random fields in torch (the GPU counterparts of ``synthfm.synth.fields``).

Every function takes an explicit ``torch.Generator`` (on the tensors' device) and draws one value
per image (or per image and item), so each image of a batch gets its own parameters.  Smooth
fields are value noise on a small grid, bicubic-sampled with ``grid_sample`` at per-image grid
sizes in one call; Perlin noise is evaluated at <= 256 px and up-sampled, like the numpy engine.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FIELD_WORK = 256


def uniform(gen: torch.Generator, shape, bounds: tuple[float, float], device) -> torch.Tensor:
    """float32 uniform in [lo, hi)."""
    lo, hi = float(bounds[0]), float(bounds[1])
    return torch.rand(shape, generator=gen, device=device) * (hi - lo) + lo


def log_uniform(gen: torch.Generator, shape, bounds: tuple[float, float], device) -> torch.Tensor:
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return torch.exp(uniform(gen, shape, (lo, hi), device))


def integer(gen: torch.Generator, shape, bounds: tuple[int, int], device) -> torch.Tensor:
    """int64 uniform in [lo, hi] inclusive."""
    return torch.randint(int(bounds[0]), int(bounds[1]) + 1, shape if isinstance(shape, tuple) else (shape,),
                         generator=gen, device=device)


def bernoulli(gen: torch.Generator, shape, p, device) -> torch.Tensor:
    """bool, True with probability ``p`` (a float or a tensor broadcastable to ``shape``)."""
    return torch.rand(shape, generator=gen, device=device) < p


def near(gen: torch.Generator, value: torch.Tensor, delta_range: tuple[float, float]) -> torch.Tensor:
    """``value`` moved up or down by a draw from ``delta_range``, flipping side to stay in [0, 1]."""
    delta = uniform(gen, value.shape, delta_range, value.device)
    sign = torch.where(torch.rand(value.shape, generator=gen, device=value.device) < 0.5, 1.0, -1.0)
    out = value + sign * delta
    out = torch.where((out < 0) | (out > 1), value - sign * delta, out)
    return out.clamp(0.0, 1.0)


def pixel_grid(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, n) float32 x (column) and y (row) pixel-centre coordinates in [0, 1]."""
    axis = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
    return axis[None, :].expand(n, n), axis[:, None].expand(n, n)


def smooth_fields(gen: torch.Generator, batch: int, channels: int, n: int, cells: torch.Tensor) -> torch.Tensor:
    """(B, C, n, n) value noise (not normalised): i.i.d. U(-1, 1) on a (cells_b + 1)^2 grid per image, bicubic.

    cells: (B,) int64, the grid cells across image b (each channel of an image shares it).
    """
    device = cells.device
    cmax = int(cells.max())
    grid_values = uniform(gen, (batch, channels, cmax + 1, cmax + 1), (-1.0, 1.0), device)
    gx, gy = pixel_grid(n, device)
    scale = (cells.float() / max(cmax, 1))[:, None, None]  # the image's grid occupies [0, cells_b] of [0, cmax]
    coords = torch.stack([gx[None] * scale * 2 - 1, gy[None] * scale * 2 - 1], dim=-1)
    return F.grid_sample(grid_values, coords, mode="bicubic", padding_mode="border", align_corners=True)


def smooth_field(gen: torch.Generator, batch: int, n: int, cells: torch.Tensor, out: int | None = None) -> torch.Tensor:
    """(B, out, out) smooth field in [-1, 1] with about ``cells_b`` bumps across image b.

    Rendered at ``min(n, 256)`` px, normalised so its largest magnitude is 1, then bilinearly
    up-sampled to ``out`` (default n).
    """
    work = min(n, FIELD_WORK)
    field = smooth_fields(gen, batch, 1, work, cells)
    peak = field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return resize(field / peak, out or n)[:, 0]


def resize(x: torch.Tensor, n: int, mode: str = "bilinear") -> torch.Tensor:
    """(B, C, h, w) -> (B, C, n, n); nearest uses exact pixel centres."""
    if x.shape[-2:] == (n, n):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(n, n), mode="nearest-exact")
    return F.interpolate(x, size=(n, n), mode=mode, align_corners=False)


def perlin(gen: torch.Generator, batch: int, n: int, base_cells: torch.Tensor, octaves: torch.Tensor,
           persistence: float = 0.5) -> torch.Tensor:
    """(B, n, n) multi-octave gradient noise in [-1, 1]; octave o has base_cells_b * 2**o cells, weight persistence**o.

    base_cells, octaves: (B,) int64.  Evaluated at min(n, 256) px and up-sampled.
    """
    device = base_cells.device
    work = min(n, FIELD_WORK)
    total = torch.zeros(batch, work, work, device=device)
    t = (torch.arange(work, device=device, dtype=torch.float32) + 0.5) / work
    b_idx = torch.arange(batch, device=device)
    for o in range(int(octaves.max())):
        cells = base_cells * 2**o  # (B,)
        cmax = int(cells.max())
        angle = uniform(gen, (batch, (cmax + 1) * (cmax + 1)), (0.0, 2 * math.pi), device)
        pos = t[None, :] * cells[:, None].float()  # (B, work) along one axis
        idx = torch.minimum(pos.floor().long(), cells[:, None] - 1)
        off = pos - idx
        fade = off**3 * (off * (off * 6 - 15) + 10)

        def corner(di: int, dj: int) -> torch.Tensor:
            flat = (idx[:, :, None] + di) * (cmax + 1) + (idx[:, None, :] + dj)  # (B, rows, cols)
            a = angle[b_idx[:, None, None], flat]
            return torch.cos(a) * (off[:, None, :] - dj) + torch.sin(a) * (off[:, :, None] - di)

        wx, wy = fade[:, None, :], fade[:, :, None]
        top = corner(0, 0) * (1 - wx) + corner(0, 1) * wx
        bottom = corner(1, 0) * (1 - wx) + corner(1, 1) * wx
        weight = torch.where(o < octaves, persistence**o, 0.0).float()[:, None, None]
        total += (top * (1 - wy) + bottom * wy) * weight
    peak = total.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return resize((total / peak)[:, None], n)[:, 0]


def separable_filter(image: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """Filter each image with its own separable kernel; reflect borders.

    image: (B, H, W).  kx: (B, kw), ky: (B, kh), odd lengths, each row summing to 1.
    """
    b, h, w = image.shape
    x = image[None]  # (1, B, H, W): one group per image
    px, py = kx.shape[1] // 2, ky.shape[1] // 2
    x = F.conv2d(F.pad(x, (px, px, 0, 0), mode="reflect"), kx[:, None, None, :], groups=b)
    x = F.conv2d(F.pad(x, (0, 0, py, py), mode="reflect"), ky[:, None, :, None], groups=b)
    return x[0]


def gaussian_kernels(sigma: torch.Tensor, max_radius: int) -> torch.Tensor:
    """(B, 2 r + 1) normalised Gaussian kernels, r = max_radius; sigma 0 gives a delta."""
    r = torch.arange(-max_radius, max_radius + 1, device=sigma.device, dtype=torch.float32)
    s = sigma.clamp_min(1e-6)[:, None]
    k = torch.exp(-0.5 * (r[None] / s) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def box_kernels(width: torch.Tensor, max_width: int) -> torch.Tensor:
    """(B, 2 r + 1) centred box kernels of integer ``width`` (>= 1) per image, r = max_width // 2 (+ 1 for even widths)."""
    r = max_width // 2 + 1
    pos = torch.arange(-r, r + 1, device=width.device, dtype=torch.float32)
    half = width.float()[:, None] / 2
    # an even width straddles the centre pixel: half-weight at both ends
    k = (pos[None].abs() <= half - 0.5).float() + 0.5 * ((pos[None].abs() - half).abs() < 1e-3).float()
    return k / k.sum(dim=1, keepdim=True)
