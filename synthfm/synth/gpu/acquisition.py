"""From a batched scene to an acquired image on the GPU: texture, contrast, artefacts, ultrasound, noise.

Same parameters and order as :mod:`synthfm.synth.scene` / :mod:`synthfm.synth.flavours` /
:mod:`synthfm.synth.artefacts` / :mod:`synthfm.synth.ultrasound` / :mod:`synthfm.synth.noise`:
per-label intensity and texture at the native resolution, clip, gamma, inversion, then (per the
image's flavour) blur, bias field, resolution loss, ultrasound gain, noise kinds in
``APPLY_ORDER``, up-sampling to S, fan field of view and clip.  Differences, all to keep the batch
one tensor: one native resolution per batch (drawn from ``native_scale_range``) instead of one per
image, and every artefact/noise is computed for the whole batch and selected per image with
``torch.where`` (the random draws do not depend on which images use them).  Resolution loss is a
box filter plus linear re-sampling at the coarse grid, done with per-image coordinates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from synthfm.synth.noise import APPLY_ORDER
from synthfm.synth.recipe import FLAVOURS, NOISE_KINDS, Recipe
from synthfm.synth.gpu.fields import (
    bernoulli, box_kernels, gaussian_kernels, integer, log_uniform, perlin, pixel_grid, resize,
    separable_filter, smooth_field, uniform,
)

_GAIN_WORK = 128
_REFERENCE_SIDE = 1024
MIN_TEXTURE_SIDE = 16


def flavour_table(recipe: Recipe, name: str, device) -> torch.Tensor:
    """(4,) float32: one flavour field (e.g. "p_blur", "texture_scale") for each of FLAVOURS."""
    return torch.tensor([float(getattr(getattr(recipe.flavours, f), name)) for f in FLAVOURS], device=device)


def render_clean(labels: torch.Tensor, intensity: torch.Tensor, native: int, recipe: Recipe,
                 texture_scale: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(B, native, native) clean image: per-label intensity (linear down-sampling of the full-size
    lookup gives partial-volume edges) plus two shared smooth textures with per-label amplitudes."""
    b = labels.shape[0]
    device = labels.device
    contrast = recipe.contrast
    flat = labels.long().reshape(b, -1)
    image = resize(intensity.gather(1, flat).reshape(labels.shape)[:, None], native)[:, 0]
    amplitude = uniform(gen, (b, 256), contrast.texture_amplitude_range, device) * texture_scale[:, None]
    which = bernoulli(gen, (b, 256), 0.5, device)
    cells = integer(gen, (b, 2), contrast.texture_cells_range, device).sort(dim=1).values
    half = max(MIN_TEXTURE_SIDE, native // 2)
    small = resize(labels[:, None].float(), half, "nearest")[:, 0].long().reshape(b, -1)
    texture = torch.zeros(b, half, half, device=device)
    for k, use in enumerate((which, ~which)):
        amp = torch.where(use, amplitude, 0.0).gather(1, small).reshape(b, half, half)
        texture = texture + amp * smooth_field(gen, b, half, cells[:, k])
    return image + resize(texture[:, None], native)[:, 0]


def modulate_contrast(image: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Clip to [0, 1], maybe gamma (log-uniform), maybe invert; per image."""
    b, device = image.shape[0], image.device
    c = recipe.contrast
    image = image.clamp(0.0, 1.0)
    gamma = torch.where(bernoulli(gen, b, c.p_gamma, device), log_uniform(gen, b, c.gamma_range, device), 1.0)
    image = image ** gamma[:, None, None]
    invert = bernoulli(gen, b, c.p_invert, device)
    return torch.where(invert[:, None, None], 1.0 - image, image)


def _blur(image, gen, recipe, enabled):
    n = image.shape[-1]
    sigma = uniform(gen, image.shape[0], recipe.artefacts.blur_sigma_range, image.device) * n
    sigma = torch.where(enabled & (sigma >= 0.3), sigma, 0.0)
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    k = gaussian_kernels(sigma, min(radius, n // 2 - 1))
    return separable_filter(image, k, k)


def _bias(image, gen, recipe, enabled):
    b, n = image.shape[0], image.shape[-1]
    strength = uniform(gen, b, recipe.artefacts.bias_strength_range, image.device)
    field = smooth_field(gen, b, min(n, 64), integer(gen, b, (1, 3), image.device), out=n)
    gain = torch.exp(field * strength[:, None, None])
    return torch.where(enabled[:, None, None], image * gain, image)


def _resample_axis(image: torch.Tensor, factor: torch.Tensor, axis: int) -> torch.Tensor:
    """Linear re-sampling of each image at its coarse grid along ``axis`` (-1 columns, -2 rows):
    the value at a fine pixel interpolates the two nearest coarse sample points (downsample + upsample)."""
    b, n = image.shape[0], image.shape[-1]
    coarse = (n * factor).round().clamp_min(4)  # (B,) coarse samples along the axis
    pix = torch.arange(n, device=image.device, dtype=torch.float32)
    u = (pix[None] + 0.5) * (coarse[:, None] / n) - 0.5  # fine pixel in coarse units
    u = u.clamp(min=torch.zeros_like(coarse)[:, None], max=(coarse - 1)[:, None])
    k0 = u.floor()
    w = u - k0
    k1 = torch.minimum(k0 + 1, (coarse - 1)[:, None])
    src0 = (k0 + 0.5) * (n / coarse[:, None]) - 0.5  # coarse sample point in fine pixels
    src1 = (k1 + 0.5) * (n / coarse[:, None]) - 0.5

    def sample(src: torch.Tensor) -> torch.Tensor:
        norm = (src + 0.5) / n * 2 - 1  # (B, n)
        other = (pix + 0.5) / n * 2 - 1
        if axis == -1:
            grid = torch.stack([norm[:, None, :].expand(b, n, n), other[None, :, None].expand(b, n, n)], -1)
        else:
            grid = torch.stack([other[None, None, :].expand(b, n, n), norm[:, :, None].expand(b, n, n)], -1)
        return F.grid_sample(image[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]

    w = w[:, None, :] if axis == -1 else w[:, :, None]
    return sample(src0) * (1 - w) + sample(src1) * w


def _resolution_loss(image, gen, recipe, enabled):
    b, device = image.shape[0], image.device
    factor = uniform(gen, b, recipe.artefacts.resolution_factor_range, device)
    axis = integer(gen, b, (0, 2), device)  # 0: rows, 1: columns, 2: both
    rows = enabled & (axis != 1)
    cols = enabled & (axis != 0)
    width = (1.0 / factor).round().clamp_min(1).long()
    max_w = int(width.max())
    delta = box_kernels(torch.ones_like(width), max_w)
    box = box_kernels(width, max_w)
    kx = torch.where(cols[:, None], box, delta)
    ky = torch.where(rows[:, None], box, delta)
    out = separable_filter(image, kx, ky)
    out = torch.where(cols[:, None, None], _resample_axis(out, factor, -1), out)
    return torch.where(rows[:, None, None], _resample_axis(out, factor, -2), out)


def sample_probe(gen, b: int, size: int, recipe: Recipe, device) -> dict[str, torch.Tensor]:
    """Per-image curvilinear probe geometry in output pixels (see synthfm.synth.ultrasound.sample_fan)."""
    art = recipe.artefacts
    half = torch.deg2rad(uniform(gen, b, art.fan_angle_range, device)) / 2
    apex_y = -uniform(gen, b, (0.0, 0.2), device) * size
    apex_x = size * uniform(gen, b, (0.45, 0.55), device)
    inner = -apex_y + uniform(gen, b, (0.0, 0.08), device) * size
    outer = -apex_y + uniform(gen, b, (0.85, 1.0), device) * size
    return dict(half=half, apex_x=apex_x, apex_y=apex_y, inner=inner, outer=outer)


def _lateral_depth(probe, fan: torch.Tensor, size: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n, n) lateral position in [-1, 1] and depth in [0, 1] (linear probe where not ``fan``)."""
    gx, gy = pixel_grid(n, fan.device)
    x, y = gx[None] * size, gy[None] * size
    dx, dy = x - probe["apex_x"][:, None, None], y - probe["apex_y"][:, None, None]
    radius = torch.sqrt(dx * dx + dy * dy)
    lateral = torch.atan2(dx, dy) / probe["half"][:, None, None]
    span = (probe["outer"] - probe["inner"])[:, None, None]
    depth = ((radius - probe["inner"][:, None, None]) / span).clamp(0, 1)
    f = fan[:, None, None]
    return torch.where(f, lateral, gx[None] * 2 - 1), torch.where(f, depth, gy[None].expand_as(depth))


def fan_mask(probe, size: int) -> torch.Tensor:
    """(B, S, S) bool: inside the fan sector (angle 0 straight down, +x positive)."""
    axis = torch.arange(size, device=probe["half"].device, dtype=torch.float32)
    dx = axis[None, None, :] - probe["apex_x"][:, None, None]
    dy = axis[None, :, None] - probe["apex_y"][:, None, None]
    r = torch.sqrt(dx * dx + dy * dy)
    angle = torch.atan2(dx, dy)
    return (angle.abs() <= probe["half"][:, None, None]) & (r >= probe["inner"][:, None, None]) & (r <= probe["outer"][:, None, None])


def _gain(image, gen, recipe, probe, fan, shadows, size):
    b, n_img, device = image.shape[0], image.shape[-1], image.device
    art = recipe.artefacts
    n = min(size, _GAIN_WORK)
    lateral, depth = _lateral_depth(probe, fan, size, n)
    attenuation = uniform(gen, b, art.depth_attenuation_range, device)
    gain = 1.0 - attenuation[:, None, None] * depth
    count = integer(gen, b, art.shadows_range, device)
    for i in range(int(art.shadows_range[1])):
        centre = uniform(gen, b, (-0.8, 0.8), device)
        width = torch.deg2rad(uniform(gen, b, art.shadow_width_range, device))
        width = torch.where(fan, width / probe["half"], width)
        start = uniform(gen, b, (0.1, 0.7), device)
        strength = uniform(gen, b, art.shadow_strength_range, device)
        on = (shadows & (i < count))[:, None, None]
        inside = ((lateral - centre[:, None, None]).abs() < width[:, None, None] / 2) & (depth > start[:, None, None]) & on
        gain = torch.where(inside, gain * (1.0 - strength[:, None, None]), gain)
    sigma = torch.full((b,), max(0.5, n / 128), device=device)
    k = gaussian_kernels(sigma, 3)
    gain = torch.where(shadows[:, None, None], separable_filter(gain, k, k), gain)
    gain = resize(gain[:, None], n_img)[:, 0]
    return torch.where((fan | shadows)[:, None, None], image * gain, image)


def _speckle(image, gen, recipe):
    b, n, device = image.shape[0], image.shape[-1], image.device
    cfg = recipe.noise
    strength = uniform(gen, b, cfg.speckle_sigma_range, device)
    grain = (uniform(gen, b, cfg.speckle_grain_range, device) * n / _REFERENCE_SIDE).clamp_min(1.0)
    normal = torch.randn(b, 2, n, n, generator=gen, device=device)
    rayleigh = torch.sqrt((normal**2).sum(1, keepdim=True)) / math.sqrt(math.pi / 2)
    # reading the Rayleigh field at 1/grain (rows) and 1/(1.5 grain) (columns) pixel steps = one
    # sample per grain, linearly up-sampled (as the numpy engine's coarse grid + resize)
    gx, gy = pixel_grid(n, device)
    sx = (gx[None] / (1.5 * grain[:, None, None])) * 2 - 1
    sy = (gy[None] / grain[:, None, None]) * 2 - 1
    field = F.grid_sample(rayleigh, torch.stack([sx, sy], -1), mode="bilinear", align_corners=False)[:, 0]
    return image * (field * strength[:, None, None] + (1 - strength[:, None, None]))


def _perlin(image, gen, recipe):
    b, n, device = image.shape[0], image.shape[-1], image.device
    cfg = recipe.noise
    amplitude = uniform(gen, b, cfg.perlin_amplitude_range, device)
    field = perlin(gen, b, n, integer(gen, b, cfg.perlin_cells_range, device),
                   integer(gen, b, cfg.perlin_octaves_range, device))
    return image + field * amplitude[:, None, None]


def _poisson(image, gen, recipe):
    photons = log_uniform(gen, image.shape[0], recipe.noise.poisson_photons_range, image.device)
    std = torch.sqrt(image.clamp_min(0) / photons[:, None, None])
    return image + torch.randn(image.shape, generator=gen, device=image.device) * std


def _gaussian(image, gen, recipe):
    sigma = uniform(gen, image.shape[0], recipe.noise.gaussian_sigma_range, image.device)
    return image + torch.randn(image.shape, generator=gen, device=image.device) * sigma[:, None, None]


def _rician(image, gen, recipe):
    sigma = uniform(gen, image.shape[0], recipe.noise.rician_sigma_range, image.device)[:, None, None]
    real = image + torch.randn(image.shape, generator=gen, device=image.device) * sigma
    imag = torch.randn(image.shape, generator=gen, device=image.device) * sigma
    return torch.sqrt(real * real + imag * imag)


NOISES = {"speckle": _speckle, "perlin": _perlin, "poisson": _poisson, "gaussian": _gaussian, "rician": _rician}


def choose_noises(gen, recipe: Recipe, flavour: torch.Tensor) -> torch.Tensor:
    """(B, 5) bool over NOISE_KINDS: kinds drawn without replacement by the flavour's weights."""
    b, device = flavour.shape[0], flavour.device
    weights = torch.tensor([[float(getattr(getattr(recipe.flavours, f).noise, k)) for k in NOISE_KINDS] for f in FLAVOURS],
                           device=device)[flavour]
    lo = torch.tensor([getattr(recipe.flavours, f).num_noises_range[0] for f in FLAVOURS], device=device)[flavour]
    hi = torch.tensor([getattr(recipe.flavours, f).num_noises_range[1] for f in FLAVOURS], device=device)[flavour]
    count = torch.minimum(lo + (torch.rand(b, generator=gen, device=device) * (hi - lo + 1)).long(), (weights > 0).sum(1))
    # Gumbel top-k = weighted sampling without replacement
    keys = torch.log(weights) - torch.log(-torch.log(torch.rand(weights.shape, generator=gen, device=device).clamp_min(1e-12)))
    rank = keys.argsort(dim=1, descending=True).argsort(dim=1)
    return (rank < count[:, None]) & (weights > 0)


def acquire(image: torch.Tensor, labels: torch.Tensor, flavour: torch.Tensor, recipe: Recipe,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(image (B, S, S) in [0, 1], labels (B, S, S) uint8 (0 outside the fan), fov (B, S, S) bool or
    None, noises (B, 5) bool) from a clean (B, n, n) native image; ``flavour`` (B,) indexes FLAVOURS."""
    b, size, device = labels.shape[0], labels.shape[-1], labels.device
    probs = torch.stack([flavour_table(recipe, name, device)[flavour]
                         for name in ("p_blur", "p_bias", "p_resolution_loss", "p_fan", "p_shadows")], 1)
    blur, bias, lowres, fan, shadows = (torch.rand(b, 5, generator=gen, device=device) < probs).unbind(1)
    noises = choose_noises(gen, recipe, flavour)
    image = _blur(image, gen, recipe, blur)
    image = _bias(image, gen, recipe, bias)
    image = _resolution_loss(image, gen, recipe, lowres)
    probe = sample_probe(gen, b, size, recipe, device)
    image = _gain(image, gen, recipe, probe, fan, shadows, size)
    for kind in APPLY_ORDER:
        use = noises[:, NOISE_KINDS.index(kind)]
        image = torch.where(use[:, None, None], NOISES[kind](image, gen, recipe), image)
    image = resize(image[:, None], size)[:, 0]
    fov = None
    if bool(fan.any()):
        fov = fan_mask(probe, size) | ~fan[:, None, None]
        image = image * fov
        labels = labels * fov.to(labels.dtype)
    return image.clamp(0.0, 1.0), labels, fov, noises
