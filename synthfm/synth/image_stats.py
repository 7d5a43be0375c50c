"""Appearance statistics of one unlabelled image, in the units the recipe uses (pure functions).

Every function takes ``image``: (H, W) float32 in [0, 1] (an image as the model sees it, i.e.
after the intensity window; :func:`synthfm.synth.fit_recipe.analysis_image` makes one at the
generation size) and returns plain numbers.  They are what ``synthfm fit-recipe`` measures:

* :func:`foreground_mask`: the imaged region (not the black surround of a fan or a body outline);
* :func:`noise_sigma`: std of white additive noise (Immerkaer's Laplacian-difference estimator,
  on the flattest 60 % of the image so that edges do not count as noise);
* :func:`noise_model`: how the noise scales with the signal in flat patches: the slope ``b`` of
  log(noise std) against log(local mean) (0 = additive Gaussian/Rician, 0.5 = Poisson, 1 =
  multiplicative speckle), the coefficient of variation of flat patches (speckle strength
  ``s = cv / 0.5227``, the Rayleigh CV, see ``synth.noise.apply_speckle``), the correlation length
  of the residual (speckle grain, pixels) and the dark-background ratio mean/std (1.91 for Rayleigh,
  i.e. Rician magnitude noise around 0);
* :func:`bias_strength`: ``s`` of a multiplicative bias exp(s f), f in [-1, 1], from a quadratic fit
  to the log of the heavily smoothed image over the foreground;
* :func:`fan_geometry`: whether the foreground is an ultrasound sector (dark top corners, width
  growing with depth) and its opening angle in degrees;
* :func:`blur_sigma`: the Gaussian blur (pixels) of the image's edges, from how much a known extra
  blur lowers the gradient energy (a step blurred by s has energy proportional to 1/s);
* :func:`intensity_quantiles`: the 2/50/98 % quantiles of the foreground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

RAYLEIGH_CV = math.sqrt(4.0 / math.pi - 1.0)  # std / mean of a Rayleigh variable: 0.5227
RAYLEIGH_MEAN_OVER_STD = math.sqrt(math.pi / 2.0) / math.sqrt(2.0 - math.pi / 2.0)  # 1.913
BLUR_OFFSET, BLUR_GAIN = 0.6, 1.25  # blur_sigma's calibration (see there)
_LAPLACE_DIFF = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0  # unit L2 norm


def _check(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 2 or min(a.shape) < 16:
        raise ValueError(f"image must be (H, W) with both sides >= 16, got shape {a.shape}")
    return a


def foreground_mask(image: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """(H, W) bool: pixels whose 5 x 5 smoothed value exceeds ``threshold`` (the imaged region)."""
    a = _check(image)
    return cv2.blur(a, (5, 5)) > threshold


def _flatness(a: np.ndarray) -> np.ndarray:
    smooth = cv2.GaussianBlur(a, (0, 0), 1.5)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def noise_sigma(image: np.ndarray, mask: np.ndarray | None = None, keep: float = 0.6) -> float:
    """Std of additive white noise: median-based Laplacian-difference estimate over the flattest
    ``keep`` share of ``mask`` (default: the whole image, borders excluded)."""
    a = _check(image)
    resp = cv2.filter2D(a, cv2.CV_32F, _LAPLACE_DIFF, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    grad = _flatness(a)[1:-1, 1:-1]
    sel = np.ones_like(resp, bool) if mask is None else np.asarray(mask, bool)[1:-1, 1:-1]
    if sel.sum() < 64:
        return 0.0
    g = grad[sel]
    flat = g <= np.quantile(g, keep)
    values = np.abs(resp[sel][flat])
    # white noise: resp ~ N(0, sigma); median |N(0, s)| = 0.6745 s
    return float(np.median(values) / 0.6745)


@dataclass(frozen=True)
class NoiseModel:
    """What :func:`noise_model` measures (see the module docstring)."""

    slope: float  # d log(std) / d log(mean) over flat patches
    sigma_at_half: float  # noise std at intensity 0.5 from the fit
    cv: float  # median std/mean of flat, bright patches (raw intensities)
    grain: float  # correlation length of the residual, pixels
    dark_ratio: float  # mean/std of dark foreground patches (nan when there are none)
    patches: int

    @property
    def kind(self) -> str:
        """"speckle", "poisson", "rician" or "gaussian" (the recipe's noise kinds)."""
        if self.slope > 0.75 or (self.slope > 0.5 and self.cv > 0.15 and self.grain > 1.5):
            return "speckle"
        if self.slope > 0.3:
            return "poisson"
        if math.isfinite(self.dark_ratio) and 1.4 <= self.dark_ratio <= 2.6:
            return "rician"
        return "gaussian"


def noise_model(image: np.ndarray, mask: np.ndarray | None = None, patch: int = 16) -> NoiseModel:
    """Signal dependence, strength and grain of the noise, from flat ``patch`` x ``patch`` blocks.

    The residual is the image minus its Gaussian blur (4 px), so coarse speckle grains count as
    noise; the std of a block's residual against the block's mean gives the slope and the CV.
    """
    a = _check(image)
    h, w = (a.shape[0] // patch) * patch, (a.shape[1] // patch) * patch
    a = a[:h, :w]
    sel = np.ones((h, w), bool) if mask is None else np.asarray(mask, bool)[:h, :w]
    smooth = cv2.GaussianBlur(a, (0, 0), 4.0)
    resid = a - smooth

    def blocks(x):
        return x.reshape(h // patch, patch, w // patch, patch).transpose(0, 2, 1, 3).reshape(-1, patch * patch)

    res_b, sel_b = blocks(resid), blocks(sel)
    grad_b = blocks(_flatness(smooth)).mean(axis=1)
    inside = sel_b.all(axis=1)
    means = blocks(smooth).mean(axis=1)
    stds = res_b.std(axis=1)
    ok = inside & (means > 0.03)
    if ok.sum() < 8:
        return NoiseModel(0.0, 0.0, 0.0, 1.0, float("nan"), int(ok.sum()))
    flat = ok & (grad_b <= np.quantile(grad_b[ok], 0.5))
    x, y = np.log(means[flat]), np.log(np.maximum(stds[flat], 1e-5))
    slope, intercept = (np.polyfit(x, y, 1) if np.ptp(x) > 0.3 and flat.sum() >= 8 else (0.0, float(np.median(y))))
    sigma_half = float(np.exp(intercept + slope * math.log(0.5)))
    bright = flat & (means >= np.quantile(means[flat], 0.25))
    cv = float(np.median(stds[bright] / means[bright])) if bright.any() else 0.0
    raw_b = blocks(a)
    # the dark surround is outside any foreground mask: look at every block
    dark = (raw_b.mean(axis=1) < 0.06) & (raw_b.mean(axis=1) > 0.0)
    dark_ratio = (float(np.median(raw_b[dark].mean(axis=1) / np.maximum(raw_b[dark].std(axis=1), 1e-6)))
                  if dark.sum() >= 8 else float("nan"))
    return NoiseModel(float(slope), sigma_half, cv, correlation_length(resid, sel), dark_ratio, int(flat.sum()))


def correlation_length(residual: np.ndarray, mask: np.ndarray | None = None, max_lag: int = 12) -> float:
    """Lag (pixels, interpolated) at which the vertical autocorrelation of ``residual`` falls to 0.5
    (white noise: < 1; speckle of grain g: about g)."""
    r = np.asarray(residual, np.float32)
    sel = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    r = np.where(sel, r - r[sel].mean(), 0.0).astype(np.float32)
    var = float((r[sel] ** 2).mean()) if sel.any() else 0.0
    if var <= 0:
        return 0.0
    prev = 1.0
    for lag in range(1, max_lag + 1):
        both = sel[lag:] & sel[:-lag]
        if both.sum() < 64:
            break
        c = float((r[lag:] * r[:-lag])[both].mean() / var)
        if c < 0.5:
            return float(lag - 1 + (prev - 0.5) / max(prev - c, 1e-6))
        prev = c
    return float(max_lag)


def bias_strength(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``s`` of a multiplicative bias exp(s f) (f in [-1, 1]): half the range, over the foreground,
    of a quadratic fitted to log(the image smoothed at 1/8 of its side)."""
    a = _check(image)
    sel = foreground_mask(a) if mask is None else np.asarray(mask, bool)
    sel = sel & (a > 0.02)
    if sel.sum() < 256:
        return 0.0
    sigma = max(a.shape) / 8.0
    weight = cv2.GaussianBlur(sel.astype(np.float32), (0, 0), sigma)
    smooth = cv2.GaussianBlur(np.where(sel, a, 0).astype(np.float32), (0, 0), sigma) / np.maximum(weight, 1e-3)
    ys, xs = np.nonzero(sel)
    step = max(1, ys.size // 20000)
    ys, xs = ys[::step], xs[::step]
    u, v = xs / a.shape[1] * 2 - 1, ys / a.shape[0] * 2 - 1
    design = np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.log(np.maximum(smooth[ys, xs], 1e-3)), rcond=None)
    fitted = design @ coef
    return float((fitted.max() - fitted.min()) / 2.0)


def fan_geometry(image: np.ndarray) -> tuple[bool, float]:
    """(is a sector-shaped field of view, opening angle in degrees; 0 when not a fan).

    A fan: over 10-70 % of the imaged depth both side edges are straight lines (a linear fit
    explains >= 99 % of their variance) that diverge, and the top is narrower than 0.7 x the
    widest row.  A body outline (an ellipse) has curved edges and fails the straightness test.
    """
    a = _check(image)
    fg = foreground_mask(a, threshold=0.03)
    rows = np.flatnonzero(fg.mean(axis=1) > 0.02)
    if rows.size < 16:
        return False, 0.0
    top, bottom = int(rows[0]), int(rows[-1])
    depth = bottom - top + 1
    ys, left, right = [], [], []
    for y in range(top + int(0.1 * depth), top + int(0.7 * depth)):
        cols = np.flatnonzero(fg[y])
        if cols.size and cols[0] > 0 and cols[-1] < fg.shape[1] - 1:  # edges cut by the image side say nothing
            ys.append(y)
            left.append(cols[0])
            right.append(cols[-1])
    if len(ys) < 8:
        return False, 0.0
    y = np.asarray(ys, float)

    def straight(x) -> tuple[float, float]:
        x = np.asarray(x, float)
        coef = np.polyfit(y, x, 1)
        var = float(np.var(x))
        r2 = 1.0 - float(np.var(x - np.polyval(coef, y))) / var if var > 0 else 0.0
        return float(coef[0]), r2

    sl, rl = straight(left)
    sr, rr = straight(right)
    widths = fg[top:bottom + 1].sum(axis=1)
    narrow_top = float(widths[: max(1, depth // 20)].mean()) < 0.7 * float(widths.max())
    is_fan = sl < -0.1 and sr > 0.1 and rl >= 0.99 and rr >= 0.99 and narrow_top
    angle = math.degrees(math.atan(-sl) + math.atan(sr))
    return bool(is_fan), float(angle) if is_fan else 0.0


def blur_sigma(image: np.ndarray, mask: np.ndarray | None = None, reblur: float = 1.5) -> float:
    """Gaussian blur (pixels) of the image's strongest edges.

    E0, E1: gradient energy of the strongest 5 % of edges before and after an extra blur of
    ``reblur`` px; for a blurred step r = E1/E0 = s / sqrt(s^2 + reblur^2), so s = reblur r / sqrt(1 - r^2).
    Noise is lowered first with a 3 x 3 median.
    """
    a = cv2.medianBlur(_check(image), 3)
    sel = np.ones(a.shape, bool) if mask is None else cv2.erode(np.asarray(mask, np.uint8), np.ones((7, 7), np.uint8)) > 0

    def energy(x):
        gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)
        return gx * gx + gy * gy

    e0 = energy(a)
    e1 = energy(cv2.GaussianBlur(a, (0, 0), reblur))
    if sel.sum() < 64:
        return 0.0
    strong = sel & (e0 >= np.quantile(e0[sel], 0.95))
    if not strong.any() or e0[strong].sum() <= 0:
        return 0.0
    # peak-energy ratio of a blurred step is (s / sqrt(s^2 + b^2))^2 for the squared gradient
    r = math.sqrt(min(0.999, float(e1[strong].sum() / e0[strong].sum())))
    raw = reblur * r / math.sqrt(1.0 - r * r)
    # the Sobel kernel and the median add their own blur: calibrated on ideal steps blurred by
    # 0.5-3 px (raw = 1.25 s + 0.6 to within 0.05 px)
    return float(max(0.0, (raw - BLUR_OFFSET) / BLUR_GAIN))


def intensity_quantiles(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float, float]:
    """(2 %, 50 %, 98 %) quantiles of the image over ``mask`` (default: the foreground)."""
    a = _check(image)
    sel = foreground_mask(a) if mask is None else np.asarray(mask, bool)
    values = a[sel] if sel.any() else a.ravel()
    q = np.quantile(values, [0.02, 0.5, 0.98])
    return float(q[0]), float(q[1]), float(q[2])


__all__ = [
    "NoiseModel",
    "RAYLEIGH_CV",
    "bias_strength",
    "blur_sigma",
    "correlation_length",
    "fan_geometry",
    "foreground_mask",
    "intensity_quantiles",
    "noise_model",
    "noise_sigma",
]
